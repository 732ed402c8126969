"""What a real consumer costs: :class:`ServiceProfile` and :func:`measure_consumer`.

:func:`measure_consumer` runs a real :class:`~esnotebook.runner.ProjectionRunner` step by
step and times every step. Steps of one event give the cost of an event that comes alone
(the fixed cost of a step: read, commit, metrics, plus the event); steps of several events
give, by difference, the cost each further event adds. :func:`~esnotebook.sim.simulate_lag`
takes the profile in place of ``service_rate``: each batch pays a fixed cost drawn from the
measured ones (so a one-event step costs what the measured ones did, pauses included) and
each event the mean per-event cost.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from ._costs import _TIMERS
from ._result import _dict_table

if TYPE_CHECKING:
    import pandas as pd

    from ..projections import Projection, VectorisedProjection

__all__ = ["ServiceProfile", "measure_consumer", "order_events"]

Timer = Literal["wall", "cpu"]
Appends = Literal["before", "between"]
_HEADER = ("stream_id", "version", "event_type", "recorded_at")
#: Seconds a cold step's consumer waits first: a live consumer's wait between events.
_IDLE = 0.005
#: A growth term is kept only this many standard errors above 0 (see ``_fit``).
_SIGNIFICANT = 3.0


@dataclass(frozen=True, slots=True, eq=False)
class ServiceProfile:
    """The measured service time of a real projection runner.

    Attributes
    ----------
    mean
        Mean seconds each event adds to a step (the per-event cost, fixed costs excluded).
    cv
        Coefficient of variation of the service time of an event that comes alone (a step
        of one event: fixed cost plus the event), the service time at ``batch_size=1``.
    batch_overhead
        Mean fixed seconds of a step, whatever its size: reading, committing, recording
        metrics (``commit_overhead`` included).
    commit_overhead
        Mean seconds of the checkpoint commit, part of ``batch_overhead``.
    behind_overhead
        Extra seconds a step takes, after its commit, when more events are waiting (the
        runner looks up the oldest one for the time lag it records).
    cold_overhead
        Extra seconds of a step that starts after the consumer waited for events: caches
        gone cold, polars' threads to wake (measured after a 5 ms wait).
    stale_saving
        Seconds a step saves when nothing was appended since the last read: ``batch_overhead``
        includes reading fresh appends (an in-memory store turns them into a frame on the
        first read after them), which a consumer working through a backlog does not pay at
        every step.
    growth, behind_growth
        Seconds the fixed cost and the lookup grow by per earlier read of fresh appends,
        for a store whose reads slow down as a live producer fills it (measured with
        ``appends="between"``, and kept only where the timings show it at 3 standard
        errors: both stores read the newest events at a cost that does not grow, so these
        are normally 0). ``batch_overhead``, ``overheads`` and
        ``behind_overhead`` are the costs with no such reads yet.
    reads
        Reads of fresh appends the store has had when a simulation with this profile
        starts (see :meth:`at`).
    append_cost
        Mean CPU seconds the producer spends on one append into a store of the same kind
        (the live producer's share of the interpreter, see :mod:`esnotebook.live`).
    batch_size
        The batch size the multi-event steps were measured at.
    by_type
        ``event_type, steps, single``: per event type, how many one-event steps were timed
        and their mean seconds (where types differ, it shows here).
    overheads
        The fixed cost of every one-event step measured (seconds): the distribution a
        simulation draws batch overheads from.
    timer, source
        ``"wall"`` or ``"cpu"`` seconds; ``"store"`` (the store's own events) or
        ``"generated"`` (order events in a scratch store).
    wall_ratio
        Wall seconds of the timed steps over their ``timer`` seconds: with CPU time, how
        much longer the steps took on the machine as it was (other programs, waking up);
        :meth:`as_wall` applies it.
    block
        Overheads are drawn in runs of this many consecutive measured ones (1: each on
        its own); for costs measured in order, whose slow steps come in stretches.

    Examples
    --------
    >>> p = ServiceProfile(mean=1e-4, cv=0.2, batch_overhead=6e-4, behind_overhead=3e-4)
    >>> round(p.rate(), 1), round(p.rate(10), 1)
    (1000.0, 5263.2)
    """

    mean: float
    cv: float
    batch_overhead: float
    commit_overhead: float = 0.0
    behind_overhead: float = 0.0
    cold_overhead: float = 0.0
    stale_saving: float = 0.0
    growth: float = 0.0
    behind_growth: float = 0.0
    reads: int = 0
    append_cost: float = 0.0
    batch_size: int = 1
    by_type: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(
            schema={"event_type": pl.String, "steps": pl.Int64, "single": pl.Float64}
        ),
        repr=False,
    )
    overheads: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    timer: Timer = "wall"
    source: str = "store"
    wall_ratio: float = 1.0
    block: int = 1

    def __post_init__(self) -> None:
        names = ("mean", "cv", "batch_overhead", "commit_overhead", "behind_overhead",
                 "cold_overhead", "stale_saving", "growth", "behind_growth", "append_cost",
                 "wall_ratio")  # fmt: skip
        for name in names:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name!r} must be a finite number >= 0 (got {value!r})")
        if isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < 1:
            raise ValueError(f"'block' must be an int >= 1 (got {self.block!r})")
        if self.mean + self.batch_overhead <= 0:
            raise ValueError("a ServiceProfile needs 'mean' or 'batch_overhead' > 0 (got both 0)")

    @property
    def single(self) -> float:
        """Mean seconds of an event that comes alone: ``batch_overhead + mean``."""
        return self.batch_overhead + self.mean

    @property
    def fixed_behind(self) -> float:
        """Mean fixed seconds of a step that leaves events waiting, after :attr:`reads`
        (working through a backlog: nothing fresh to read)."""
        fixed = max(self.batch_overhead - self.stale_saving, 0.0) + self.behind_overhead
        return fixed + (self.growth + self.behind_growth) * self.reads

    def rate(self, batch_size: int = 1) -> float:
        """Events per second one consumer sustains when behind, with full batches of
        ``batch_size``, after :attr:`reads` reads of fresh appends: its capacity."""
        return batch_size / (self.fixed_behind + batch_size * self.mean)

    def step_seconds(
        self, events: Any, *, reads: Any, behind: Any, cold: Any, fresh: Any = True
    ) -> np.ndarray:
        """Mean seconds of steps of ``events`` each, after ``reads`` reads of fresh appends
        (beyond :attr:`reads`), leaving events waiting (``behind``) or not, after an idle
        wait (``cold``) or not, reading fresh appends (``fresh``) or not: the model a
        simulation runs."""
        h = self.reads + np.asarray(reads, dtype=float)
        base = self.batch_overhead - self.stale_saving * ~np.asarray(fresh, dtype=bool)
        fixed = np.maximum(base, 0.0) + self.growth * h + self.cold_overhead * np.asarray(cold)
        late = np.asarray(behind) * (self.behind_overhead + self.behind_growth * h)
        return fixed + late + self.mean * np.asarray(events, dtype=float)

    def scaled(self, factor: float) -> ServiceProfile:
        """Every cost times ``factor``: e.g. CPU seconds as wall seconds on a machine where
        the consumer gets ``1 / factor`` of a core."""
        if not (isinstance(factor, (int, float)) and 0 < factor < math.inf):
            raise ValueError(f"'factor' must be a finite number > 0 (got {factor!r})")
        names = ("mean", "batch_overhead", "commit_overhead", "behind_overhead",
                 "cold_overhead", "stale_saving", "growth", "behind_growth")  # fmt: skip
        costs = {name: getattr(self, name) * factor for name in names}
        return replace(self, **costs, overheads=self.overheads * factor)

    def as_wall(self) -> ServiceProfile:
        """The costs in wall seconds: CPU costs times :attr:`wall_ratio` (a profile timed
        by the wall clock is returned as it is)."""
        if self.timer == "wall":
            return self
        return replace(self.scaled(self.wall_ratio), timer="wall", wall_ratio=1.0)

    def at(self, reads: int) -> ServiceProfile:
        """The same consumer on a store already read ``reads`` times after appends (with
        one event per append and per step, about the events it holds)."""
        if isinstance(reads, bool) or not isinstance(reads, int) or reads < 0:
            raise ValueError(f"'reads' must be an int >= 0 (got {reads!r})")
        return replace(self, reads=reads)

    def draw_overheads(self, n: int, rng: np.random.Generator) -> np.ndarray | float:
        """``n`` batch overheads resampled from the measured ones (their mean if none), in
        runs of :attr:`block` consecutive ones (a moving-block bootstrap: slow stretches,
        when the machine was busy, stay together)."""
        m = self.overheads.size
        if m == 0:
            return self.batch_overhead
        if self.block == 1:
            return rng.choice(self.overheads, size=n)
        starts = rng.integers(0, m, size=-(-n // self.block))
        index = (starts[:, None] + np.arange(self.block)).ravel()[:n] % m
        return self.overheads[index]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "cv": self.cv,
            "batch_overhead": self.batch_overhead,
            "commit_overhead": self.commit_overhead,
            "behind_overhead": self.behind_overhead,
            "cold_overhead": self.cold_overhead,
            "stale_saving": self.stale_saving,
            "growth": self.growth,
            "behind_growth": self.behind_growth,
            "reads": self.reads,
            "append_cost": self.append_cost,
            "batch_size": self.batch_size,
            "rate": self.rate(self.batch_size),
            "timer": self.timer,
            "source": self.source,
            "wall_ratio": self.wall_ratio,
        }

    def to_polars(self) -> pl.DataFrame:
        """The per-event-type costs (``by_type``)."""
        return self.by_type

    def to_pandas(self) -> pd.DataFrame:
        return self.by_type.to_pandas()

    def _repr_html_(self) -> str:
        return _dict_table("ServiceProfile", self.to_dict())


def order_events(
    n: int, *, seed: int | np.random.Generator = 0, tag: str = ""
) -> Iterator[tuple[str, Any]]:
    """``n`` order events ``(stream_id, NewEvent)`` in the order a shop records them: what
    the live producer appends (see :func:`esnotebook.datasets.generate_orders`). A ``tag``
    is appended to the stream and order ids (new orders beside a store's own).

    Examples
    --------
    >>> [e.type for _, e in order_events(2)]
    ['OrderPlaced', 'ItemAdded']
    """
    from ..datasets import generate_orders
    from ..datasets.orders import expected_events_per_order
    from ..events import NewEvent

    orders = max(1, math.ceil(1.2 * n / expected_events_per_order()) + 5)
    frame = generate_orders(orders, seed=seed, progress=False)
    while frame.height < n:  # an unlucky draw: more orders, same seed
        orders *= 2
        frame = generate_orders(orders, seed=seed, progress=False)
    payload = [c for c in frame.columns if c not in _HEADER]
    for row in frame.head(n).iter_rows(named=True):
        data = {k: row[k] for k in payload if row[k] is not None}
        data["order_id"] += tag
        yield row["stream_id"] + tag, NewEvent(row["event_type"], data)


def _scratch_store(store: Any) -> tuple[Any, Any]:
    """An empty store of ``store``'s kind, and its temporary folder to remove (or None)."""
    from ..store import ParquetEventStore
    from ..store.memory import InMemoryEventStore

    if isinstance(store, ParquetEventStore):
        folder = tempfile.TemporaryDirectory(prefix="esnotebook-profile-")
        return ParquetEventStore(folder.name, durable=store.durable), folder
    return InMemoryEventStore(), None


def measure_consumer(
    store: Any,
    projection: Projection | VectorisedProjection,
    *,
    events: int = 400,
    batch_size: int = 10,
    appends: Appends = "before",
    target: Literal["memory", "parquet"] = "memory",
    timer: Timer = "cpu",
    producer_rate: float | None = None,
    seed: int = 0,
) -> ServiceProfile:
    """Time a real :class:`~esnotebook.ProjectionRunner` and return its service profile.

    With ``appends="between"`` each round appends events and times three steps: one
    event with nothing left waiting, one event with another waiting, and ``batch_size``
    (at least 2) events. A least-squares fit of the step times then separates the fixed
    cost of a step, its growth with the store's size, the cost per event and the extra
    cost of a step that leaves events waiting. Over a full store, one-event steps and then
    ``batch_size``-event steps give the fixed and the per-event cost. Each checkpoint
    commit is timed on its own.

    Parameters
    ----------
    store
        The events to time on: its first ``events`` positions. When it holds fewer, or
        with ``appends="between"``, an empty scratch store of the same kind is filled with
        generated order events, appended one by one as :func:`esnotebook.live.run`'s
        producer does. The store is only read.
    projection
        The projection the runner keeps (a fresh instance is not needed: its state is not
        touched; the runner starts from an empty state).
    events
        Events to time (at least 20).
    batch_size
        Events per multi-event step (the batch size the pipeline will run with, or more).
    appends
        ``"before"``: every event is in the store before the timing (a catch-up or a
        rebuild). ``"between"``: each step's events are appended just before it, as in a
        live pipeline, so the step also pays for reading events just written (an
        in-memory store turns its newest events into a frame on the first read after
        them). Always on generated events.
    target
        Where the runner commits: ``"memory"`` or ``"parquet"`` (a temporary folder).
    timer
        ``"cpu"`` (default: the process's CPU time, polars' threads included; steady on a
        busy machine, where wall time also counts other programs' turns on the cores) or
        ``"wall"`` seconds (what a pipeline waits for, I/O included: for a store whose
        reads wait on the disk).
    producer_rate
        Events per second a background thread appends (to another scratch store) while
        the steps are timed, as the live producer does: its turns at the interpreter (the
        GIL) and at the cores are then part of every step's cost. None: no producer.
    seed
        Seed of the generated events.

    Returns
    -------
    ServiceProfile

    Examples
    --------
    >>> import esnotebook as es
    >>> from esnotebook.readmodels import OrderSummary
    >>> p = measure_consumer(es.InMemoryEventStore(), OrderSummary(), events=40)
    >>> p.source, p.batch_overhead > 0, p.single > p.mean >= 0
    ('generated', True, True)
    """
    from ..runner import ProjectionRunner
    from ..runner_targets import ParquetTarget

    if isinstance(events, bool) or not isinstance(events, int) or events < 20:
        raise ValueError(f"'events' must be an int >= 20 (got {events!r})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"'batch_size' must be an int >= 1 (got {batch_size!r})")
    if target not in ("memory", "parquet"):
        raise ValueError(f"'target' must be 'memory' or 'parquet' (got {target!r})")
    if timer not in _TIMERS:
        raise ValueError(f"'timer' must be 'wall' or 'cpu' (got {timer!r})")
    if appends not in ("before", "between"):
        raise ValueError(f"'appends' must be 'before' or 'between' (got {appends!r})")
    if not hasattr(store, "scan") or not hasattr(store, "head_position"):
        raise TypeError(f"'store' must be an esnotebook event store (got {type(store).__name__})")
    clock = _TIMERS[timer]
    big = max(batch_size, 2)
    if appends == "between" and events < 3 * (4 + 2 * big):
        raise ValueError(
            f"'events' must be >= {3 * (4 + 2 * big)} for appends='between' with "
            f"batch_size={batch_size}: three rounds of timed steps (got {events})"
        )
    generated = appends == "between" or store.head_position < events
    folders = []
    feed = iter(())
    if generated:
        store, folder = _scratch_store(store)
        folders.append(folder)
        feed = order_events(events, seed=seed)
    appended: list[float] = []

    def fill(k: int) -> None:
        """Append the next ``k`` generated events, timing the producer's CPU."""
        for stream_id, event in islice(feed, k):
            t = time.thread_time()
            store.append(stream_id, [event])
            appended.append(time.thread_time() - t)

    try:
        if generated and appends == "before":
            fill(events)
        if target == "parquet":
            folders.append(tempfile.TemporaryDirectory(prefix="esnotebook-profile-target-"))
            runner_target: Any = ParquetTarget(folders[-1].name)
        else:
            runner_target = "memory"
        runner = ProjectionRunner(
            store, type(projection)(), target=runner_target, checkpoint="reset"
        )
        commits: list[float] = []
        real_commit = runner.target.commit

        def timed_commit(unit: Any, *args: Any, **kwargs: Any) -> None:
            t = clock()
            real_commit(unit, *args, **kwargs)
            commits.append(clock() - t)

        runner.target.commit = timed_commit  # type: ignore[method-assign]
        growing = generated and appends == "between"
        with _producer(store, producer_rate, seed=seed):
            steps = _time_steps(runner, fill, clock, events=events, big=big, growing=growing)
        if not appended:  # the store's own events: time a producer on a scratch store
            scratch, folder = _scratch_store(store)
            folders.append(folder)
            store, feed = scratch, order_events(100, seed=seed)
            fill(100)
    finally:
        for folder in folders:
            if folder is not None:
                folder.cleanup()
    fit = _fit(steps, growing=growing)
    single = steps.filter(
        (pl.col("events") == 1) & ~pl.col("behind") & ~pl.col("cold") & (pl.col("fresh") | (not growing))
    )
    # One-event steps as on an empty store: the growth taken out, the event's cost kept.
    alone = (single["seconds"] - fit["growth"] * single["reads"]).to_numpy()
    overheads = np.clip(alone - fit["mean"], 0.0, None)
    by_type = (
        single.with_columns(pl.Series("alone", alone))
        .group_by("event_type")
        .agg(pl.len().cast(pl.Int64).alias("steps"), pl.col("alone").mean().alias("single"))
        .sort("event_type")
    )
    return ServiceProfile(
        mean=fit["mean"],
        cv=float(alone.std(ddof=1) / alone.mean()),
        batch_overhead=float(overheads.mean()),
        commit_overhead=float(np.mean(commits)) if commits else 0.0,
        behind_overhead=fit["behind"],
        growth=fit["growth"],
        behind_growth=fit["behind_growth"],
        cold_overhead=fit["cold"],
        stale_saving=fit["stale"],
        append_cost=float(np.mean(appended)),
        batch_size=big,
        by_type=by_type,
        overheads=overheads,
        timer=timer,
        source="generated" if generated else "store",
        wall_ratio=float(steps["wall"].sum() / steps["seconds"].sum()),
    )


@contextmanager
def _producer(store: Any, rate: float | None, *, seed: int) -> Iterator[None]:
    """A thread appending order events at ``rate`` per second into a scratch store of
    ``store``'s kind while the block runs (nothing when ``rate`` is None)."""
    if rate is None:
        yield
        return
    if not (isinstance(rate, (int, float)) and 0 < rate < math.inf):
        raise ValueError(f"'producer_rate' must be a finite number > 0 or None (got {rate!r})")
    scratch, folder = _scratch_store(store)
    stop = threading.Event()

    def produce() -> None:
        while True:  # the same orders again after 1000 events: their streams grow longer
            for stream_id, event in order_events(1000, seed=seed, tag="-bg"):
                if stop.wait(1 / rate):
                    return
                scratch.append(stream_id, [event])

    thread = threading.Thread(target=produce, name="esnotebook-profile-producer", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if folder is not None:
            folder.cleanup()


def _time_steps(
    runner: Any, fill: Any, clock: Any, *, events: int, big: int, growing: bool
) -> pl.DataFrame:
    """Time the runner's steps: ``events, behind, cold, reads, event_type, seconds, wall``
    per step (``reads``: earlier reads of fresh appends; ``seconds`` by ``clock``,
    ``wall`` always wall time).

    Growing (a live store), each round appends and steps four ways: one event after an
    idle wait (cold), one event right after the last step (warm), both caught up after
    it; one event with another waiting after it; ``big`` events; then ``big`` untimed
    one-event steps, so that the reads of fresh appends (whose number the fixed cost
    grows with) span about the range a live runner reaches. Over a full store
    (a catch-up), one-event steps and then ``big``-event steps, all with more waiting
    (counted as not behind: the lookup is part of every such step's fixed cost).
    """
    rows = []
    store = runner.store
    reads = 0

    def timed(k: int, *, behind: bool = False, cold: bool = False, fresh: bool = growing) -> None:
        nonlocal reads
        if cold:
            time.sleep(_IDLE)
        start = runner.checkpoint
        t, w = clock(), time.perf_counter()
        runner.step(k)
        seconds, wall = clock() - t, time.perf_counter() - w
        # Read after the step: a read before it would take its reading of new events.
        first = store.scan(from_position=start, to_position=start + 1).select("event_type")
        rows.append((k, behind, cold, fresh, reads, first.collect().item(), seconds, wall))
        reads += fresh

    if growing:
        while runner.checkpoint + 4 + 2 * big <= events:
            fill(1)
            timed(1, cold=True)
            fill(1)
            timed(1)
            fill(2)
            timed(1, behind=True)
            timed(1, fresh=False)  # nothing appended since the last read
            fill(big)
            timed(big)
            for _ in range(big):  # untimed reads, as many as a live runner makes per event
                fill(1)
                runner.step(1)
                reads += 1
    else:
        for _ in range(events // 2):
            timed(1)
        while runner.checkpoint + big <= events:
            timed(big)
    return pl.DataFrame(
        rows,
        schema=["events", "behind", "cold", "fresh", "reads", "event_type", "seconds", "wall"],
        orient="row",
    )


def _fit(steps: pl.DataFrame, *, growing: bool) -> dict[str, float]:
    """Least squares of step seconds on the step's shape: ``fixed + growth * reads + mean *
    events + behind * (behind + behind_growth * reads) + cold * cold``, refitted without
    outliers; costs below 0 count as 0.

    The growth terms stay only where the timings show them: each must be at least
    ``_SIGNIFICANT`` standard errors above 0, or the fit is made again without it. A
    growth fitted to noise would be extrapolated over a whole live run (thousands of reads)
    and could cut the forecast capacity several-fold.

    Over a full store nothing is appended and every step is behind: only the fixed
    cost (lookup included) and the per-event cost can be told apart.
    """
    k = steps["events"].cast(pl.Float64).to_numpy()
    t = steps["seconds"].to_numpy()
    ones = np.ones_like(k)
    names = ["fixed", "mean"]
    columns = [ones, k]
    if growing:
        h = steps["reads"].cast(pl.Float64).to_numpy()
        w = steps["behind"].cast(pl.Float64).to_numpy()
        c = steps["cold"].cast(pl.Float64).to_numpy()
        s = 1.0 - steps["fresh"].cast(pl.Float64).to_numpy()
        names += ["behind", "cold", "stale", "growth", "behind_growth"]
        columns += [w, c, -s, h, w * h]
    fit = dict(zip(names, _robust_lstsq(np.column_stack(columns), t)))
    shown = [fit[n][1] >= _SIGNIFICANT or n not in ("growth", "behind_growth") for n in names]
    if not all(shown):
        names = [n for n, keep in zip(names, shown) if keep]
        columns = [c for c, keep in zip(columns, shown) if keep]
        fit = dict(zip(names, _robust_lstsq(np.column_stack(columns), t)))
    out = dict.fromkeys(("mean", "growth", "behind", "behind_growth", "cold", "stale"), 0.0)
    out.update({n: max(c, 0.0) for n, (c, _) in fit.items() if n != "fixed"})
    return out


def _robust_lstsq(x: np.ndarray, t: np.ndarray) -> list[tuple[float, float]]:
    """Coefficients of ``x @ c ~ t``, one per column, with their t-statistics, fitted
    once more without the outliers (a preempted step on a busy machine: it would tilt the
    lines; it still counts in the fixed costs a simulation draws from)."""
    coef = np.linalg.lstsq(x, t, rcond=None)[0]
    resid = t - x @ coef
    spread = 1.4826 * np.median(np.abs(resid - np.median(resid)))
    keep = np.abs(resid) <= 3 * spread if spread > 0 else np.ones(t.size, dtype=bool)
    if keep.sum() > x.shape[1]:
        x, t = x[keep], t[keep]
        coef = np.linalg.lstsq(x, t, rcond=None)[0]
    dof = max(t.size - x.shape[1], 1)
    sigma2 = float(((t - x @ coef) ** 2).sum()) / dof
    se = np.sqrt(np.clip(np.diag(sigma2 * np.linalg.pinv(x.T @ x)), 0.0, None))
    stat = np.divide(coef, se, out=np.full_like(coef, np.inf), where=se > 0)
    return [(float(c), float(z)) for c, z in zip(coef, stat)]
