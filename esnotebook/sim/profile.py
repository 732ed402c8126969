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

import html
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from ._result import _fmt

if TYPE_CHECKING:
    import pandas as pd

    from ..projections import Projection, VectorisedProjection

__all__ = ["ServiceProfile", "measure_consumer", "order_events"]

Timer = Literal["wall", "cpu"]
_TIMERS = {"wall": time.perf_counter, "cpu": time.process_time}
_HEADER = ("stream_id", "version", "event_type", "recorded_at")


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

    Examples
    --------
    >>> p = ServiceProfile(mean=1e-4, cv=0.2, batch_overhead=9e-4)
    >>> round(p.rate(), 1), round(p.rate(10), 1)
    (1000.0, 5263.2)
    """

    mean: float
    cv: float
    batch_overhead: float
    commit_overhead: float = 0.0
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

    def __post_init__(self) -> None:
        for name in ("mean", "cv", "batch_overhead", "commit_overhead", "append_cost"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name!r} must be a finite number >= 0 (got {value!r})")
        if self.mean + self.batch_overhead <= 0:
            raise ValueError("a ServiceProfile needs 'mean' or 'batch_overhead' > 0 (got both 0)")

    @property
    def single(self) -> float:
        """Mean seconds of an event that comes alone: ``batch_overhead + mean``."""
        return self.batch_overhead + self.mean

    def rate(self, batch_size: int = 1) -> float:
        """Events per second one consumer sustains with full batches of ``batch_size``."""
        return batch_size / (self.batch_overhead + batch_size * self.mean)

    def draw_overheads(self, n: int, rng: np.random.Generator) -> np.ndarray | float:
        """``n`` batch overheads resampled from the measured ones (their mean if none)."""
        if self.overheads.size == 0:
            return self.batch_overhead
        return rng.choice(self.overheads, size=n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "cv": self.cv,
            "batch_overhead": self.batch_overhead,
            "commit_overhead": self.commit_overhead,
            "append_cost": self.append_cost,
            "batch_size": self.batch_size,
            "rate": self.rate(self.batch_size),
            "timer": self.timer,
            "source": self.source,
        }

    def to_polars(self) -> pl.DataFrame:
        """The per-event-type costs (``by_type``)."""
        return self.by_type

    def to_pandas(self) -> pd.DataFrame:
        return self.by_type.to_pandas()

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>"
            for k, v in self.to_dict().items()
        )
        return f"<div><b>ServiceProfile</b><table>{rows}</table></div>"


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


def _scratch_store(store: Any, n: int, seed: int) -> tuple[Any, Any]:
    """A store of the same kind holding ``n`` generated order events, appended one by one
    as the live producer does; and the temporary folder to remove (or None)."""
    from ..store import InMemoryEventStore, ParquetEventStore

    folder = None
    if isinstance(store, ParquetEventStore):
        folder = tempfile.TemporaryDirectory(prefix="esnotebook-profile-")
        scratch: Any = ParquetEventStore(folder.name, durable=store.durable)
    else:
        scratch = InMemoryEventStore()
    for stream_id, event in order_events(n, seed=seed):
        scratch.append(stream_id, [event])
    return scratch, folder


def append_cost(store: Any, *, events: int = 200, seed: int = 0) -> float:
    """Mean CPU seconds of one single-event append into a fresh store of ``store``'s kind."""
    scratch, folder = _scratch_store(store, 0, seed)
    try:
        spent = 0.0
        for stream_id, event in order_events(events, seed=seed):
            t = time.thread_time()
            scratch.append(stream_id, [event])
            spent += time.thread_time() - t
        return spent / events
    finally:
        if folder is not None:
            folder.cleanup()


def measure_consumer(
    store: Any,
    projection: Projection | VectorisedProjection,
    *,
    events: int = 400,
    batch_size: int = 10,
    target: Literal["memory", "parquet"] = "memory",
    timer: Timer = "wall",
    seed: int = 0,
) -> ServiceProfile:
    """Time a real :class:`~esnotebook.ProjectionRunner` and return its service profile.

    The first half of ``events`` is applied one event per step, the second half in steps of
    ``batch_size`` (at least 2). The per-event cost is the difference of the two kinds of
    step, divided by the extra events; the fixed cost of a step is what a one-event step
    costs beyond it. Each checkpoint commit is timed on its own.

    Parameters
    ----------
    store
        The events to time on: its first ``events`` positions. When it holds fewer, a
        scratch store of the same kind is filled with generated order events, appended one
        by one as :func:`esnotebook.live.run`'s producer does. The store is only read.
    projection
        The projection the runner keeps (a fresh instance is not needed: its state is not
        touched; the runner starts from an empty state).
    events
        Events to time (at least 20).
    batch_size
        Events per multi-event step (the batch size the pipeline will run with, or more).
    target
        Where the runner commits: ``"memory"`` or ``"parquet"`` (a temporary folder).
    timer
        ``"wall"`` seconds (what a live pipeline waits for, including I/O) or ``"cpu"``
        (process CPU time: steadier on a busy machine).
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
    if not hasattr(store, "scan") or not hasattr(store, "head_position"):
        raise TypeError(f"'store' must be an esnotebook event store (got {type(store).__name__})")
    clock = _TIMERS[timer]
    big = max(batch_size, 2)
    source = "store" if store.head_position >= events else "generated"
    folders = []
    if source == "generated":
        store, folder = _scratch_store(store, events, seed)
        folders.append(folder)
    try:
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
        types = store.scan(to_position=events).select("event_type").collect()["event_type"]
        singles = []
        for _ in range(events // 2):
            t = clock()
            runner.step(1)
            singles.append(clock() - t)
        batches = []
        while runner.checkpoint + big <= events:
            t = clock()
            runner.step(big)
            batches.append(clock() - t)
        append = append_cost(store, seed=seed)
    finally:
        for folder in folders:
            if folder is not None:
                folder.cleanup()
    one = np.asarray(singles)
    per_event = max((float(np.mean(batches)) - float(one.mean())) / (big - 1), 0.0)
    overheads = np.clip(one - per_event, 0.0, None)
    by_type = (
        pl.DataFrame({"event_type": types.head(one.size), "seconds": one})
        .group_by("event_type")
        .agg(pl.len().cast(pl.Int64).alias("steps"), pl.col("seconds").mean().alias("single"))
        .sort("event_type")
    )
    return ServiceProfile(
        mean=per_event,
        cv=float(one.std(ddof=1) / one.mean()),
        batch_overhead=float(overheads.mean()),
        commit_overhead=float(np.mean(commits)) if commits else 0.0,
        append_cost=append,
        batch_size=big,
        by_type=by_type,
        overheads=overheads,
        timer=timer,
        source=source,
    )
