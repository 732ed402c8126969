"""Projections (read models) in two forms that give one result.

*Handler form* (:class:`Projection`, the teaching form): one method per event type,
``on_<EventType>(row, event) -> row``, applied event by event in position order. The state
is a dict of rows keyed by :attr:`Projection.key`; a handler receives the current row of the
event's key (``None`` if there is none yet) and returns the new row (``None`` deletes it).
Handlers return a new dict instead of mutating the old one, so a handler that raises halfway
leaves the state untouched and the event can be retried or dead-lettered.

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
from collections.abc import Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC
from operator import itemgetter
from typing import Any, ClassVar, Literal

import polars as pl

from .events import RecordedEvent

__all__ = ["EventRow", "Projection", "ProjectionError", "VectorisedProjection"]

Engine = Literal["auto", "in-memory", "streaming"]
_ENGINES = ("auto", "in-memory", "streaming")


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
    it. Event types without a handler are skipped. Return a new dict rather than changing
    the one received: a handler that raises must leave the state as it was.

    Examples
    --------
    >>> import polars as pl
    >>> class OrdersPerCustomer(Projection):
    ...     key = "customer"
    ...     schema = {"customer": pl.String(), "orders": pl.Int64()}
    ...     def key_of(self, event):
    ...         return event.data["customer"]
    ...     def on_OrderPlaced(self, row, event):
    ...         n = row["orders"] if row else 0
    ...         return {"customer": event.data["customer"], "orders": n + 1}
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

    def apply(self, state: dict[Hashable, dict[str, Any]], event: RecordedEvent) -> None:
        """Apply one event to ``state`` in place; nothing changes if the handler raises."""
        try:
            bound = self.__dict__["_bound"]
        except KeyError:
            # Bound once per instance: a getattr per event was a fifth of a replay's time.
            bound = self.__dict__["_bound"] = {t: getattr(self, a) for t, a in self._handlers.items()}
        handler = bound.get(event.event_type)
        if handler is None:
            return
        key = self.key_of(event)
        new = handler(state.get(key), event)
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
        """The state as a polars frame with the declared schema, sorted by :attr:`key`."""
        if not state:
            return self.empty()
        frame = pl.from_dicts(list(state.values()), schema=dict(self.schema))
        return frame.sort(self.key)

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
        if engine not in _ENGINES:
            raise ValueError(f"'engine' must be one of {_ENGINES} (got {engine!r})")
        lf = self.conform(events)
        if self.event_types:
            lf = lf.filter(pl.col("event_type").is_in(list(self.event_types)))
        new = self.fold(state.lazy(), lf).select(list(self.schema)).collect(engine=engine)
        # Sorting the (small) state eagerly is several times cheaper than inside the plan.
        new = new.cast(dict(self.schema)).sort(self.key)  # type: ignore[arg-type]
        self.validate(new)
        return new

    def rebuild(self, events: pl.LazyFrame | pl.DataFrame, *, engine: Engine = "auto") -> pl.DataFrame:
        """Fold every event into the initial state and return the result (:meth:`view`)."""
        return self.view(self.run(self.initial(), events, engine=engine))


class EventRow(tuple):  # type: ignore[type-arg]
    """A recorded event as the runner hands it to handlers: a read-only row of a batch.

    It has the attributes of :class:`~esnotebook.RecordedEvent` (``position``,
    ``stream_id``, ``version``, ``event_type``/``type``, ``event_id``, ``recorded_at``,
    ``correlation_id``, ``causation_id``, ``data``, ``metadata``) but is made from the
    columns of a collected batch in one pass, several times cheaper than a RecordedEvent
    per event. :meth:`to_recorded` gives the RecordedEvent itself.

    Examples
    --------
    >>> import esnotebook as es
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append("order-1", [es.NewEvent("OrderPlaced", {"customer": "ada"})])
    >>> [e] = EventRow.from_store(store, 0, 1)
    >>> e.position, e.stream_id, e.data
    (1, 'order-1', {'customer': 'ada'})
    """

    __slots__ = ()

    position: int = property(itemgetter(0))  # type: ignore[assignment]
    stream_id: str = property(itemgetter(1))  # type: ignore[assignment]
    version: int = property(itemgetter(2))  # type: ignore[assignment]
    event_type: str = property(itemgetter(3))  # type: ignore[assignment]
    type: str = property(itemgetter(3))  # type: ignore[assignment]
    event_id: str = property(itemgetter(4))  # type: ignore[assignment]
    recorded_at: Any = property(itemgetter(5))
    correlation_id: str = property(itemgetter(6))  # type: ignore[assignment]
    causation_id: str | None = property(itemgetter(7))  # type: ignore[assignment]
    data: dict[str, Any] = property(itemgetter(8))  # type: ignore[assignment]

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata, decoded on access (handlers rarely read it)."""
        raw = self[9]
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
        n = frame.height
        if n == 0:
            return []
        header = [_pylist(frame.get_column(c)) for c in _HEADER]
        datas: list[Any] = [None] * n
        for (etype,), part in frame.with_row_index("__row").group_by("event_type"):
            names = [f for f in fields[etype] if f in frame.columns]  # type: ignore[index]
            rows = part.get_column("__row").to_list()
            if not names:
                for i in rows:
                    datas[i] = {}
                continue
            if any(isinstance(part.schema[f], pl.Datetime) for f in names):
                values: Iterable[tuple[Any, ...]] = zip(*(_pylist(part.get_column(f)) for f in names))
            else:
                values = part.select(names).rows()  # built in Rust: the cheapest way out
            for i, vals in zip(rows, values):
                datas[i] = dict(zip(names, vals))
        new = tuple.__new__
        return [new(cls, row) for row in zip(*header[:8], datas, header[8])]

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


_DELETED = object()


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


class _Overlay:
    """A batch's changes over the committed handler state: committed only when the batch is."""

    __slots__ = ("base", "changes")

    def __init__(self, base: dict[Hashable, Any]) -> None:
        self.base = base
        self.changes: dict[Hashable, Any] = {}

    def get(self, key: Hashable, default: Any = None) -> Any:
        value = self.changes.get(key, self.base.get(key, default))
        return default if value is _DELETED else value

    def __setitem__(self, key: Hashable, value: Any) -> None:
        self.changes[key] = value

    def pop(self, key: Hashable, default: Any = None) -> Any:
        value = self.get(key, default)
        self.changes[key] = _DELETED
        return value

    def merged(self) -> dict[Hashable, Any]:
        """The base with the changes applied (the base dict itself, changed in place)."""
        for key, value in self.changes.items():
            if value is _DELETED:
                self.base.pop(key, None)
            else:
                self.base[key] = value
        self.changes = {}
        return self.base



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
