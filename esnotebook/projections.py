"""Projections (read models) in two forms that give one result.

*Handler form* (:class:`Projection`, the teaching form): one method per event type,
``on_<EventType>(row, event) -> row``, applied event by event in position order. The state
is a dict of rows keyed by :attr:`Projection.key`; a handler receives a copy of the current
row of the event's key (``None`` if there is none yet), changes it or builds a new one, and
returns the new row (``None`` deletes it). Only a returned row is stored, so a handler that
raises halfway leaves the state untouched and the event can be retried or dead-lettered.

*Vectorised form* (:class:`VectorisedProjection`, the fast form): an initial state frame plus
``fold(state, events) -> state`` written as polars expressions. ``fold`` must be a fold in
the algebraic sense: folding two batches one after the other equals folding their
concatenation at once, which is what lets a runner apply any batch size, resume from a
checkpoint, bisect a failing batch, or split the work by key across machines.

Both forms declare ``key`` (the column that identifies a row), ``schema`` (the columns of the
result) and give their result sorted by ``key``, so the two forms of one read model can be
compared with ``frame.equals``.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC
from functools import cached_property
from itertools import repeat
from typing import Any, ClassVar, Literal, NamedTuple

import polars as pl

from .events import RecordedEvent

__all__ = ["EventRow", "Projection", "ProjectionError", "VectorisedProjection"]

Engine = Literal["auto", "in-memory", "streaming"]
_ENGINES = ("auto", "in-memory", "streaming")


def check_engine(engine: object) -> None:
    """Refuse an unknown polars engine name with a clear error."""
    if engine not in _ENGINES:
        raise ValueError(f"'engine' must be one of {_ENGINES} (got {engine!r})")


class ProjectionError(Exception):
    """A projection could not apply an event or a batch (bad history, a bug in a handler)."""


class _Base:
    """What both forms share: a name, a key, the result's schema and the event types read."""

    #: The projection's name: where its state, checkpoint and dead letters are kept.
    name: ClassVar[str] = ""
    #: The result column that identifies a row; ``"stream_id"`` keys rows by stream.
    key: ClassVar[str] = "stream_id"
    #: The state's columns and their types, in order.
    schema: ClassVar[Mapping[str, pl.DataType]] = {}
    #: The column the result is sorted by (default: :attr:`key`).
    order_by: ClassVar[str | None] = None
    #: State columns the projection needs for itself but does not show in its result.
    hidden: ClassVar[tuple[str, ...]] = ()
    form: ClassVar[Literal["handler", "vectorised"]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = cls.__name__

    @property
    def event_types(self) -> tuple[str, ...]:
        raise NotImplementedError

    def empty(self) -> pl.DataFrame:
        """The state with no rows: the declared schema."""
        return pl.DataFrame(schema=dict(self.schema))

    def view(self, state: pl.DataFrame) -> pl.DataFrame:
        """The result a user sees: the state frame without the :attr:`hidden` columns."""
        return state.drop(self.hidden) if self.hidden else state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, form={self.form!r}, key={self.key!r})"


