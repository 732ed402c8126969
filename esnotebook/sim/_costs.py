"""Measured costs for the rebuild model: :class:`RebuildCosts` and :func:`calibrate`.

:func:`calibrate` times the real thing on a real store: a
:class:`~esnotebook.runner.ProjectionRunner` replaying growing prefixes of the store, and a
:class:`~esnotebook.repository.Repository` loading a sample of aggregates in full, up to a
random version and from a snapshot, in CPU seconds by default. Straight lines through the
medians give the per-event and fixed costs; what a snapshot adds to a load is timed, not
inferred.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from ._result import _dict_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RebuildCosts", "calibrate"]

_MEASUREMENTS = {
    "what": pl.String,  # "rebuild", "load", "snapshot_load", "snapshot_write"
    "events": pl.Int64,  # events replayed (prefix size, or the load's tail)
    "seconds": pl.Float64,  # median over the repeats
}


@dataclass(frozen=True, slots=True, eq=False)
class RebuildCosts:
    """Costs of one store, projection and aggregate class, for :func:`~esnotebook.sim.rebuild_cost`.

    Seconds per event (``apply_cost`` in a projection rebuild, ``load_event_cost`` in an
    aggregate load), fixed seconds per rebuild and per load, extra seconds to load from a
    snapshot and to write one, bytes per snapshot and per stored event; the store's shape
    (``events``, the aggregate's ``streams`` and their lengths); and the ``measurements``
    the fits were made from.

    Examples
    --------
    >>> RebuildCosts(apply_cost=2e-6, events=1000, streams=10).rate
    500000.0
    """

    apply_cost: float
    rebuild_overhead: float = 0.0
    load_event_cost: float = 0.0
    load_overhead: float = 0.0
    snapshot_read_cost: float = 0.0
    snapshot_write_cost: float = 0.0
    snapshot_bytes: float = 0.0
    event_bytes: float = 0.0
    events: int = 0
    streams: int = 0
    stream_lengths: tuple[int, ...] = field(default=(), repr=False)
    measurements: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=_MEASUREMENTS), repr=False
    )

    @property
    def rate(self) -> float:
        """Projection rebuild rate, events per second (``1 / apply_cost``)."""
        return 1 / self.apply_cost

    def to_dict(self) -> dict[str, float]:
        """The costs and the store's shape (no lengths, no measurements)."""
        out = asdict(self)
        out.pop("stream_lengths")
        out.pop("measurements")
        return out

    def to_polars(self) -> pl.DataFrame:
        """The measurements: ``what, events, seconds``."""
        return self.measurements

    def to_pandas(self) -> pd.DataFrame:
        return self.measurements.to_pandas()

    def _repr_html_(self) -> str:
        costs = {k: float(v) for k, v in self.to_dict().items()}
        return _dict_table("RebuildCosts", costs, note=f" ({self.measurements.height} measurements)")


_TIMERS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter  # set by calibrate() for the duration of one calibration


def _timings(jobs: list[Callable[[], Any]], repeats: int) -> np.ndarray:
    """Seconds of each job (rows) in each of ``repeats`` passes (columns) through all of them.

    Passes rather than one job run several times in a row, which would time it with warm
    caches; and interleaved, so that a busy spell on the machine lands on every kind of
    job alike instead of on whichever was being timed then.
    """
    out = np.empty((len(jobs), repeats))
    for p in range(repeats):
        for j, fn in enumerate(jobs):
            t = _clock()
            fn()
            out[j, p] = _clock() - t
    return out


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares intercept and slope, both kept >= 0 (a negative fixed cost is noise)."""
    if np.ptp(x) == 0:
        return 0.0, float(y.mean() / max(x.mean(), 1))
    slope, intercept = np.polyfit(x, y, 1)
    if slope <= 0:
        return float(y.mean()), 0.0
    if intercept < 0:
        return 0.0, float((x * y).sum() / (x * x).sum())
    return float(intercept), float(slope)


def _calibrate_rebuild(
    store: Any, projection: Any, sizes: list[int], repeats: int
) -> tuple[list, float, float]:
    from ..runner import ProjectionRunner

    def run(n: int) -> None:
        # What rebuild() does per chunk: apply the events, commit, record a metrics row.
        ProjectionRunner(store, projection, checkpoint="reset", batch_size=n).step(n)

    run(sizes[0])  # warm-up: imports, caches, the first read of the files
    seconds = np.median(_timings([lambda n=n: run(n) for n in sizes], repeats), axis=1)
    overhead, per_event = _line(np.array(sizes, dtype=float), seconds)
    return [("rebuild", n, float(t)) for n, t in zip(sizes, seconds)], per_event, overhead


def _snapshot_store(store: Any, scratch: str) -> Any:
    from ..snapshots import InMemorySnapshotStore, ParquetSnapshotStore

    # Same kind of storage as the events, but aside: calibration leaves the store untouched.
    return (
        ParquetSnapshotStore(scratch, durable=getattr(store, "durable", True))
        if hasattr(store, "path")
        else (InMemorySnapshotStore())
    )


def _calibrate_loads(
    store: Any,
    aggregate: type,
    ids: list[str],
    lengths: list[int],
    repeats: int,
    rng: np.random.Generator,
) -> tuple[list, dict[str, float]]:
    """Loads of every sampled aggregate in full, up to a random version, from a snapshot near
    its head and without one of as many events; the writes of those snapshots.

    The loads up to a random version spread the replayed lengths over 1 … n, so the line
    through the full and partial loads separates the fixed cost of a load from its cost per
    event even when the streams are all of one length. A snapshot load is timed as such, not
    derived from totals, beside a load without a snapshot that reads as many events: the
    median difference is what the snapshot adds (look it up, decode and restore it). Decoding
    and restoring cost in proportion to the state, which grows as the stream does, so the
    snapshots sit in the last tenth of each stream, where the latest snapshot of a stream
    that keeps growing is: their reads, writes and bytes are the ones to expect from now on.
    """
    from ..repository import Repository
    from ..snapshots import Snapshot

    plain = Repository(store, aggregate)
    versions = [int(rng.integers(1, n + 1)) for n in lengths]
    tails = [int(rng.integers(0, n // 10 + 1)) for n in lengths]  # snapshot at version n - tail
    writes: list[Callable[[], None]] = []
    sizes: list[int] = []
    with tempfile.TemporaryDirectory(prefix="esnb-calibrate-") as scratch:
        snaps = _snapshot_store(store, scratch)
        repo = Repository(store, aggregate, snapshots=snaps)
        for i, n, tail in zip(ids, lengths, tails):
            version = n - tail
            agg = plain.load(i, version=version, use_snapshots=False)
            last = store.read_stream(
                aggregate.stream_id_for(i), from_version=version, to_version=version
            )[0]

            def write(agg: Any = agg, last: Any = last, version: int = version) -> None:
                state = json.dumps(agg.get_state(), separators=(",", ":"))
                snaps.save(Snapshot(repo.aggregate_type, agg.id, version, aggregate.schema_version,
                                    last.event_id, datetime.now(UTC), state))  # fmt: skip

            write()
            writes.append(write)
            sizes.append(len(json.dumps(agg.get_state(), separators=(",", ":")).encode()))
        for i in ids[: min(3, len(ids))]:
            plain.load(i, use_snapshots=False)  # warm-up
            repo.load(i)
        full = [lambda i=i: plain.load(i, use_snapshots=False) for i in ids]
        part = [
            lambda i=i, v=v: plain.load(i, version=v, use_snapshots=False)
            for i, v in zip(ids, versions)
        ]
        # Beside each snapshot load, a load without one that reads as many events (the
        # snapshot's own and the tail): the difference is what the snapshot adds, measured
        # in pairs rather than as the gap between two fitted lines.
        short = [
            lambda i=i, t=t: plain.load(i, version=t + 1, use_snapshots=False)
            for i, t in zip(ids, tails)
        ]
        from_snapshot = [lambda i=i: repo.load(i) for i in ids]
        # One aggregate's loads after another's, so that a snapshot load and its pair are
        # timed moments apart whatever the machine does; the writes (each replaces its
        # snapshot) in the same passes, since their ratio to the loads sets the cheapest
        # interval, but after the loads: a durable write slows the next load several-fold.
        kinds = (full, part, short, from_snapshot)
        s = len(ids)
        loads_first = [kind[j] for j in range(s) for kind in kinds]
        times = _timings(loads_first + writes, repeats)
    medians = np.median(times, axis=1)
    full_t, part_t, short_t, snapshot_loads = medians[: len(kinds) * s].reshape(s, len(kinds)).T
    write_times = medians[len(kinds) * s :]
    loads = np.concatenate([full_t, part_t, short_t])
    x = np.array(lengths + versions + [t + 1 for t in tails], dtype=float)
    overhead, per_event = _line(x, loads)
    read = float(np.median(snapshot_loads - short_t))
    rows = [("load", int(n), float(t)) for n, t in zip(x, loads)]
    rows += [("snapshot_load", n, float(t)) for n, t in zip(tails, snapshot_loads)]
    rows += [("snapshot_write", 0, float(w)) for w in write_times]
    return rows, {
        "load_overhead": overhead,
        "load_event_cost": per_event,
        "snapshot_read_cost": max(read, 0.0),
        "snapshot_write_cost": float(np.median(write_times)),
        "snapshot_bytes": float(np.mean(sizes)),
    }


def calibrate(
    store: Any,
    *,
    projection: Any = None,
    aggregate: type | None = None,
    sample_events: int = 20_000,
    sample_streams: int = 40,
    repeats: int = 7,
    timer: Literal["wall", "cpu"] = "cpu",
    seed: int = 0,
) -> RebuildCosts:
    """Measure rebuild, load and snapshot costs on ``store`` for :func:`~esnotebook.sim.rebuild_cost`.

    Parameters
    ----------
    store
        The event store (in memory or Parquet). Nothing is written to it: snapshots made
        for the measurement go to a scratch snapshot store of the same kind.
    projection
        The projection whose rebuild is timed (default: the order domain's
        :class:`~esnotebook.readmodels.OrderSummary`, handler form). It replays prefixes of
        ``sample_events/4``, ``/2`` and the whole sample; the line through the medians
        gives ``apply_cost`` (seconds per event) and ``rebuild_overhead``.
    aggregate
        The aggregate class whose loads are timed (default
        :class:`~esnotebook.examples.Order`); its streams give the store's shape.
    sample_events
        Events in the largest rebuild timed (at most the store's).
    sample_streams
        Aggregates loaded: each in full, up to a random version, and from a snapshot in
        the last tenth of its stream beside a load without one of as many events; and the
        snapshot written. The loads without snapshots give ``load_event_cost`` and
        ``load_overhead``; the median gap between a snapshot load and its pair,
        ``snapshot_read_cost``; the writes, ``snapshot_write_cost``.
    repeats
        Passes through all the timings, one aggregate's after another's, so that what is
        compared is timed moments apart; each figure is the median over the passes.
    timer
        ``"cpu"`` (default): the process's CPU seconds. Other processes competing for the
        cores inflate the wall clock of this mostly single-threaded work by whatever they take,
        so on a shared machine the wall clock measures them; CPU seconds measure the code
        (on an idle machine the two agree, except for disk waits, which CPU seconds leave
        out). ``"wall"``: elapsed seconds, what a user waits, on a machine of one's own.
    seed
        Chooses the sampled aggregates and snapshot versions.

    Returns
    -------
    RebuildCosts

    Examples
    --------
    >>> import esnotebook as es
    >>> from esnotebook.datasets import generate_orders
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append_frame(generate_orders(200, seed=1, progress=False))
    >>> costs = calibrate(store, sample_events=500, sample_streams=5, repeats=1)
    >>> costs.streams
    200
    """
    if projection is None:
        from ..readmodels import OrderSummary

        projection = OrderSummary()
    if aggregate is None:
        from ..examples import Order

        aggregate = Order
    for name, value, least in (("sample_events", sample_events, 4), ("sample_streams", sample_streams, 2),
                               ("repeats", repeats, 1)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name!r} must be an int >= {least} (got {value!r})")
    head = store.head_position
    if head < 4:
        raise ValueError(f"calibrate needs a store with at least 4 events (got {head})")
    prefix = f"{aggregate.stream_prefix}-"
    shape = (
        store.scan()
        .select("stream_id")
        .filter(pl.col("stream_id").str.starts_with(prefix))
        .group_by("stream_id")
        .len()
        .sort("stream_id")
        .collect()
    )
    if shape.height == 0:
        raise ValueError(
            f"the store has no {aggregate.__name__} streams (named {prefix}<id>) to time loads on"
        )
    rng = np.random.default_rng(seed)
    top = min(sample_events, head)
    sizes = sorted({max(1, top // 4), max(1, top // 2), top})
    pick = rng.choice(shape.height, size=min(sample_streams, shape.height), replace=False)
    sample = shape[np.sort(pick)]
    ids = [s[len(prefix) :] for s in sample["stream_id"].to_list()]
    lengths = sample["len"].to_list()
    sample_frame = store.scan().head(min(head, 10_000)).collect()
    if timer not in _TIMERS:
        raise ValueError(f"'timer' must be 'wall' or 'cpu' (got {timer!r})")
    global _clock
    _clock = _TIMERS[timer]
    try:
        # Timed with the garbage collector on: collections are part of what a load costs.
        rebuild_rows, apply_cost, overhead = _calibrate_rebuild(store, projection, sizes, repeats)
        load_rows, loads = _calibrate_loads(store, aggregate, ids, lengths, repeats, rng)
    finally:
        _clock = time.perf_counter
    return RebuildCosts(
        apply_cost=apply_cost if apply_cost > 0 else rebuild_rows[-1][2] / rebuild_rows[-1][1],
        rebuild_overhead=overhead,
        event_bytes=sample_frame.estimated_size() / max(sample_frame.height, 1),
        events=head,
        streams=shape.height,
        stream_lengths=tuple(shape["len"].to_list()),
        measurements=pl.DataFrame(rebuild_rows + load_rows, schema=_MEASUREMENTS, orient="row"),
        **loads,
    )
