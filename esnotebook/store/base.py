"""The logic every event-store backend shares (the protocol is in :mod:`.protocol`).

A backend stores *commits*: each ``append`` or ``append_frame`` call is one commit, all of
its events or none, kept as one event frame in position order (header, then the union of the
payload fields of its types). The shared base checks input, assigns positions and versions,
grows the payload schemas and reads the concatenated commits as the canonical event frame
(no sort: commits are in position order and so is each commit); a backend only persists
commits and hands back their concatenation.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timezone
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from .. import _schema
from .._schema import Schema
from ..errors import ConcurrencyError, EventDataError
from ..events import CANONICAL_COLUMNS, NewEvent, RecordedEvent, check_event_type, check_text
from ._frames import (
    HEADER,
    HEADER_SCHEMA,
    canonical_columns,
    empty_frame,
    events_from_frame,
)
from ._intake import (
    _as_polars,
    _assign_versions,
    _cast_failure,
    _cast_field,
    _check_positions,
    _fill_header,
    _prepare_frame,
)
from ._payloads import plan_payloads, share_field_types
from .protocol import EventStore

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EventStore", "StoreBase"]

Clock = Callable[[], datetime]

#: Events materialised per chunk when ``read_all`` walks a frame-backed store.
READ_CHUNK = 50_000


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _check_stream_id(stream_id: object) -> str:
    if not isinstance(stream_id, str) or not stream_id:
        raise EventDataError(f"stream_id must be a non-empty str (got {stream_id!r})")
    return check_text(stream_id, "stream_id")


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise EventDataError(f"{name} must be an int >= {minimum} (got {value!r})")
    return int(value)


class StoreBase:
    """Shared implementation of :class:`EventStore`; backends fill in the ``_``-hooks."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or utc_now
        self._schemas: dict[str, Schema] = {}
        self._exact: dict[str, dict[str, type]] = {}
        self._head = 0
        self._versions: dict[str, int] | None = None
        self._numbers: dict[str, int] = {}  # stream -> its index in the version index
        self._fields: Schema | None = None  # field -> column type, over all event types
        self._fitting: Schema | None = None  # ``_fields`` when they all fit in one file
        # (``_fields`` it was made for, event type -> its fields that hold dicts)
        self._nested: tuple[Schema | None, dict[str, list[str]]] = (None, {})
        self._mutex = threading.RLock()

    # ------------------------------------------------------------------ backend hooks
    def _writing(self) -> AbstractContextManager[None]:
        """Held around every write: the backend's own lock, with its view up to date."""
        raise NotImplementedError

    def _refresh(self) -> None:
        """Pick up commits made elsewhere (other processes) before a read."""

    def _load_versions(self) -> dict[str, int]:
        """Stream -> current version, in order of stream creation."""
        lf = self._events_frame()
        if lf is None:
            return {}
        frame = (
            lf.select("stream_id", "version", "position")
            .group_by("stream_id")
            .agg(pl.col("version").max(), pl.col("position").min())
            .sort("position")
            .collect()
        )
        return dict(zip(frame["stream_id"].to_list(), frame["version"].to_list()))

    def _commit_events(
        self, events: list[RecordedEvent], schemas: dict[str, Schema], stream_number: int
    ) -> None:
        """Persist one commit of one stream's events (``stream_number`` is that stream's)."""
        raise NotImplementedError

    def _commit_frame(
        self, frame: pl.DataFrame, first: int, last: int, schemas: dict[str, Schema]
    ) -> None:
        """Persist one commit: an event frame in position order (header + union of fields)."""
        raise NotImplementedError

    def _events_frame(self, start: int = 0, end: int | None = None) -> pl.LazyFrame | None:
        """Every event, in position order: the header, then every field of the store
        (:meth:`field_types`), null where an event's type lacks it; ``None`` when empty.

        ``start``/``end`` let a backend leave out the commits wholly outside ``start <
        position <= end`` (the caller still filters): a consumer reading the newest batch of
        a store made of many small appends reads those, not all of them."""
        raise NotImplementedError

    def _with_stream_numbers(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        """``lf`` with every ``stream_number`` filled in (a backend with older files that
        lack the column fills them here)."""
        return lf

    def _retrying(self, read: Callable[[], Any]) -> Any:
        """Run a read; a backend whose files can move under a reader retries it here."""
        return read()

    # ------------------------------------------------------------------ state
    @property
    def head_position(self) -> int:
        """The position of the last event (0 for an empty store)."""
        self._refresh()
        return self._head

    def __len__(self) -> int:
        return self.head_position

    def event_types(self) -> list[str]:
        """The event types stored so far, sorted by name."""
        self._refresh()
        return sorted(self._schemas)

    def schema(self, event_type: str) -> dict[str, pl.DataType]:
        """The payload fields of ``event_type`` and the column type each is stored as."""
        self._refresh()
        try:
            return dict(self._schemas[event_type])
        except KeyError:
            raise KeyError(
                f"no events of type {event_type!r} stored (types: {', '.join(sorted(self._schemas)) or 'none'})"
            ) from None

    def field_types(self) -> dict[str, pl.DataType]:
        """Every payload field of the store and its one column type, over all event types.

        One field name keeps one column type across all event types (the canonical frame
        has one column per field); a field only ever seen as ``None`` is ``Null``.
        """
        self._refresh()
        return dict(self._field_union())

    def _field_union(self) -> Schema:
        if self._fields is None:
            self._fields = _field_union(self._schemas)
        return self._fields

    def _complete(self, e: RecordedEvent) -> RecordedEvent:
        """``e`` (held as an object) with the fields and nested dict keys its type gained
        since it was stored, as ``None``: as it reads back from a frame."""
        schema = self._schemas[e.event_type]
        union = self._field_union()
        if self._nested[0] is not union:
            holding = {t: [f for f, dt in s.items() if _holds_struct(dt)] for t, s in self._schemas.items()}
            self._nested = (union, holding)
        nested = self._nested[1].get(e.event_type)
        if len(e.data) == len(schema) and not nested:
            return e
        data = {f: e.data.get(f) for f in schema}
        for f in nested or ():
            data[f] = _schema.normalize(data[f], schema[f])
        return replace(e, data=data)

    def _version_index(self) -> dict[str, int]:
        if self._versions is None:
            self._versions = self._retrying(self._load_versions)
        return self._versions

    def _stream_numbers(self) -> dict[str, int]:
        """Stream -> its number: its index in the version index (the order of creation).

        Streams are only ever added at the end of the version index, so the numbers known
        stay right and only the new streams need numbering.
        """
        versions = self._version_index()
        numbers = self._numbers
        if len(numbers) < len(versions):
            numbers.update((s, i) for i, s in enumerate(islice(versions, len(numbers), None), len(numbers)))
        return numbers

    def stream_version(self, stream_id: str) -> int:
        """The current version of a stream: 0 if it has no events."""
        self._refresh()
        with self._mutex:
            return self._version_index().get(stream_id, 0)

    def streams(self) -> list[str]:
        """Every stream id, in the order the streams were created."""
        self._refresh()
        with self._mutex:
            return list(self._version_index())

    # ------------------------------------------------------------------ append
    def append(
        self, stream_id: str, events: Iterable[NewEvent], *, expected_version: int | None = None
    ) -> list[RecordedEvent]:
        """Append ``events`` to a stream, atomically: all of them or none.

        Parameters
        ----------
        stream_id
            The stream (usually one aggregate instance), e.g. ``"order-42"``.
        events
            :class:`NewEvent` objects, in order.
        expected_version
            ``None`` appends whatever the stream's version; ``0`` requires that the stream
            does not exist yet; ``n`` requires that it is at version ``n``. A mismatch raises
            :class:`ConcurrencyError` and writes nothing.

        A payload that could not be stored and read back, here and by a reopened Parquet
        store, raises :class:`EventDataError` naming the event, the field, the limit and
        the value, and writes nothing: an int outside 64 bits, text with a lone surrogate,
        NaN in metadata, a field nested deeper than
        :data:`~esnotebook._schema.MAX_DEPTH` Parquet levels (98 dicts or 49 lists), or
        more fields than one Parquet footer holds (:func:`~esnotebook._schema.check_width`).

        Returns
        -------
        list[RecordedEvent]
            The events as stored, with positions and versions.

        Examples
        --------
        >>> import esnotebook as es
        >>> store = es.InMemoryEventStore()
        >>> [e.version for e in store.append("order-1", [es.NewEvent("OrderPlaced", {"customer": "c-1"})])]
        [1]
        """
        _check_stream_id(stream_id)
        if expected_version is not None:
            _check_int("expected_version", expected_version, 0)
        batch = list(events)
        for i, e in enumerate(batch):
            if not isinstance(e, NewEvent):
                raise EventDataError(
                    f"events[{i}] must be an esnotebook.NewEvent (got {type(e).__name__})"
                )
        with self._writing():
            versions = self._version_index()
            number = self._stream_numbers().get(stream_id, len(versions))
            current = versions.get(stream_id, 0)
            if expected_version is not None and expected_version != current:
                raise ConcurrencyError(stream_id, expected_version, current)
            if not batch:
                return []
            datas, schemas = plan_payloads(batch, self._schemas, self._exact)
            self._check_width(batch, schemas)
            metas = [_checked_metadata(e, i) for i, e in enumerate(batch)]
            now = self._clock()
            head = self._head
            recorded = [
                RecordedEvent(
                    head + i, stream_id, current + i, e.type, e.event_id, now,
                    e.correlation_id, e.causation_id, d, m,
                )  # fmt: skip
                for i, (e, d, m) in enumerate(zip(batch, datas, metas), start=1)
            ]
            self._commit_events(recorded, schemas, number)
            self._accept_schemas(schemas)
            self._head = head + len(recorded)
            versions[stream_id] = current + len(recorded)
            if number == len(self._numbers):
                self._numbers[stream_id] = number  # a new stream: keep the numbers in step
            return recorded

    def _check_width(self, batch: list[NewEvent], changed: dict[str, Schema]) -> None:
        """Refuse a commit of ``batch`` whose file pyarrow could not reopen (too many fields).

        Skipped while no schema changes and every field of the store fits in one file.
        """
        union = self._field_union()
        if not changed:
            if self._fitting is not union:
                try:
                    _schema.check_width({**HEADER_SCHEMA, **union}, "the store")
                    self._fitting = union
                except EventDataError:
                    pass
            if self._fitting is union:
                return
        schemas = {**self._schemas, **changed}
        union = _field_union(schemas) if changed else union
        types = dict.fromkeys(e.type for e in batch)
        names = dict.fromkeys(f for t in types for f in schemas[t])
        where = f"an append of {len(batch)} events ({', '.join(types)})"
        _schema.check_width({**HEADER_SCHEMA, **{f: union[f] for f in names}}, where)

    def _accept_schemas(self, schemas: dict[str, Schema]) -> None:
        if not schemas:
            return
        for event_type, schema in schemas.items():
            self._schemas[event_type] = schema
        self._fields = fields = _field_union(self._schemas)
        # A field a type has only seen as None takes the column type another type gave it.
        for event_type, schema in self._schemas.items():
            for name, dtype in schema.items():
                if isinstance(dtype, pl.Null) and not isinstance(fields[name], pl.Null):
                    schema[name] = fields[name]
                    schemas.setdefault(event_type, schema)
        for event_type in schemas:
            self._exact[event_type] = _schema.exact_types(self._schemas[event_type])

    def append_frame(self, frame: pl.DataFrame | pd.DataFrame) -> range:
        """Append a dataframe of events in one atomic commit; return the positions given.

        Columns: ``stream_id`` and ``event_type`` (required); optionally ``version``
        (checked: each stream must continue from its stored version without gaps),
        ``recorded_at`` (timezone-aware; default now), ``event_id`` (UUID strings; default
        new ones), ``correlation_id`` (default the event id), ``causation_id``,
        ``metadata`` (JSON text) and ``position`` (checked: must continue from the head).
        Every other column is a payload field; an event carries the fields that are not
        null in its row. Rows are appended in frame order.

        Examples
        --------
        >>> import esnotebook as es, polars as pl
        >>> store = es.InMemoryEventStore()
        >>> store.append_frame(pl.DataFrame({
        ...     "stream_id": ["order-1", "order-1"],
        ...     "event_type": ["OrderPlaced", "ItemAdded"],
        ...     "customer": ["c-1", None],
        ...     "sku": [None, "sku-9"],
        ... }))
        range(1, 3)
        """
        frame = _as_polars(frame)
        prepared = _prepare_frame(frame)
        n = prepared.height
        with self._writing():
            head = self._head
            if n == 0:
                return range(head + 1, head + 1)
            if "position" in prepared.columns:
                _check_positions(prepared, head)
                prepared = prepared.drop("position")
            versions = self._version_index()
            prepared, top = _assign_versions(prepared, versions, self._stream_numbers())
            now = self._clock()
            prepared = _fill_header(prepared, head, now)
            commit, schemas = self._commit_layout(prepared)
            self._commit_frame(commit, head + 1, head + n, schemas)
            self._accept_schemas(schemas)
            self._head = head + n
            versions.update(top)
            return range(head + 1, head + n + 1)

    def _commit_layout(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, Schema]]:
        """The commit's event frame (header + union of its types' fields) and new schemas."""
        payload = [c for c in frame.columns if c not in HEADER]
        changed: dict[str, Schema] = {}
        types = frame.get_column("event_type").unique(maintain_order=True).to_list()
        for event_type in types:
            check_event_type(event_type)
        if payload:
            # Which fields each type carries: the columns not null in some row of that type.
            seen = frame.group_by("event_type").agg(pl.col(payload).is_not_null().any())
            presence = {row[0]: row[1:] for row in seen.iter_rows()}
        carried: dict[str, None] = {}
        for event_type in types:
            present = presence[event_type] if payload else ()
            fields = [c for c, has in zip(payload, present) if has]
            carried.update(dict.fromkeys(fields))
            stored = self._schemas.get(event_type, {})
            schema = dict(stored)
            for f in fields:
                _schema.check_field_name(f, event_type)
                dt = _schema.frame_dtype(frame.schema[f], f"column {f!r}")
                schema[f] = _schema.extend(stored[f], dt, f"{event_type} field {f!r}") if f in stored else dt
            share_field_types(event_type, schema, self._schemas, changed)
            if schema != stored or event_type not in self._schemas:
                changed[event_type] = schema
        union = _field_union({**self._schemas, **changed})
        names = canonical_columns({**self._schemas, **changed}, types)[len(CANONICAL_COLUMNS):]
        _schema.check_width({**HEADER_SCHEMA, **{f: union[f] for f in names}}, "append_frame")
        # Columns no row carries (all null) are dropped: a commit stores only what it holds.
        try:
            commit = frame.select(
                *HEADER,
                *(_cast_field(f, union[f]) if f in carried else pl.lit(None, union[f]).alias(f) for f in names),
            )
        except pl.exceptions.InvalidOperationError:
            raise _cast_failure(frame, {f: union[f] for f in carried}) from None
        return commit, changed

    # ------------------------------------------------------------------ read
    def read_stream(
        self, stream_id: str, *, from_version: int = 1, to_version: int | None = None
    ) -> list[RecordedEvent]:
        """The events of one stream with ``from_version <= version <= to_version``."""
        _check_stream_id(stream_id)
        _check_int("from_version", from_version, 1)
        if to_version is not None:
            _check_int("to_version", to_version, 0)
        self._refresh()
        pred = (pl.col("stream_id") == stream_id) & (pl.col("version") >= from_version)
        if to_version is not None:
            pred &= pl.col("version") <= to_version
        events = self._retrying(lambda: self._events_where(None, pred))
        events.sort(key=lambda e: e.version)
        return events

    def read_all(
        self,
        *,
        from_position: int = 0,
        to_position: int | None = None,
        event_types: Sequence[str] | None = None,
    ) -> Iterator[RecordedEvent]:
        """Events with ``from_position < position <= to_position``, in position order.

        An iterator: it reads in chunks, so walking a large store does not hold it all.
        It reads the store as it was when called: appends made meanwhile (by other
        threads) are not part of it, and every append is there whole or not at all.
        """
        _check_int("from_position", from_position, 0)
        if to_position is not None:
            _check_int("to_position", to_position, 0)
        self._refresh()
        with self._mutex:
            end = self._head if to_position is None else min(to_position, self._head)
            types = None if event_types is None else self._types(event_types)
        return self._iter_frames(types, from_position, end)

    def _iter_frames(self, types: list[str] | None, start: int, end: int) -> Iterator[RecordedEvent]:
        """Events with ``start < position <= end`` of ``types`` (``None``: every type)."""
        lo = start
        while lo < end:
            hi = min(lo + READ_CHUNK, end)
            pred = (pl.col("position") > lo) & (pl.col("position") <= hi)
            yield from self._retrying(lambda: self._events_where(types, pred, lo, hi))
            lo = hi

    def _events_where(
        self, types: Sequence[str] | None, predicate: pl.Expr, start: int = 0, end: int | None = None
    ) -> list[RecordedEvent]:
        lf = self._events_frame(start, end)
        if lf is None:
            return []
        if types is not None:
            predicate &= pl.col("event_type").is_in(list(types))
        frame = lf.filter(predicate).collect()
        return events_from_frame(frame, self._schemas)

    def _types(self, event_types: Sequence[str] | str | None) -> list[str]:
        if event_types is None:
            return sorted(self._schemas)
        if isinstance(event_types, str):
            event_types = [event_types]
        return [t for t in dict.fromkeys(event_types) if t in self._schemas]

    def scan(
        self,
        *,
        event_types: Sequence[str] | None = None,
        from_position: int = 0,
        to_position: int | None = None,
        with_metadata: bool = False,
        with_stream_number: bool = False,
    ) -> pl.LazyFrame:
        """The canonical event frame as a polars LazyFrame, in position order.

        Columns: ``position, stream_id, version, event_type, event_id, recorded_at,
        correlation_id, causation_id``, then (with ``with_metadata=True``) ``metadata`` as
        JSON text, then (with ``with_stream_number=True``) ``stream_number``, then the
        payload fields of the selected event types, each a typed column, null where an
        event type lacks the field.

        ``stream_number`` is the stream's index in :meth:`streams` (0 for the first stream
        created): a dense integer that the store keeps beside every event, so that a
        projection can aggregate per stream with array indexing instead of hashing strings.

        The frame holds the appends committed when ``scan`` was called, each one whole.
        Commits are stored in position order, each sorted, so the frame is their
        concatenation: no sort. ``event_types`` and the position range become filters
        that the Parquet reader pushes down to row-group statistics.

        With the Parquet store, the frame reads the files committed when ``scan()`` was
        called: if a compaction in another process replaces them before it is collected,
        collecting raises :class:`~esnotebook.errors.StoreChangedError` (the store is
        intact; call ``scan()`` again). :meth:`to_polars` retries by itself.

        Parameters
        ----------
        event_types
            Only these event types (default: all).
        from_position, to_position
            Only events with ``from_position < position <= to_position``.

        Examples
        --------
        >>> import esnotebook as es
        >>> store = es.InMemoryEventStore()
        >>> _ = store.append("order-1", [es.NewEvent("OrderPlaced", {"customer": "c-1"})])
        >>> store.scan().select("position", "event_type", "customer").collect().row(0)
        (1, 'OrderPlaced', 'c-1')
        """
        _check_int("from_position", from_position, 0)
        if to_position is not None:
            _check_int("to_position", to_position, 0)
        self._refresh()
        with self._mutex:  # types, columns and frame of one snapshot: no append in between
            types = self._types(event_types)
            columns = canonical_columns(self._schemas, types)
            lf = self._events_frame(from_position, to_position) if types else None
            narrow = len(types) < len(self._schemas)
        extra = [c for c, on in (("metadata", with_metadata), ("stream_number", with_stream_number)) if on]
        columns[len(CANONICAL_COLUMNS) : len(CANONICAL_COLUMNS)] = extra
        if lf is None:
            return empty_frame(with_metadata, with_stream_number).lazy()
        if with_stream_number:
            lf = self._with_stream_numbers(lf)
        if narrow:
            lf = lf.filter(pl.col("event_type").is_in(types))
        if from_position:
            lf = lf.filter(pl.col("position") > from_position)
        if to_position is not None:
            lf = lf.filter(pl.col("position") <= to_position)
        return lf.select(columns)

    def to_polars(self, **kwargs: Any) -> pl.DataFrame:
        """:meth:`scan`, collected. Takes the same keyword arguments."""
        return self._retrying(lambda: self.scan(**kwargs).collect())

    def to_pandas(self, **kwargs: Any) -> pd.DataFrame:
        """:meth:`scan`, collected and converted to pandas through Arrow.

        Integer and boolean payload fields become pandas' nullable ``Int64`` and
        ``boolean`` columns, so a field some event types lack stays an integer column
        instead of turning into floats; ``position`` and ``version`` (never null) stay
        ``int64``.
        """
        return frame_to_pandas(self.to_polars(**kwargs))

    # ------------------------------------------------------------------ display
    def _summary(self) -> dict[str, Any]:
        return {
            "events": self.head_position,
            "streams": len(self.streams()),
            "event types": _capped_list(self.event_types()),
        }

    def __repr__(self) -> str:
        s = self._summary()
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in s.items())})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in self._summary().items()
        )
        return f"<b>{html.escape(type(self).__name__)}</b><table>{rows}</table>"