class Projection(_Base):
    """The handler form: one method ``on_<EventType>(row, event)`` per event type handled.

    Subclasses set ``schema`` (and ``key``, default ``"stream_id"``) and write handlers.
    A handler gets the current row of the event's key as a dict (``None`` if absent) and
    the :class:`~esnotebook.RecordedEvent`, and returns the new row, or ``None`` to delete
    it. Event types without a handler are skipped.

    The row a handler gets is its own shallow copy: it may change the row's fields in place
    and return it (the cheapest way), or return a new dict. The copy is stored only when the
    handler returns, so a handler that raises leaves the state as it was. The copy is
    shallow: replace a list or dict inside a row (``row["lines"] = [*lines, new]``) rather
    than changing it in place, since the stored row still shares it.

    Examples
    --------
    >>> import polars as pl
    >>> class OrdersPerCustomer(Projection):
    ...     key = "customer"
    ...     schema = {"customer": pl.String(), "orders": pl.Int64()}
    ...     def key_of(self, event):
    ...         return event.data["customer"]
    ...     def on_OrderPlaced(self, row, event):
    ...         if row is None:
    ...             return {"customer": event.data["customer"], "orders": 1}
    ...         row["orders"] += 1
    ...         return row
    >>> OrdersPerCustomer().event_types
    ('OrderPlaced',)
    """

    form: ClassVar[Literal["handler", "vectorised"]] = "handler"
    _handlers: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass):
                if attr.startswith("on_") and callable(getattr(klass, attr)):
                    handlers[attr[3:]] = attr
        cls._handlers = handlers

    @property
    def event_types(self) -> tuple[str, ...]:
        """The event types this projection handles (those with an ``on_`` method)."""
        return tuple(sorted(self._handlers))

    def key_of(self, event: RecordedEvent) -> Hashable:
        """The row an event updates: its stream, or the payload field named :attr:`key`."""
        if self.key == "stream_id":
            return event.stream_id
        return event.data[self.key]

    def initial(self) -> dict[Hashable, dict[str, Any]]:
        """The state before any event: no rows."""
        return {}

    @cached_property
    def _bound(self) -> dict[str, Callable[..., Any]]:
        """Each handled event type's bound ``on_`` method. Bound once per instance: a
        getattr per event was a fifth of a replay's time."""
        return {t: getattr(self, a) for t, a in self._handlers.items()}

    def apply(self, state: dict[Hashable, dict[str, Any]], event: RecordedEvent) -> None:
        """Apply one event to ``state`` in place; nothing changes if the handler raises."""
        handler = self._bound.get(event.event_type)
        if handler is None:
            return
        key, _, new = _handle(handler, self.key_of, state, event)
        if new is None:
            state.pop(key, None)
        else:
            state[key] = new

    def apply_all(
        self, events: Iterable[RecordedEvent], state: dict[Hashable, dict[str, Any]] | None = None
    ) -> dict[Hashable, dict[str, Any]]:
        """Apply ``events`` in order to ``state`` (default: a new one) and return it."""
        state = self.initial() if state is None else state
        for event in events:
            self.apply(state, event)
        return state

    def to_frame(self, state: Mapping[Hashable, Mapping[str, Any]]) -> pl.DataFrame:
        """The state as a polars frame with the declared schema, sorted by :attr:`order_by`
        (default :attr:`key`)."""
        if not state:
            return self.empty()
        frame = pl.from_dicts(list(state.values()), schema=dict(self.schema))
        return frame.sort(self.order_by or self.key)

    def from_frame(self, frame: pl.DataFrame) -> dict[Hashable, dict[str, Any]]:
        """The state a frame made by :meth:`to_frame` stands for (restart from a snapshot)."""
        return {row[self.key]: row for row in frame.iter_rows(named=True)}

    def rebuild(self, events: Iterable[RecordedEvent]) -> pl.DataFrame:
        """Apply every event to an empty state and return the result (:meth:`view`)."""
        return self.view(self.to_frame(self.apply_all(events)))


