"""The repository: loads aggregates from their streams and saves their new events.

``load`` replays the stream (starting from the latest usable snapshot, if there is one);
``save`` appends the pending events with ``expected_version`` = the version the aggregate
was loaded at, so two writers that loaded the same version cannot both win.
"""

from __future__ import annotations

import bisect
import json
import warnings
from datetime import datetime
from typing import Any, Generic, TypeVar

import polars as pl

from ._schema import UTC_DATETIME
from .aggregates import Aggregate
from .errors import EventStoreError
from .events import NewEvent, RecordedEvent
from .snapshots import InMemorySnapshotStore, ParquetSnapshotStore, Snapshot, SnapshotStore, now_utc

__all__ = ["AggregateNotFoundError", "Repository"]

A = TypeVar("A", bound=Aggregate)


class AggregateNotFoundError(EventStoreError, LookupError):
    """No aggregate with this id exists (or existed at the wanted version or time)."""


class Repository(Generic[A]):
    """Loads and saves aggregates of one class.

    Parameters
    ----------
    store
        The event store.
    aggregate_class
        The :class:`~esnotebook.Aggregate` subclass this repository loads.
    snapshots
        A snapshot store (:class:`~esnotebook.snapshots.InMemorySnapshotStore`,
        :class:`~esnotebook.snapshots.ParquetSnapshotStore`) to load from and save to.
        When omitted but ``snapshot_every`` is given, one is made to match the event store:
        in its folder for a Parquet store, in memory otherwise.
    snapshot_every
        Take a snapshot when a save makes the version cross a multiple of this number.

    Examples
    --------
    >>> import esnotebook as es
    >>> from esnotebook.examples import Order
    >>> from esnotebook.repository import Repository
    >>> store = es.InMemoryEventStore()
    >>> orders = Repository(store, Order)
    >>> order = Order("o-1")
    >>> order.place("c-7")
    >>> order.add_item("sku-1", 2, 450)
    >>> _ = orders.save(order)
    >>> orders.load("o-1").total
    900
    """

    def __init__(
        self,
        store: Any,
        aggregate_class: type[A],
        *,
        snapshots: SnapshotStore | None = None,
        snapshot_every: int | None = None,
    ) -> None:
        if not (isinstance(aggregate_class, type) and issubclass(aggregate_class, Aggregate)):
            raise TypeError(
                f"aggregate_class must be a subclass of esnotebook.Aggregate (got {aggregate_class!r})"
            )
        if snapshot_every is not None and (
            isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 1
        ):
            raise ValueError(f"'snapshot_every' must be an int >= 1 or None (got {snapshot_every!r})")
        if snapshots is not None and not isinstance(snapshots, SnapshotStore):
            raise TypeError(
                f"'snapshots' must be a snapshot store or None (got {type(snapshots).__name__})"
            )
        if snapshots is None and snapshot_every is not None:
            snapshots = (
                ParquetSnapshotStore(store) if hasattr(store, "path") else InMemorySnapshotStore()
            )
        self.store = store
        self.aggregate_class = aggregate_class
        self.snapshots = snapshots
        self.snapshot_every = snapshot_every

    @property
    def aggregate_type(self) -> str:
        """The name snapshots are filed under: the class's qualified name."""
        return self.aggregate_class.__qualname__

    def __repr__(self) -> str:
        return (
            f"Repository({self.aggregate_class.__name__}, store={type(self.store).__name__}, "
            f"snapshots={type(self.snapshots).__name__ if self.snapshots else None}, "
            f"snapshot_every={self.snapshot_every})"
        )

    # ------------------------------------------------------------------ load
    def exists(self, id: str) -> bool:
        """Whether the aggregate's stream has any events."""
        return self.store.stream_version(self.aggregate_class.stream_id_for(id)) > 0

    def load(
        self,
        id: str,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
        use_snapshots: bool = True,
    ) -> A:
        """The aggregate rebuilt from its events, now or in the past.

        Parameters
        ----------
        id
            The aggregate's id.
        version
            Rebuild it as it was at this version (1 = after its first event).
        as_of
            Rebuild it as it was at this moment (timezone-aware): from the events recorded
            at or before it.
        use_snapshots
            ``False`` replays every event even when snapshots exist.

        Raises
        ------
        AggregateNotFoundError
            The stream has no events (or none at that version or time).
        """
        cls = self.aggregate_class
        stream_id = cls.stream_id_for(id)
        if version is not None and as_of is not None:
            raise ValueError("pass 'version' or 'as_of', not both")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise ValueError(f"'version' must be an int >= 1 (got {version!r})")
        if as_of is not None:
            return self._load_as_of(id, stream_id, as_of, use_snapshots)
        snapshot = self._snapshot(id, version) if use_snapshots else None
        if snapshot is not None:
            # Read from the snapshot's own version to check that its event is still there.
            events = self.store.read_stream(stream_id, from_version=snapshot.version, to_version=version)
            if events and events[0].version == snapshot.version and events[0].event_id == snapshot.last_event_id:
                return self._build(id, stream_id, events, snapshot, version, from_index=1)
        events = self.store.read_stream(stream_id, to_version=version)
        return self._build(id, stream_id, events, None, version)

    def _load_as_of(self, id: str, stream_id: str, as_of: datetime, use_snapshots: bool) -> A:
        if not isinstance(as_of, datetime) or as_of.tzinfo is None:
            raise ValueError(f"'as_of' must be a timezone-aware datetime (got {as_of!r})")
        events = self.store.read_stream(stream_id)
        times = [e.recorded_at for e in events]
        cut = bisect.bisect_right(times, as_of)
        if cut == 0:
            first = f"; its first event was recorded at {times[0].isoformat()}" if times else ""
            raise AggregateNotFoundError(
                f"{self.aggregate_class.__name__} {id!r} did not exist at {as_of.isoformat()} "
                f"(stream {stream_id!r}{first})"
            )
        snapshot = self._snapshot(id, cut) if use_snapshots else None
        if snapshot is not None and events[snapshot.version - 1].event_id == snapshot.last_event_id:
            return self._build(id, stream_id, events[:cut], snapshot, cut, from_index=snapshot.version)
        return self._build(id, stream_id, events[:cut], None, cut)

    def _snapshot(self, id: str, max_version: int | None) -> Snapshot | None:
        if self.snapshots is None:
            return None
        return self.snapshots.latest(
            self.aggregate_type, id, max_version=max_version,
            schema_version=self.aggregate_class.schema_version,
        )  # fmt: skip

    def _build(
        self,
        id: str,
        stream_id: str,
        events: list[RecordedEvent],
        snapshot: Snapshot | None,
        version: int | None,
        from_index: int = 0,
    ) -> A:
        aggregate = self.aggregate_class(id)
        if snapshot is not None:
            aggregate.set_state(snapshot.state_dict())
            aggregate.version = snapshot.version
            tail = events[from_index:] if from_index else events
            aggregate._replay(tail)
        else:
            if not events:
                now = self.store.stream_version(stream_id)
                detail = f"the stream is at version {now}" if now else "the stream has no events"
                raise AggregateNotFoundError(
                    f"{self.aggregate_class.__name__} {id!r} not found"
                    f"{f' at version {version}' if version is not None else ''}: "
                    f"{detail} (stream {stream_id!r})"
                )
            aggregate._replay(events)
        if version is not None and aggregate.version < version:
            raise AggregateNotFoundError(
                f"{self.aggregate_class.__name__} {id!r} has no version {version}: the stream "
                f"{stream_id!r} is at version {aggregate.version}"
            )
        # A command that raises rebuilds the state it started from by reloading it from here.
        aggregate._origin = self._reload
        return aggregate

    def _reload(self, id: str, version: int) -> A:
        """The aggregate at ``version`` (an origin, see :meth:`Aggregate._roll_back`)."""
        if version == 0:
            return self.aggregate_class(id)
        return self.load(id, version=version)

    def history(self, id: str) -> pl.DataFrame:
        """The aggregate's life, one row per event: what happened and the state after it.

        Columns: ``version, event_type, recorded_at`` and ``state`` (JSON text of
        :meth:`Aggregate.get_state` after the event). Made for looking at, so it replays the
        stream in full.

        Examples
        --------
        >>> import esnotebook as es
        >>> from esnotebook.examples import Inventory
        >>> stock = Repository(es.InMemoryEventStore(), Inventory)
        >>> item = Inventory("sku-1"); item.add_stock(3); item.reserve("o-1", 2)
        >>> _ = stock.save(item)
        >>> stock.history("sku-1")["state"].to_list()[-1]
        '{"on_hand":3,"reserved":2,"reservations":{"o-1":2}}'
        """
        stream_id = self.aggregate_class.stream_id_for(id)
        events = self.store.read_stream(stream_id)
        if not events:
            raise AggregateNotFoundError(
                f"{self.aggregate_class.__name__} {id!r} not found: the stream {stream_id!r} has no events"
            )
        aggregate = self.aggregate_class(id)
        states = []
        for e in events:
            aggregate.replay([e])
            states.append(json.dumps(aggregate.get_state(), separators=(",", ":"), default=str))
        return pl.DataFrame(
            {
                "version": [e.version for e in events],
                "event_type": [e.event_type for e in events],
                "recorded_at": [e.recorded_at for e in events],
                "state": states,
            },
            schema={"version": pl.Int64, "event_type": pl.String, "recorded_at": UTC_DATETIME,
                    "state": pl.String},
        )  # fmt: skip

    # ------------------------------------------------------------------ save
    def save(
        self,
        aggregate: A,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[RecordedEvent]:
        """Append the aggregate's pending events; return them as stored.

        ``expected_version`` is the version the aggregate was loaded at, so if someone
        else saved to the stream meanwhile, :class:`~esnotebook.ConcurrencyError` is raised,
        nothing is written and the aggregate keeps its pending events (reload and retry).
        ``correlation_id``, ``causation_id`` and ``metadata`` go on every event.

        A snapshot due with this save is written after the append. A state that cannot be
        snapshotted (not JSON) raises ``TypeError`` before anything is stored; a snapshot
        write that fails (a full disk, ...) does not fail the save, whose events are stored
        by then: it issues a ``RuntimeWarning`` naming the aggregate and the error, and the
        next loads replay from an older snapshot (snapshots are only a cache).
        """
        if not isinstance(aggregate, self.aggregate_class):
            raise TypeError(
                f"this repository saves {self.aggregate_class.__name__} aggregates "
                f"(got {type(aggregate).__name__})"
            )
        pending = aggregate._pending
        if not pending:
            return []
        start = aggregate.version - len(pending)
        every = self.snapshot_every
        due = every is not None and start // every < aggregate.version // every
        # Serialised before the append: a state that cannot be snapshotted stores nothing.
        state = self._state(aggregate) if due else None
        new = [
            NewEvent(p.type, p.data, metadata=metadata, correlation_id=correlation_id,
                     causation_id=causation_id)
            for p in pending
        ]  # fmt: skip
        recorded = self.store.append(aggregate.stream_id, new, expected_version=start)
        aggregate.mark_saved()
        if type(aggregate) is self.aggregate_class:
            aggregate._origin = self._reload
        if state is not None:
            try:
                self._take(aggregate, recorded[-1], state)
            except Exception as exc:  # noqa: BLE001 - the events are stored: never fail them for a cache
                warnings.warn(
                    f"{type(aggregate).__name__} {aggregate.id!r}: the snapshot at version "
                    f"{aggregate.version} was not saved ({type(exc).__name__}: {exc}); the "
                    "events are stored, loads replay from an older snapshot",
                    RuntimeWarning, stacklevel=2,
                )  # fmt: skip
        return recorded

    @staticmethod
    def _state(aggregate: A) -> str:
        try:
            return json.dumps(aggregate.get_state(), separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{type(aggregate).__name__}.get_state() must return JSON-compatible data to be "
                f"snapshotted ({exc}); override get_state/set_state"
            ) from None

    def _take(self, aggregate: A, last: RecordedEvent, state: str | None = None) -> Snapshot:
        assert self.snapshots is not None
        if state is None:
            state = self._state(aggregate)
        snapshot = Snapshot(
            self.aggregate_type, aggregate.id, last.version,
            self.aggregate_class.schema_version, last.event_id, now_utc(), state,
        )  # fmt: skip
        self.snapshots.save(snapshot)
        return snapshot

    def take_snapshot(self, id: str) -> Snapshot:
        """Snapshot the aggregate at its current version now (a full replay)."""
        if self.snapshots is None:
            raise ValueError("this repository has no snapshot store; pass snapshots=... or snapshot_every=...")
        stream_id = self.aggregate_class.stream_id_for(id)
        events = self.store.read_stream(stream_id)
        aggregate = self._build(id, stream_id, events, None, None)
        return self._take(aggregate, events[-1])

    def rebuild_snapshots(self) -> int:
        """Delete this class's snapshots and snapshot every one of its aggregates afresh.

        Returns the number of snapshots written.
        """
        if self.snapshots is None:
            raise ValueError("this repository has no snapshot store; pass snapshots=... or snapshot_every=...")
        from ._progress import progress_bar

        self.snapshots.delete(self.aggregate_type)
        prefix = f"{self.aggregate_class.stream_prefix}-"
        ids = [s[len(prefix):] for s in self.store.streams() if s.startswith(prefix)]
        for id in progress_bar(ids, desc=f"snapshots of {self.aggregate_class.__name__}", unit="aggregate"):
            self.take_snapshot(id)
        return len(ids)

