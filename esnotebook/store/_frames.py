"""Conversions between events and event frames, shared by every store backend.

A *type frame* holds the events of one event type: the canonical columns, a ``metadata``
column (JSON text, null when empty) and that type's payload fields as typed columns. Stores
keep type frames; :meth:`EventStore.scan` stitches them into the canonical event frame.
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
}
HEADER: tuple[str, ...] = tuple(HEADER_SCHEMA)


def type_frame_schema(fields: Schema) -> dict[str, pl.DataType]:
    return {**HEADER_SCHEMA, **fields}


def metadata_json(metadata: dict[str, Any]) -> str | None:
    return json.dumps(metadata, separators=(",", ":")) if metadata else None


def frame_from_events(events: Sequence[RecordedEvent], fields: Schema) -> pl.DataFrame:
    """The type frame of ``events`` (all of one type), typed by ``fields``."""
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
    }
    for name in fields:
        columns[name] = [e.data.get(name) for e in events]
    return pl.DataFrame(columns, schema=type_frame_schema(fields))


def frames_by_type(
    events: Iterable[RecordedEvent], schemas: dict[str, Schema]
) -> dict[str, pl.DataFrame]:
    groups: dict[str, list[RecordedEvent]] = {}
    for e in events:
        groups.setdefault(e.event_type, []).append(e)
    return {t: frame_from_events(evs, schemas[t]) for t, evs in groups.items()}


def events_from_frame(frame: pl.DataFrame, fields: Sequence[str]) -> Iterator[RecordedEvent]:
    """Rebuild :class:`RecordedEvent` objects from a type frame (position order kept)."""
    header = [_values(frame.get_column(c)) for c in HEADER]
    n = frame.height
    payload = [_values(frame.get_column(f)) if f in frame.columns else [None] * n for f in fields]
    loads = json.loads
    for row, values in zip(zip(*header), zip(*payload) if payload else _empties(frame.height)):
        pos, sid, ver, etype, eid, at, corr, cause, meta = row
        yield RecordedEvent(
            pos, sid, ver, etype, eid, at, corr, cause,
            dict(zip(fields, values)),
            loads(meta) if meta else {},
        )


def _values(column: pl.Series) -> list[Any]:
    """The column as Python values; UTC datetimes carry ``datetime.timezone.utc``.

    polars hands back ``zoneinfo.ZoneInfo("UTC")``; fresh events carry
    ``datetime.timezone.utc``. Equal instants either way, but one tzinfo everywhere keeps
    reprs, pickles and hashes of events identical whichever path they took.
    """
    if isinstance(column.dtype, pl.Datetime) and column.dtype.time_zone == "UTC":
        utc = timezone.utc
        return [
            None if d is None else d.replace(tzinfo=utc)
            for d in column.dt.replace_time_zone(None).to_list()
        ]
    return column.to_list()


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


def empty_frame(with_metadata: bool = False) -> pl.DataFrame:
    schema = dict(HEADER_SCHEMA)
    if not with_metadata:
        del schema["metadata"]
    return pl.DataFrame(schema=schema)