class VectorisedProjection(_Base):
    """The vectorised form: an initial frame and a fold of event batches into it.

    Subclasses set ``schema``, ``key``, ``event_types`` and ``fields`` (the payload
    columns the fold reads, with their types: a column the store lacks, e.g. ``reason``
    before the first cancellation, is supplied as nulls) and write :meth:`fold`.

    Applying batches one after the other must equal applying their concatenation:
    ``run(run(s, a), b) == run(s, concat(a, b))``. A fold that keys its rows by a column of
    the events (``partition_key``, default :attr:`key`) can also run split by that key.

    Examples
    --------
    >>> import polars as pl
    >>> class EventsPerStream(VectorisedProjection):
    ...     schema = {"stream_id": pl.String(), "events": pl.UInt32()}
    ...     event_types = ("OrderPlaced",)
    ...     def fold(self, state, events):
    ...         new = events.group_by("stream_id").len("events")
    ...         return (pl.concat([state, new]).group_by("stream_id")
    ...                 .agg(pl.col("events").sum()))
    >>> p = EventsPerStream()
    >>> batch = pl.DataFrame({"stream_id": ["a", "b", "a"], "event_type": ["OrderPlaced"] * 3})
    >>> p.run(p.initial(), batch).rows()
    [('a', 2), ('b', 1)]
    """

    form: ClassVar[Literal["handler", "vectorised"]] = "vectorised"
    #: The event types the fold reads.
    event_types: ClassVar[tuple[str, ...]] = ()  # type: ignore[assignment]
    #: Payload fields the fold reads, with their types.
    fields: ClassVar[Mapping[str, pl.DataType]] = {}
    #: The event column whose value alone decides a row (enables partitioned rebuilds).
    partition_key: ClassVar[str | None] = None
    #: Whether each row is decided by the events of one stream alone, and the fold reads
    #: the store's ``stream_number`` column (a dense integer per stream, for array
    #: reductions: :mod:`esnotebook.per_stream`). Runners then ask the store for that
    #: column, and may rebuild the projection one range of streams at a time.
    keyed_by_stream: ClassVar[bool] = False

    def initial(self) -> pl.DataFrame:
        """The state before any event: the empty result frame."""
        return self.empty()

    def fold(self, state: pl.LazyFrame, events: pl.LazyFrame) -> pl.LazyFrame:
        """The state after ``events`` (canonical event frame, position order). Override."""
        raise NotImplementedError(f"{type(self).__name__} must implement fold(state, events)")

    def validate(self, state: pl.DataFrame) -> None:
        """Raise :class:`ProjectionError` if a new state shows a bad history (default: no check)."""

    def conform(self, events: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """``events`` with every column :attr:`fields` names (missing ones as typed nulls)."""
        lf = events.lazy()
        names = lf.collect_schema().names()
        missing = [pl.lit(None, dtype).alias(f) for f, dtype in self.fields.items() if f not in names]
        return lf.with_columns(missing) if missing else lf

    def run(
        self,
        state: pl.DataFrame,
        events: pl.LazyFrame | pl.DataFrame,
        *,
        engine: Engine = "auto",
    ) -> pl.DataFrame:
        """Fold ``events`` into ``state``, collect, check, and return the new state.

        Parameters
        ----------
        state
            The current state (e.g. :meth:`initial`).
        events
            A batch of the canonical event frame, in position order. Event types the
            projection does not read are dropped here.
        engine
            The polars engine; ``"streaming"`` handles inputs larger than memory.
        """
        check_engine(engine)
        lf = self.conform(events)
        if self.event_types:
            lf = lf.filter(pl.col("event_type").is_in(list(self.event_types)))
        return self._finish(self.fold(state.lazy(), lf).select(list(self.schema)).collect(engine=engine))

    def _finish(self, new: pl.DataFrame) -> pl.DataFrame:
        """A collected new state with the declared types, in row order, checked."""
        new = new.select(list(self.schema)).cast(dict(self.schema))  # type: ignore[arg-type]
        order = self.order_by or self.key
        # Sorting the (small) state eagerly is several times cheaper than inside the plan,
        # and a state that comes out in order (a rebuild, mostly) needs no sort at all.
        if not new.get_column(order).is_sorted():
            new = new.sort(order)
        self.validate(new)
        return new

    def rebuild(self, events: pl.LazyFrame | pl.DataFrame, *, engine: Engine = "auto") -> pl.DataFrame:
        """Fold every event into the initial state and return the result (:meth:`view`)."""
        return self.view(self.run(self.initial(), events, engine=engine))


class _EventColumns(NamedTuple):
    """The columns of a batch an :class:`EventRow` holds, in order."""

    position: int
    stream_id: str
    version: int
    event_type: str
    event_id: str
    recorded_at: Any
    correlation_id: str
    causation_id: str | None
    data: dict[str, Any]
    metadata_json: str | None


class EventRow(_EventColumns):
    """A recorded event as the runner hands it to handlers: a read-only row of a batch.

    It has the attributes of :class:`~esnotebook.RecordedEvent` (``position``,
    ``stream_id``, ``version``, ``event_type``/``type``, ``event_id``, ``recorded_at``,
    ``correlation_id``, ``causation_id``, ``data``, and ``metadata``, decoded on access
    from ``metadata_json``) but is made from the columns of a collected batch in one pass,
    several times cheaper than a RecordedEvent per event. :meth:`to_recorded` gives the
    RecordedEvent itself.

    Examples
    --------
    >>> import esnotebook as es
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append("order-1", [es.NewEvent("OrderPlaced", {"customer": "ada"})])
    >>> [e] = EventRow.from_store(store, 0, 1)
    >>> e.position, e.stream_id, e.data
    (1, 'order-1', {'customer': 'ada'})
    """

    # A named tuple's fields are read by C descriptors, a third faster than properties.
    __slots__ = ()

    type = _EventColumns.event_type  # RecordedEvent's other name for it

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata, decoded on access (handlers rarely read it)."""
        raw = self.metadata_json
        return json.loads(raw) if raw else {}

    def to_recorded(self) -> RecordedEvent:
        """The same event as a :class:`~esnotebook.RecordedEvent`."""
        return RecordedEvent(*self[:9], self.metadata)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"EventRow(position={self.position}, stream_id={self.stream_id!r}, "
            f"event_type={self.event_type!r}, data={self.data!r})"
        )

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, fields: Mapping[str, Iterable[str]]) -> list[EventRow]:
        """One row per event of ``frame`` (the canonical event frame with ``metadata``), in
        its order; ``fields`` names each event type's payload fields (what ``data`` holds)."""
        if frame.height == 0:
            return []
        header = [_pylist(frame.get_column(c)) for c in _HEADER]
        datas = _payloads(frame, fields)
        # map() over zip() keeps the loop in C: a fifth cheaper than a list comprehension.
        return list(map(tuple.__new__, repeat(cls), zip(*header[:8], datas, header[8])))

    @classmethod
    def from_store(
        cls, store: Any, start: int, end: int, *, event_types: Iterable[str] | None = None
    ) -> list[EventRow]:
        """The events with ``start < position <= end`` (of ``event_types``) as rows."""
        types = None if event_types is None else list(event_types)
        frame = store.scan(
            event_types=types, from_position=start, to_position=end, with_metadata=True
        ).collect()
        present = frame.get_column("event_type").unique().to_list()
        return cls.from_frame(frame, {t: list(store.schema(t)) for t in present})


def _payloads(frame: pl.DataFrame, fields: Mapping[str, Iterable[str]]) -> list[dict[str, Any]]:
    """Each event's ``data`` in frame order: a dict of its own event type's fields."""
    datas: list[Any] = [None] * frame.height
    present = set(frame.columns)
    for (etype,), part in frame.with_row_index("__row").group_by("event_type"):
        names = [f for f in fields[etype] if f in present]  # type: ignore[index]
        columns = [_pylist(part.get_column(f)) for f in names]
        values = zip(*columns) if columns else repeat((), part.height)
        payloads = map(dict, map(zip, repeat(names), values))  # dict(zip(names, row)), in C
        for i, data in zip(part.get_column("__row").to_list(), payloads):
            datas[i] = data
    return datas


def _handle(
    handler: Callable[..., Any],
    key_of: Callable[[Any], Hashable],
    state: Mapping[Hashable, Any],
    event: Any,
) -> tuple[Hashable, Any, Any]:
    """One attempt at one event: ``(key, row before, new row)``. The handler gets a copy
    of the row, so the state is untouched until the caller stores the new row."""
    key = key_of(event)
    row = state.get(key)
    return key, row, handler(None if row is None else row.copy(), event)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch of handler events is applied.

    A batch allocates a few objects per event and none of them form cycles, yet each
    allocation burst triggers collections that walk the whole (large) state: pausing it
    makes a handler-form replay markedly faster. Reference counting still frees memory.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_HEADER = (
    "position", "stream_id", "version", "event_type", "event_id", "recorded_at",
    "correlation_id", "causation_id", "metadata",
)  # fmt: skip


def _pylist(column: pl.Series) -> list[Any]:
    """The column as Python values; UTC datetimes carry ``datetime.timezone.utc``, as the
    store's RecordedEvents do (polars hands back ``zoneinfo.ZoneInfo("UTC")``)."""
    dtype = column.dtype
    if isinstance(dtype, pl.Datetime) and dtype.time_zone == "UTC":
        utc = UTC
        if not column.has_nulls() and column.len() > 64:
            import pandas as pd

            micros = column.dt.cast_time_unit("us").dt.epoch("us").to_numpy()
            return pd.DatetimeIndex(micros.view("datetime64[us]")).tz_localize(utc).to_pydatetime().tolist()
        return [None if d is None else d.replace(tzinfo=utc) for d in column.dt.replace_time_zone(None).to_list()]
    return column.to_list()