# ---------------------------------------------------------------------- helpers
def _holds_struct(dtype: pl.DataType) -> bool:
    while isinstance(dtype, pl.List):
        dtype = dtype.inner
    return isinstance(dtype, pl.Struct)


def _capped_list(names: list[str], limit: int = 12) -> str:
    """Names joined for display; a store with hundreds of types stays one short line."""
    if not names:
        return "none"
    more = f", … and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def frame_to_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """A canonical event frame as pandas, through Arrow, with nullable payload integers."""
    import pandas as pd
    import pyarrow as pa

    nullable = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    out = frame.to_arrow().to_pandas(types_mapper=nullable.get)
    never_null = [c for c in ("position", "version") if c in out.columns]
    return out.astype({c: "int64" for c in never_null}) if never_null else out


def _field_union(schemas: dict[str, Schema]) -> Schema:
    """Field -> column type over all event types (``Null`` only where every type has Null)."""
    out: Schema = {}
    for schema in schemas.values():
        for name, dtype in schema.items():
            if name not in out or isinstance(out[name], pl.Null):
                out[name] = dtype
    return out


def _checked_metadata(e: NewEvent, i: int) -> dict[str, Any]:
    """``e.metadata`` as it reads back from its JSON text (so keys are str in every store)."""
    if not e.metadata:
        return {}
    if all(type(k) is str and k.isascii() and _plain(v) for k, v in e.metadata.items()):
        return dict(e.metadata)  # flat ASCII text, ints, bools: the JSON round trip is exact
    try:
        text = json.dumps(e.metadata, ensure_ascii=False, allow_nan=False)
        text.encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise EventDataError(
            f"events[{i}] ({e.type}): metadata must be JSON-serialisable, with finite numbers "
            f"and valid Unicode text ({exc})"
        ) from None
    return json.loads(text)


def _plain(value: object) -> bool:
    t = type(value)
    return t is int or t is bool or value is None or (t is str and value.isascii())  # type: ignore[union-attr]
