"""The projection runner: a consumer that keeps a projection up to date with a store.

It reads from its checkpoint (the last position applied) in batches, applies each batch,
and commits the new state, the new checkpoint and the dead letters together through its
target (see :mod:`esnotebook.runner_targets`), so a crash between batches neither skips nor
re-applies an event. Each step records lag metrics (:mod:`esnotebook.monitoring`).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from ._progress import ModelEta
from .deadletter import DeadLetterQueue
from .monitoring import METRICS_SCHEMA, LagStatus, lag_status
from .projections import (
    Engine,
    EventRow,
    Projection,
    ProjectionError,
    VectorisedProjection,
    _gc_paused,
    _handle,
)
from .runner_targets import Committed, MemoryTarget, ParquetTarget

if TYPE_CHECKING:
    import pandas as pd

    from .sim import RebuildCosts
    from .store.base import EventStore

__all__ = ["ProjectionRunner"]

OnError = Literal["dead_letter", "park", "raise"]
_ON_ERROR = ("dead_letter", "park", "raise")

#: Rebuilds longer than this many events show a progress bar by default.
PROGRESS_ABOVE = 1_000_000
#: Events per batch of a handler-form rebuild.
HANDLER_CHUNK = 100_000
#: Events per range of streams in a rebuild of a projection keyed by stream (see
#: ProjectionRunner._rebuild_by_streams): a few hundred MB of working memory.
STREAM_RANGE_EVENTS = 2_000_000


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ProjectionRunner:
    """Runs one projection against one store: steps, catch-up, rebuilds, dead letters, lag.

    Parameters
    ----------
    store
        Any :class:`~esnotebook.EventStore`.
    projection
        A :class:`~esnotebook.projections.Projection` (handler form) or
        :class:`~esnotebook.projections.VectorisedProjection` instance.
    target
        ``"memory"`` (default), ``"parquet"`` (``<store.path>/projections/<name>/`` of a
        Parquet store), or a :class:`MemoryTarget` / :class:`ParquetTarget`.
    checkpoint
        ``"resume"`` (default) continues from the state and checkpoint the target holds;
        ``"reset"`` starts from position 0 with an empty state.
    batch_size
        Events read per :meth:`step` (default 10 000).
    max_attempts
        Times an event is tried before it becomes a dead letter (default 3).
    on_error
        ``"dead_letter"`` (default): record the event and go on; ``"park"``: also hold back
        the later events of its stream; ``"raise"``: fail fast with :class:`ProjectionError`.
    engine
        The polars engine for vectorised folds (``"streaming"`` for larger-than-memory).
    clock
        Returns the current UTC time (tests pass a fake one).
    read_only
        Only read the target: for a dashboard or a notebook watching a runner that commits
        in another process. It loads the last commit, :meth:`refresh` loads a newer one,
        and it never writes or removes anything; :meth:`step`, :meth:`catch_up`,
        :meth:`rebuild` and :meth:`retry_dead_letters` raise ``PermissionError``.

    Notes
    -----
    One runner commits to a target at a time. A second runner that commits to a
    :class:`ParquetTarget` after the first one has (e.g. a forgotten runner in another
    notebook) gets :class:`~esnotebook.StoreLockedError` and writes nothing; open it with
    ``read_only=True`` to watch, or open a new runner to take over from the last commit.

    Examples
    --------
    >>> import esnotebook as es
    >>> from esnotebook.readmodels import OrderSummaryFrame
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append("order-1", [es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "ada"})])
    >>> runner = ProjectionRunner(store, OrderSummaryFrame())
    >>> runner.catch_up()
    1
    >>> runner.state.select("order_id", "status").row(0), runner.checkpoint
    (('1', 'placed'), 1)

    A dashboard watches it through the same target (with ``target="parquet"``, from any
    process), refreshing to see new commits:

    >>> watcher = ProjectionRunner(store, OrderSummaryFrame(), target=runner.target, read_only=True)
    >>> _ = store.append("order-2", [es.NewEvent("OrderPlaced", {"order_id": "2", "customer": "bob"})])
    >>> runner.catch_up(), watcher.refresh(), watcher.state.height
    (1, 2, 2)
    """

    def __init__(
        self,
        store: EventStore,
        projection: Projection | VectorisedProjection,
        *,
        target: Literal["memory", "parquet"] | MemoryTarget | ParquetTarget = "memory",
        checkpoint: Literal["resume", "reset"] = "resume",
        batch_size: int = 10_000,
        max_attempts: int = 3,
        on_error: OnError = "dead_letter",
        engine: Engine = "auto",
        clock: Callable[[], datetime] | None = None,
        read_only: bool = False,
    ) -> None:
        if isinstance(projection, type):
            projection = projection()
        if not isinstance(projection, (Projection, VectorisedProjection)):
            raise TypeError(
                "'projection' must be a Projection or VectorisedProjection instance "
                f"(got {type(projection).__name__})"
            )
        for name, value in (("batch_size", batch_size), ("max_attempts", max_attempts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name!r} must be an int >= 1 (got {value!r})")
        if on_error not in _ON_ERROR:
            raise ValueError(f"'on_error' must be one of {_ON_ERROR} (got {on_error!r})")
        if checkpoint not in ("resume", "reset"):
            raise ValueError(f"'checkpoint' must be 'resume' or 'reset' (got {checkpoint!r})")
        if read_only and checkpoint == "reset":
            raise ValueError(
                "a read_only runner reads the committed state: 'checkpoint' must be 'resume' "
                "(got 'reset')"
            )
        self.store = store
        self.projection = projection
        self.target = self._make_target(target)
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.on_error: OnError = on_error
        self.engine: Engine = engine
        self._clock = clock or _utc_now
        self.read_only = read_only
        self._metrics: list[dict[str, Any]] = []
        self._frame_cache: tuple[int, pl.DataFrame] | None = None
        self._commits = 0
        self._adopt(self.target.load() if checkpoint == "resume" else None)

    def _adopt(self, unit: Committed | None) -> None:
        if unit is None:
            self._state: Any = self.projection.initial()
            self._checkpoint = 0
            self._dlq = DeadLetterQueue(self.projection.name)
        else:
            self._state = self._from_frame(unit.state)
            self._checkpoint = unit.checkpoint
            self._dlq = DeadLetterQueue(self.projection.name, unit.dead_letters)
            # A dead letter past the checkpoint was recorded by a batch that never committed.
            self._dlq.drop_after(self._checkpoint)
        self._commits += 1

    def refresh(self) -> int:
        """Load the target's last commit (made by another runner since) and return its
        checkpoint: how a ``read_only`` runner follows a runner in another process."""
        self._adopt(self.target.load())
        return self._checkpoint

    def _writable(self) -> None:
        if self.read_only:
            raise PermissionError(
                f"{self.projection.name}: this runner was opened with read_only=True and only "
                "reads its target (refresh() loads newer commits); open one without read_only "
                "to apply events"
            )

    def _make_target(self, target: Any) -> MemoryTarget | ParquetTarget:
        if isinstance(target, (MemoryTarget, ParquetTarget)):
            return target
        if target == "memory":
            return MemoryTarget()
        if target == "parquet":
            root = getattr(self.store, "path", None)
            if root is None:
                raise ValueError(
                    "target='parquet' keeps the projection inside a ParquetEventStore's folder, "
                    f"but the store is a {type(self.store).__name__}; pass "
                    "target=ParquetTarget(path) to choose a folder"
                )
            return ParquetTarget(root / "projections" / self.projection.name)
        raise ValueError(
            "'target' must be 'memory', 'parquet', a MemoryTarget or a ParquetTarget "
            f"(got {target!r})"
        )

    # ------------------------------------------------------------------ state
    def _from_frame(self, state: Any) -> Any:
        if isinstance(self.projection, Projection) and isinstance(state, pl.DataFrame):
            return self.projection.from_frame(state)
        return state

    def _as_frame(self, state: Any) -> pl.DataFrame:
        if isinstance(state, pl.DataFrame):
            return state
        return self.projection.to_frame(state)  # type: ignore[union-attr]

    @property
    def state(self) -> pl.DataFrame:
        """The committed result as a polars frame, sorted by the projection's key."""
        return self.projection.view(self.full_state)

    @property
    def full_state(self) -> pl.DataFrame:
        """The committed state including the projection's hidden columns."""
        if self._frame_cache is None or self._frame_cache[0] != self._commits:
            self._frame_cache = (self._commits, self._as_frame(self._state))
        return self._frame_cache[1]

    def to_polars(self) -> pl.DataFrame:
        return self.state

    def to_pandas(self) -> pd.DataFrame:
        return self.state.to_pandas()

    @property
    def checkpoint(self) -> int:
        """The last position applied (0 before the first event)."""
        return self._checkpoint

    @property
    def lag(self) -> int:
        """Events in the store not applied yet."""
        return self.store.head_position - self._checkpoint

    @property
    def dead_letters(self) -> DeadLetterQueue:
        return self._dlq

    @property
    def metrics(self) -> pl.DataFrame:
        """One row per step: wall time, head, checkpoint, lags, events/s, and a rebuild's
        predicted and actual seconds (see :mod:`esnotebook.monitoring`)."""
        return pl.DataFrame(self._metrics, schema=METRICS_SCHEMA, orient="row") if self._metrics else (
            pl.DataFrame(schema=METRICS_SCHEMA)
        )

    def status(self, *, window: int = 10) -> LagStatus:
        """The Burrow-style lag status of the last ``window`` steps, with the catch-up time
        ``backlog / (consume rate - arrival rate)`` and its verdict (``draining``,
        ``growing`` or ``stalled``), both rates measured over the window (rules:
        :mod:`esnotebook.monitoring`)."""
        return lag_status(
            self.metrics, now=self._clock(), window=window,
            head=self.store.head_position, checkpoint=self._checkpoint,
        )  # fmt: skip

    # ------------------------------------------------------------------ commits
    def _commit(self, state: Any, checkpoint: int, *, target: Any = None) -> None:
        target = self.target if target is None else target
        frame_state = state if isinstance(target, MemoryTarget) else self._as_frame(state)
        dlq = self._dlq.to_polars() if len(self._dlq) or target.persistent else None
        target.commit(Committed(frame_state, checkpoint, dlq, self._clock()))
        self._state, self._checkpoint = state, checkpoint
        self._commits += 1

    # ------------------------------------------------------------------ stepping
    def step(self, n: int | None = None) -> int:
        """Apply the next batch of up to ``n`` events (default ``batch_size``); return how many
        positions were consumed (0 when caught up). Records one metrics row."""
        self._writable()
        n = self.batch_size if n is None else n
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"'n' must be an int >= 1 (got {n!r})")
        started = time.perf_counter()
        head = self.store.head_position
        start = self._checkpoint
        end = min(head, start + n)
        if end > start:
            saved = self._dlq.copy()
            try:
                state = self._apply_range(self._state, start, end, strict=self.on_error == "raise")
                self._commit(state, end)
            except BaseException:
                self._dlq = saved  # dead letters of a batch that did not commit are not real
                raise
        self._record(head, end - start, time.perf_counter() - started)
        return end - start

    def catch_up(self, max_events: int | None = None, *, progress: bool | None = None) -> int:
        """Step until the head seen at the start is reached (or ``max_events`` were read).

        Returns the number of positions consumed.
        """
        self._writable()
        goal = self.store.head_position
        if max_events is not None:
            if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 0:
                raise ValueError(f"'max_events' must be an int >= 0 or None (got {max_events!r})")
            goal = min(goal, self._checkpoint + max_events)
        done = 0
        with self._progress(goal - self._checkpoint, progress, "catch-up") as bar:
            while self._checkpoint < goal:
                k = self.step(min(self.batch_size, goal - self._checkpoint))
                done += k
                bar.update(k)
        return done

    def _progress(self, total: int, progress: bool | None, what: str) -> Any:
        from ._progress import progress_bar

        show = total > PROGRESS_ABOVE if progress is None else progress
        return progress_bar(total=total, enabled=show, desc=f"{self.projection.name} {what}",
                    unit="ev", unit_scale=True)  # fmt: skip

    def _record(
        self, head: int, applied: int, seconds: float, *,
        predicted: float | None = None, actual: float | None = None,
    ) -> None:  # fmt: skip
        now = self._clock()
        ckpt = self._checkpoint
        time_lag = 0.0
        if ckpt < head:
            oldest = self.store.scan(from_position=ckpt, to_position=ckpt + 1).select("recorded_at").collect()
            if oldest.height:
                time_lag = max((now - oldest.item()).total_seconds(), 0.0)
        self._metrics.append({
            "wall_time": now, "head": head, "checkpoint": ckpt, "offset_lag": head - ckpt,
            "time_lag_s": time_lag, "applied": applied, "seconds": seconds,
            "events_per_s": applied / seconds if seconds > 0 else None,
            "rebuild_predicted_s": predicted, "rebuild_actual_s": actual,
        })  # fmt: skip

    # ------------------------------------------------------------------ applying
    def _apply_range(self, state: Any, start: int, end: int, *, strict: bool) -> Any:
        p = self.projection
        if isinstance(p, Projection):
            # A persistent target may fail to commit: keep the committed dict untouched until
            # it has (a shallow copy; stored rows are never changed, only replaced).
            if self.target.persistent and state is self._state:
                state = dict(state)
            with _gc_paused():
                self._apply_events(state, self._events(start, end), strict=strict)
            return state
        return self._fold(state, self._scan(start, end), strict=strict)

    def _events(self, start: int, end: int) -> Iterable[Any]:
        """The handler form's events in ``start < position <= end``: light rows made from the
        columns of one collected batch, or RecordedEvents from a store without ``scan``."""
        p = self.projection
        if hasattr(self.store, "scan") and hasattr(self.store, "schema"):
            return EventRow.from_store(self.store, start, end, event_types=p.event_types)
        return self.store.read_all(from_position=start, to_position=end, event_types=p.event_types)

    def _apply_events(self, state: dict[Any, Any], events: Iterable[Any], *, strict: bool) -> None:
        """Apply ``events`` in order to ``state``, in place and all or nothing: if an error
        escapes (strict mode, an interrupt), the rows the batch changed are put back.

        The first attempt at an event runs inline; only an event that fails goes through
        retries, dead-lettering or parking.
        """
        p = self.projection
        assert isinstance(p, Projection)
        handlers, key_of = p._bound, p.key_of
        park = self.on_error == "park"
        blocked = self._dlq.blocked_streams if park else set()
        before: dict[Any, Any] = {}  # each key's row before the batch (None: it had none)
        try:
            for event in events:
                handler = handlers.get(event.event_type)
                if handler is None:
                    continue
                if blocked and event.stream_id in blocked:
                    self._park(event)
                    continue
                try:
                    # _handle inlined: a function call per event would cost a tenth of the time.
                    key = key_of(event)
                    row = state.get(key)
                    new = handler(None if row is None else row.copy(), event)
                except Exception as exc:
                    if strict:
                        raise _failure(p.name, event.position, event.event_type, exc) from exc
                    attempt = partial(_handle, handler, key_of, state, event)
                    ok, result, failure = self._retry(attempt, exc)
                    if not ok:
                        where = (event.position, event.stream_id, event.event_type)
                        self._dead_letter(*where, failure)  # type: ignore[arg-type]
                        if park:
                            blocked = self._dlq.blocked_streams
                        continue
                    key, row, new = result
                if key not in before:
                    before[key] = row
                if new is None:
                    state.pop(key, None)
                else:
                    state[key] = new
        except BaseException:
            for key, row in before.items():
                if row is None:
                    state.pop(key, None)
                else:
                    state[key] = row
            raise

    def _park(self, event: Any) -> None:
        self._dlq.park(event.position, event.stream_id, event.event_type, at=self._clock())

    def _scan(self, start: int, end: int) -> pl.LazyFrame:
        """The projection's events in ``start < position <= end``, lazily, so that polars
        reads only the columns the fold uses."""
        p = self.projection
        return self.store.scan(
            event_types=p.event_types, from_position=start, to_position=end,
            with_stream_number=p.keyed_by_stream,  # type: ignore[union-attr]
        )  # fmt: skip

    def _blocked(self, stream_id: str) -> bool:
        return self.on_error == "park" and stream_id in self._dlq.blocked_streams

    def _attempt(self, fn: Callable[[], Any]) -> tuple[bool, Any, tuple[Any, ...] | None]:
        """Call ``fn`` up to ``max_attempts`` times: ``(True, result, None)`` or
        ``(False, None, (error, first failure, last failure, attempts))``."""
        try:
            return True, fn(), None
        except Exception as exc:  # noqa: BLE001 - any error is the event's failure
            return self._retry(fn, exc)

    def _retry(self, fn: Callable[[], Any], error: Exception) -> tuple[bool, Any, tuple[Any, ...] | None]:
        """:meth:`_attempt` after a first attempt that just failed with ``error``."""
        first = self._clock()
        for _ in range(self.max_attempts - 1):
            try:
                return True, fn(), None
            except Exception as exc:  # noqa: BLE001
                error = exc
        return False, None, (error, first, self._clock(), self.max_attempts)

    def _dead_letter(self, position: int, stream_id: str, event_type: str, failure: tuple[Any, ...]) -> None:
        error, first, last, attempts = failure
        self._dlq.fail(position, stream_id, event_type, error, attempts=attempts, first=first, last=last)

    def _fold(
        self, state: pl.DataFrame, batch: pl.LazyFrame | pl.DataFrame, *, strict: bool, engine: Engine | None = None
    ) -> pl.DataFrame:
        """Fold ``batch``; on failure bisect it, in order, down to the poison event(s)."""
        p = self.projection
        assert isinstance(p, VectorisedProjection)
        engine = engine or self.engine
        if self.on_error == "park" and len(self._dlq):
            blocked = pl.col("stream_id").is_in(list(self._dlq.blocked_streams))
            held = batch.lazy().filter(blocked).select("position", "stream_id", "event_type").collect()
            if held.height:
                at = self._clock()
                for pos, sid, etype in held.sort("position").iter_rows():
                    self._dlq.park(pos, sid, etype, at=at)
                batch = batch.filter(~blocked)
        if isinstance(batch, pl.DataFrame) and batch.height == 0:
            return state
        if isinstance(batch, pl.DataFrame) and batch.height == 1 and not strict:
            ok, new, failure = self._attempt(lambda: p.run(state, batch, engine=engine))
            if ok:
                return new
            row = batch.row(0, named=True)
            self._dead_letter(row["position"], row["stream_id"], row["event_type"], failure)  # type: ignore[arg-type]
            return state
        try:
            return p.run(state, batch, engine=engine)
        except Exception as exc:  # bisect whatever went wrong
            if strict:
                raise self._batch_failure(batch, exc) from exc
            error = exc
        frame = batch.lazy().sort("position").collect()
        if frame.height == 0:
            raise error  # not caused by any event (e.g. a bug in the fold itself)
        if frame.height == 1:
            return self._fold(state, frame, strict=strict, engine=engine)
        mid = frame.height // 2
        state = self._fold(state, frame.head(mid), strict=strict, engine=engine)
        return self._fold(state, frame.tail(frame.height - mid), strict=strict, engine=engine)

    def _batch_failure(self, batch: pl.LazyFrame | pl.DataFrame, exc: BaseException) -> ProjectionError:
        name = self.projection.name
        span = batch.lazy().select(pl.col("position").min().alias("lo"), pl.col("position").max().alias("hi"),
                                   pl.len().alias("n"), pl.col("event_type").first().alias("t")).collect().row(0)  # fmt: skip
        lo, hi, n, t = span
        if n == 1:
            return _failure(name, lo, t, exc)
        return ProjectionError(
            f"{name}: a batch of {n} events (positions {lo}..{hi}) failed: {type(exc).__name__}: {exc}"
        )

    # ------------------------------------------------------------------ dead letters
    def retry_dead_letters(self) -> int:
        """Re-apply the dead letters (after a fix), in position order; return how many now
        applied. One that fails again stays, with its attempts added; with parking on, the
        events parked behind it stay parked."""
        self._writable()
        positions = self._dlq.positions
        if not positions:
            return 0
        p = self.projection
        applied = 0
        failed_streams: set[str] = set()
        # A handler that raises leaves the state as it was (Projection.apply copies the row);
        # the dict itself is copied so the committed one stays as it is until the commit.
        state = dict(self._state) if isinstance(p, Projection) else self._state
        lo, hi = positions[0] - 1, positions[-1]
        wanted = set(positions)
        if isinstance(p, Projection):
            rows = [e for e in self.store.read_all(from_position=lo, to_position=hi) if e.position in wanted]
        else:
            frame = self.store.scan(event_types=p.event_types, from_position=lo, to_position=hi)
            frame = frame.filter(pl.col("position").is_in(positions)).collect()
            rows = [frame.slice(i, 1) for i in range(frame.height)]
        for item in rows:
            if isinstance(item, pl.DataFrame):
                pos, sid, etype = item.select("position", "stream_id", "event_type").row(0)
            else:
                pos, sid, etype = item.position, item.stream_id, item.event_type
            if self.on_error == "park" and sid in failed_streams:
                continue
            if isinstance(item, pl.DataFrame):
                ok, new, failure = self._attempt(
                    lambda state=state, item=item: p.run(state, item, engine=self.engine)  # type: ignore[union-attr,misc]
                )
            else:
                ok, _, failure = self._attempt(lambda item=item: p.apply(state, item))  # type: ignore[union-attr,arg-type,misc]
                new = state
            if ok:
                state = new
                self._dlq.remove(pos)
                applied += 1
            else:
                failed_streams.add(sid)
                self._dead_letter(pos, sid, etype, failure)  # type: ignore[arg-type]
        self._commit(state, self._checkpoint)
        return applied

    # ------------------------------------------------------------------ rebuilds
    def rebuild(
        self,
        *,
        mode: Literal["in_place", "shadow"] = "in_place",
        strict: bool = False,
        chunk_size: int | None = None,
        progress: bool | None = None,
        costs: RebuildCosts | None = None,
        client: Any = None,
        buckets: int | None = None,
    ) -> int:
        """Replay every event from position 0 into an empty state; return the events read.

        The progress bar shows, beside tqdm's rate-based ETA, a cost model's time left
        (``model 01:20 left``): ``seconds = overhead + per_event * events``, with the costs
        given, or else fitted on the first three chunks (how: :mod:`esnotebook.monitoring`).
        The rebuild's last metrics row records the model's forecast for the whole rebuild
        and the seconds it took (``rebuild_predicted_s``, ``rebuild_actual_s``; see
        :mod:`esnotebook.monitoring`).

        Parameters
        ----------
        mode
            ``"in_place"`` resets the checkpoint and truncates the target first, then
            commits after every chunk (a crash resumes from there). ``"shadow"`` builds the
            new state aside while the old one keeps serving reads, then swaps it in with
            one atomic commit (zero downtime).
        strict
            Fail fast with :class:`ProjectionError` on the first error instead of
            dead-lettering.
        chunk_size
            Events per fold or batch (default: the whole store in one fold for the
            vectorised form, 100 000 for the handler form). In place, each chunk is
            committed, so a crash resumes from the last one; the progress bar moves per chunk.
            Without a ``chunk_size``, a projection keyed by stream (``keyed_by_stream``) is
            rebuilt one range of stream numbers at a time instead, so memory holds one
            range's events and the rows made so far however large the store (one commit at
            the end).
        progress
            Show a progress bar with an ETA (default: when over a million events).
        costs
            A calibrated model, e.g. ``es.sim.calibrate(store, projection=...)``: anything
            with ``apply_cost`` (seconds per event) and ``rebuild_overhead`` (seconds per
            rebuild). Default: fit them on the first three chunks, so a rebuild in one
            chunk (by default, a vectorised projection not keyed by stream) predicts only
            what it measured: pass ``costs``, or a ``chunk_size``, for a forecast.
        client
            A ``distributed.Client``: rebuild a vectorised projection partition-parallel on
            Dask (see :func:`esnotebook._dask.partitioned_rebuild`); implies strict.
        buckets
            Partitions for the Dask rebuild (default: 4 per worker thread); a Dask rebuild
            records no forecast (the model is of one process).

        Examples
        --------
        >>> import esnotebook as es
        >>> store = es.InMemoryEventStore()
        >>> _ = store.append("order-1", [es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "ada"})])
        >>> runner = ProjectionRunner(store, es.OrderSummaryFrame())
        >>> runner.rebuild(costs=es.sim.RebuildCosts(apply_cost=0.5, rebuild_overhead=2.0))
        1
        >>> runner.metrics.select("rebuild_predicted_s").item()  # 2 s + 1 event * 0.5 s
        2.5
        """
        if mode not in ("in_place", "shadow"):
            raise ValueError(f"'mode' must be 'in_place' or 'shadow' (got {mode!r})")
        model = _model_costs(costs)
        self._writable()
        p = self.projection
        began = time.perf_counter()
        head = self.store.head_position
        if client is not None:
            from ._dask import partitioned_rebuild

            if not isinstance(p, VectorisedProjection):
                raise TypeError("a Dask rebuild needs a VectorisedProjection (got the handler form)")
            frame = partitioned_rebuild(self.store, p, client=client, buckets=buckets, to_position=head)
            self._dlq.clear()
            self._commit(frame, head)
            took = time.perf_counter() - began
            self._record(head, head, took, actual=took)
            return head
        by_streams = chunk_size is None and isinstance(p, VectorisedProjection) and p.keyed_by_stream
        if chunk_size is None:
            # One fold over the whole store: the scan needs no sort, while every extra chunk
            # re-merges the whole state.
            chunk_size = max(head, 1) if isinstance(p, VectorisedProjection) else HANDLER_CHUNK
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"'chunk_size' must be an int >= 1 (got {chunk_size!r})")
        saved_dlq = self._dlq.copy()
        self._dlq.clear()
        state: Any = p.initial()
        if mode == "in_place":
            self._commit(state, 0)
        done = 0
        try:
            with self._progress(head, progress, "rebuild") as bar:
                eta = ModelEta(bar, total=head, began=began, **model)
                if by_streams:
                    state = self._rebuild_by_streams(head, eta, strict=strict)
                    done = head
                while done < head:
                    started = time.perf_counter()
                    end = min(head, done + chunk_size)
                    state = self._apply_range(state, done, end, strict=strict)
                    if mode == "in_place":
                        self._commit(state, end)
                    eta.update(end - done)
                    if mode == "in_place":
                        now = time.perf_counter()
                        outcome = {"predicted": eta.predicted, "actual": now - began} if end == head else {}
                        self._record(head, end - done, now - started, **outcome)
                    done = end
        except BaseException:
            if mode == "shadow":
                self._dlq = saved_dlq  # the old state still serves; nothing was swapped
            raise
        if mode == "shadow" or by_streams:
            self._commit(state, head)
            took = time.perf_counter() - began
            self._record(head, head, took, predicted=eta.predicted, actual=took)
        return head

    def _rebuild_by_streams(self, head: int, bar: Any, *, strict: bool) -> pl.DataFrame:
        """The state after every event up to ``head``, built one range of stream numbers at a
        time: a projection keyed by stream needs no other stream's events for a row, so
        memory holds one range's events (about :data:`STREAM_RANGE_EVENTS`) and the rows
        made so far, whatever the size of the store.

        Streams are numbered as they are created and live for a while, so each range's
        events sit in a few row groups of the files and the reader skips the rest by their
        statistics. Each range is folded with array reductions (the in-memory engine), then
        the ranges' rows are stacked in stream order.

        Two ranges are folded at a time, in threads: a fold is a pure function of its events,
        and its numpy and polars work releases the GIL, so the second core does the next
        range. A range whose fold fails is folded again here, through the usual bisection
        and dead-lettering (ranges hold disjoint streams, so parking stays within one).
        """
        from concurrent.futures import ThreadPoolExecutor

        p = self.projection
        assert isinstance(p, VectorisedProjection)
        numbers = self._scan(0, head).select(pl.col("stream_number").max()).collect(engine="streaming").item()
        if numbers is None:
            return p.initial()
        ranges = max(1, -(-head // STREAM_RANGE_EVENTS))
        width = -(-(numbers + 1) // ranges)
        batches = [
            self._scan(0, head).filter(pl.col("stream_number").is_between(lo, lo + width - 1))
            for lo in range(0, numbers + 1, width)
        ]
        parts, told = [], 0
        with ThreadPoolExecutor(max_workers=2) as pool:
            # At most two ranges ahead of the one being collected: memory stays bounded.
            pending = [pool.submit(p.run, p.initial(), b, engine="in-memory") for b in batches[:2]]
            for i, batch in enumerate(batches):
                future = pending.pop(0)
                if i + 2 < len(batches):
                    pending.append(pool.submit(p.run, p.initial(), batches[i + 2], engine="in-memory"))
                try:
                    parts.append(future.result())
                except Exception:  # noqa: BLE001 - folded again below, with bisection
                    parts.append(self._fold(p.initial(), batch, strict=strict, engine="in-memory"))
                # Per batch, not per range: a store of few streams has fewer batches than ranges.
                step = head * (i + 1) // len(batches) - told
                bar.update(step)
                told += step
        state = pl.concat(parts, how="vertical", rechunk=False)
        order = p.order_by or p.key
        return state if state.get_column(order).is_sorted() else state.sort(order)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        return (
            f"ProjectionRunner({self.projection.name!r}, form={self.projection.form!r}, "
            f"checkpoint={self._checkpoint}, lag={self.lag}, dead_letters={len(self._dlq)})"
        )

    def _repr_html_(self) -> str:
        st = self.status()
        rows = {
            "projection": f"{self.projection.name} ({self.projection.form} form)",
            "target": repr(self.target),
            "checkpoint": self._checkpoint,
            "offset lag": self.lag,
            "rows": self.state.height,
            "dead letters": len(self._dlq),
            "status": str(st),
        }
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in rows.items()
        )
        return f"<b>ProjectionRunner</b><table>{body}</table>"


def _model_costs(costs: Any) -> dict[str, float]:
    """``ModelEta``'s arguments from a calibrated model (none: it fits its own)."""
    if costs is None:
        return {}
    values = [getattr(costs, name, None) for name in ("apply_cost", "rebuild_overhead")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf") for v in values):
        raise TypeError(
            "'costs' must have apply_cost and rebuild_overhead in seconds >= 0, like "
            f"es.sim.calibrate's RebuildCosts (got {costs!r})"
        )
    return {"per_event": float(values[0]), "overhead": float(values[1])}


def _failure(name: str, position: int, event_type: str, exc: BaseException) -> ProjectionError:
    return ProjectionError(
        f"{name}: event at position {position} ({event_type}) failed: {type(exc).__name__}: {exc}"
    )
