"""Conversions between events and event frames, shared by every store backend.

An *event frame* holds events in position order: the canonical columns, a ``metadata``
column (JSON text, null when empty) and the union of the payload fields of its event types
as typed columns (null where a type lacks a field). Stores keep one such frame (or file) per
commit, so the canonical event frame is their concatenation: no sort.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import timezone
from typing import Any

import polars as pl

from .._schema import UTC_DATETIME, Schema
from ..events import CANONICAL_COLUMNS, RecordedEvent

HEADER_SCHEMA: dict[str, pl.DataType] = {
    "position": pl.Int64(),
    "stream_id": pl.String(),
    "version": pl.Int64(),
    "event_type": pl.String(),
    "event_id": pl.String(),
    "recorded_at": UTC_DATETIME,
    "correlation_id": pl.String(),
    "causation_id": pl.String(),
    "metadata": pl.String(),
    # The stream's index in ``store.streams()`` (creation order): a dense integer key that
    # lets a projection group by stream without hashing strings.
    "stream_number": pl.Int64(),
}
HEADER: tuple[str, ...] = tuple(HEADER_SCHEMA)
#: The header columns a :class:`RecordedEvent` is made of.
_EVENT_HEADER: tuple[str, ...] = HEADER[:-1]


def type_frame_schema(fields: Schema) -> dict[str, pl.DataType]:
    return {**HEADER_SCHEMA, **fields}


def metadata_json(metadata: dict[str, Any]) -> str | None:
    return json.dumps(metadata, separators=(",", ":")) if metadata else None


def frame_from_events(
    events: Sequence[RecordedEvent], fields: Schema, stream_numbers: Sequence[int]
) -> pl.DataFrame:
    """The event frame of ``events`` (any types, in the given order), typed by ``fields``.

    ``fields`` is the union of the payload fields of the events' types; an event whose
    type lacks a field gets null there. ``stream_numbers`` holds each event's stream number.
    """
    columns: dict[str, list[Any]] = {
        "position": [e.position for e in events],
        "stream_id": [e.stream_id for e in events],
        "version": [e.version for e in events],
        "event_type": [e.event_type for e in events],
        "event_id": [e.event_id for e in events],
        "recorded_at": [e.recorded_at for e in events],
        "correlation_id": [e.correlation_id for e in events],
        "causation_id": [e.causation_id for e in events],
        "metadata": [metadata_json(e.metadata) for e in events],
        "stream_number": list(stream_numbers),
    }
    for name in fields:
        columns[name] = [e.data.get(name) for e in events]
    return pl.DataFrame(columns, schema=type_frame_schema(fields))


def events_from_frame(
    frame: pl.DataFrame, fields: dict[str, Sequence[str]] | Sequence[str]
) -> list[RecordedEvent]:
    """Rebuild :class:`RecordedEvent` objects from an event frame, in its row order.

    ``fields`` maps each event type to its payload fields (a plain sequence means: the
    same fields for every row). Each column becomes Python values once, and each event
    type's rows are built in one pass: the per-row cost is one tuple and two dicts.
    """
    n = frame.height
    if n == 0:
        return []
    present = set(frame.columns)  # a set: a wide payload must not cost a scan per field
    header = [_values(frame.get_column(c)) if c in present else [None] * n for c in _EVENT_HEADER]
    if not isinstance(fields, dict):
        groups = {None: (range(n), list(fields))}
    else:
        # Grouped here, not by a polars group_by: on the few rows of an aggregate's load
        # that cost a millisecond, far more than the load's events (the header holds the
        # types as a list already, and a pass over it is cheap next to building the events).
        rows_by_type: dict[str, list[int]] = {}
        for i, t in enumerate(header[_EVENT_HEADER.index("event_type")]):
            rows_by_type.setdefault(t, []).append(i)
        if len(rows_by_type) == 1:
            rows_by_type = {t: range(n) for t in rows_by_type}  # type: ignore[misc]
        groups = {t: (rows, list(fields[t])) for t, rows in rows_by_type.items()}
    columns: dict[str, list[Any]] = {}
    out: list[Any] = [None] * n
    loads = json.loads
    whole = [list(h) for h in header]
    for rows_of, names in groups.values():
        for f in names:
            if f not in columns:
                columns[f] = _values(frame.get_column(f)) if f in present else [None] * n
        single = isinstance(rows_of, range)
        hdr = whole if single else [[h[i] for i in rows_of] for h in whole]
        payload = [columns[f] if single else [columns[f][i] for i in rows_of] for f in names]
        values = zip(*payload) if payload else _empties(len(rows_of))
        for at, row, vals in zip(rows_of, zip(*hdr), values):
            pos, sid, ver, etype, eid, ts, corr, cause, meta = row
            out[at] = RecordedEvent(
                pos, sid, ver, etype, eid, ts, corr, cause,
                dict(zip(names, vals)),
                loads(meta) if meta else {},
            )  # fmt: skip
    return out


def _values(column: pl.Series) -> list[Any]:
    """The column as Python values; UTC datetimes carry ``datetime.timezone.utc``.

    polars hands back ``zoneinfo.ZoneInfo("UTC")``; fresh events carry
    ``datetime.timezone.utc``. Equal instants either way, but one tzinfo everywhere keeps
    reprs, pickles and hashes of events identical whichever path they took. Long columns
    go through pandas' vectorised conversion: a per-row ``replace(tzinfo=...)`` was most
    of the cost of reading a long stream.
    """
    if isinstance(column.dtype, pl.Datetime) and column.dtype.time_zone == "UTC":
        utc = timezone.utc
        if column.len() >= _VECTOR_DATETIMES and not column.has_nulls():
            import pandas as pd

            micros = column.dt.cast_time_unit("us").dt.epoch("us").to_numpy()
            stamps = pd.DatetimeIndex(micros.view("datetime64[us]")).tz_localize(utc)
            return stamps.to_pydatetime().tolist()
        return [
            None if d is None else d.replace(tzinfo=utc)
            for d in column.dt.replace_time_zone(None).to_list()
        ]
    return column.to_list()


#: From this many rows on, datetimes are converted through pandas (vectorised).
_VECTOR_DATETIMES = 256


def _empties(n: int) -> Iterator[tuple[()]]:
    for _ in range(n):
        yield ()


def canonical_columns(schemas: dict[str, Schema], types: Iterable[str]) -> list[str]:
    """Canonical column order: header, then the union of the payload fields of ``types``."""
    seen: dict[str, None] = {}
    for t in types:
        for f in schemas.get(t, {}):
            seen.setdefault(f, None)
    return [*CANONICAL_COLUMNS, *seen]


def empty_frame(with_metadata: bool = False, with_stream_number: bool = False) -> pl.DataFrame:
    schema = dict(HEADER_SCHEMA)
    if not with_metadata:
        del schema["metadata"]
    if not with_stream_number:
        del schema["stream_number"]
    return pl.DataFrame(schema=schema)
