"""A live pipeline: a real producer, a real projection runner, measured lag.

:func:`run` appends order events into a real store at a seeded rate while a real
:class:`~esnotebook.ProjectionRunner` consumes them with real checkpoints, and records when
each event arrived and when its batch was committed. The :class:`LiveResult` holds the same
time series and metric names as :class:`~esnotebook.sim.LagResult`, and
:meth:`LiveResult.compare` puts the simulation of the very same arrivals beside them.

Threads, not processes: an :class:`~esnotebook.InMemoryEventStore` lives in one process,
and a consumer next to its producer in one interpreter is the pipeline being forecast. The
two threads share the GIL: while the producer appends (pure Python, tens of microseconds
in memory, milliseconds for a Parquet file), the runner cannot run Python, though polars,
which does most of a step's reading, releases it. What that costs the runner is part of
what the run measures; :attr:`LiveResult.cost_ratio` says how far the run's step costs
were from the profile's (the producer, and other programs on the machine), and
``compare(costs="run")`` separates that from the queueing model's own error.
"""

from __future__ import annotations

import html
import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from .sim._result import _fmt
from .sim.arrivals import Arrivals, RateSpec, generate_arrivals
from .sim.lag import _measure
from .sim.profile import ServiceProfile, measure_consumer, order_events

if TYPE_CHECKING:
    import pandas as pd

    from .projections import Projection, VectorisedProjection

__all__ = ["LiveResult", "run"]

Costs = Literal["profile", "run"]

#: Metrics :meth:`LiveResult.compare` puts side by side.
COMPARED = ("mean_offset_lag", "p95_offset_lag", "max_offset_lag", "p95_time_lag", "drain_time")
_SAMPLES = 2000
#: Consecutive steps' costs a forecast with the run's costs draws together.
_BLOCK = 20
#: How long an idle consumer waits for the producer's signal before looking again.
_POLL = 0.05


def _drain_time(series: pl.DataFrame, after: float | None) -> float:
    """Seconds from ``after`` (the last change of the arrival rate) until the offset lag
    is first 0; nan without a change, inf if it never drains."""
    if after is None:
        return math.nan
    empty = series.filter((pl.col("time") >= after) & (pl.col("offset_lag") == 0))
    return float(empty["time"][0] - after) if empty.height else math.inf


def _last_change(arrival_rate: RateSpec) -> float | None:
    if isinstance(arrival_rate, (int, float)):
        return None
    starts = [float(s) for s, _ in arrival_rate]
    return starts[-1] if len(starts) > 1 else None


@dataclass(frozen=True, slots=True, eq=False)
class LiveResult:
    """What :func:`run` measured on the real runtime.

    Attributes
    ----------
    timeseries
        ``time, produced, processed, offset_lag, time_lag`` sampled on a grid (seconds from
        the producer's start), as in :class:`~esnotebook.sim.LagResult`.
    metrics
        The measured metrics by the names :class:`~esnotebook.sim.LagResult` uses, plus
        ``drain_time`` (seconds from the last rate change until nothing is waiting).
    arrivals
        When each event was appended (seconds from the start; the append had returned).
    done
        When each event's batch was committed (``inf`` if it never was).
    busy
        ``(start, end)`` of every step that applied events.
    steps
        Every step that applied events: ``start, end`` (seconds), ``events``, ``cpu`` (the
        process CPU seconds it took: the runner's, and whatever the producer did
        meanwhile), ``waited`` (the consumer had waited for events before it).
    event_types
        Each event's type, in arrival order.
    profile
        The :class:`~esnotebook.sim.ServiceProfile` the forecast uses.
    settings
        What was run: rate, duration, batch size, store kind, ...
    """

    timeseries: pl.DataFrame
    metrics: dict[str, float]
    arrivals: np.ndarray = field(repr=False)
    done: np.ndarray = field(repr=False)
    busy: tuple[np.ndarray, np.ndarray] = field(repr=False)
    steps: pl.DataFrame = field(repr=False)
    event_types: tuple[str, ...] = field(repr=False)
    profile: ServiceProfile
    settings: dict[str, Any]

    def _step_model(self) -> tuple[np.ndarray, np.ndarray]:
        """Each step's wall seconds, and what the profile's model gives for it (its size,
        the reads of fresh appends before it, whether it was behind or started after a
        wait)."""
        st = self.steps
        start = st["start"].to_numpy()
        arrived = np.searchsorted(self.arrivals, start, side="right")
        fresh = np.diff(arrived, prepend=0) > 0
        behind = arrived > np.cumsum(st["events"].to_numpy())
        model = self.profile.as_wall().step_seconds(
            st["events"].to_numpy(), reads=np.cumsum(fresh) - fresh, behind=behind,
            cold=st["waited"].to_numpy(),
        )  # fmt: skip
        return st["end"].to_numpy() - start, model

    @property
    def cost_ratio(self) -> float:
        """Wall seconds the consumer's steps took over what the profile's model gives for
        the same steps: 1 when the profile priced this run's steps right; above 1 when the
        cores were busier than when it was measured (the producer, other programs)."""
        if self.steps.height == 0:
            return math.nan
        wall, model = self._step_model()
        return float(wall.sum() / model.sum())

    def run_profile(self) -> ServiceProfile:
        """The profile with the fixed costs the run's steps really had: each step's wall
        seconds less the rest of the model, drawn in runs of consecutive steps (slow
        stretches of a busy machine last longer than a step)."""
        wall, model = self._step_model()
        profile = self.profile.as_wall()
        fixed = np.clip(wall - (model - profile.batch_overhead), 0.0, None)
        return replace(profile, overheads=fixed, batch_overhead=float(fixed.mean()), block=_BLOCK)

    def __getitem__(self, metric: str) -> float:
        if metric not in self.metrics:
            raise KeyError(f"no metric {metric!r}; metrics: {', '.join(self.metrics)}")
        return self.metrics[metric]

    def summary(self) -> pl.DataFrame:
        """``metric, value``: every measured metric."""
        return pl.DataFrame(
            {"metric": list(self.metrics), "value": [float(v) for v in self.metrics.values()]}
        )

    def to_polars(self) -> pl.DataFrame:
        """The lag time series."""
        return self.timeseries

    def to_pandas(self) -> pd.DataFrame:
        return self.timeseries.to_pandas()

    def forecast(
        self, *, seed: int | None = 0, replications: int = 20, costs: Costs = "profile"
    ) -> Any:
        """The :class:`~esnotebook.sim.LagResult` of :func:`~esnotebook.sim.simulate_lag`
        on the recorded arrivals with the run's profile (``replications`` draws of the
        service times; the arrivals are the same in each).

        ``costs="profile"`` (default) is the forecast proper: the profile as measured
        before the run, in wall seconds (:meth:`~esnotebook.sim.ServiceProfile.as_wall`).
        ``costs="run"`` uses :meth:`run_profile`, whose steps cost what
        they really cost in this run (on a busy machine, wall time with other programs'
        turns, against the profile's CPU time): what is left of the gap is the queueing
        model's, not the cost model's.
        """
        from .sim import simulate_lag

        if costs not in ("profile", "run"):
            raise ValueError(f"'costs' must be 'profile' or 'run' (got {costs!r})")
        profile = self.profile.as_wall()
        if costs == "run" and self.steps.height:
            profile = self.run_profile()
        s = self.settings
        recorded = Arrivals(self.arrivals, s["duration"], len(self.arrivals) / s["duration"], None)
        return simulate_lag(
            timestamps=recorded,
            service=profile,
            batch_size=s["batch_size"],
            replications=replications,
            sample_interval=s["sample_interval"],
            progress=False,
            seed=seed,
        )

    def compare(
        self, *, seed: int | None = 0, replications: int = 20, costs: Costs = "profile"
    ) -> pl.DataFrame:
        """Predicted beside measured, one row per metric of :data:`COMPARED`.

        The prediction simulates the recorded arrivals with the measured profile (the mean
        over ``replications`` draws of the service times; ``costs`` as in
        :meth:`forecast`). ``error`` is ``predicted / measured - 1``.

        Returns
        -------
        polars.DataFrame
            ``metric, predicted, measured, error``.
        """
        forecast = self.forecast(seed=seed, replications=replications, costs=costs)
        after = self.settings["rate_change"]
        drains = [
            _drain_time(part, after)
            for _, part in forecast.timeseries.group_by("replication", maintain_order=True)
        ]
        predicted = {m: forecast[m] for m in COMPARED if m != "drain_time"}
        predicted["drain_time"] = float(np.mean(drains))
        rows = []
        for m in COMPARED:
            p, q = predicted[m], self.metrics[m]
            error = p / q - 1 if q and math.isfinite(q) and math.isfinite(p) else math.nan
            rows.append({"metric": m, "predicted": p, "measured": q, "error": error})
        return pl.DataFrame(rows)

    def plot(self, *, ax: Any = None, seed: int | None = 0) -> Any:
        """Measured and predicted offset lag over time on one axes (matplotlib)."""
        from .plot import plot_forecast_vs_measured

        return plot_forecast_vs_measured(self, ax=ax, seed=seed)

    def _repr_html_(self) -> str:
        s = self.settings
        keep = ("events", "throughput", "utilisation", *COMPARED)
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td>"
            f"<td>{html.escape(_fmt(float(self.metrics[k])))}</td></tr>"
            for k in keep
        )
        head = (
            f"{s['events']} events over {_fmt(s['duration'])} s into a {s['store']} store, "
            f"batch_size={s['batch_size']}"
        )
        return f"<div><b>LiveResult</b>: {html.escape(head)}<table>{rows}</table></div>"


class _Pipeline:
    """The producer and consumer threads of one run, and what they record."""

    def __init__(self, store: Any, runner: Any, events: list[tuple[str, Any]], times: np.ndarray,
                 *, batch_size: int, head: int) -> None:  # fmt: skip
        self.store, self.runner, self.events, self.times = store, runner, events, times
        self.batch_size, self.head = batch_size, head
        self.arrived = np.full(len(events), np.nan)
        self.done = np.full(len(events), np.inf)
        # Per step that applied events: start, end, events, process CPU seconds, and
        # whether the consumer had waited for events before it.
        self.steps: list[tuple[float, float, int, float, bool]] = []
        self.committed = math.nan  # when the runner's last commit returned
        commit = runner.target.commit

        def timed_commit(unit: Any) -> None:
            commit(unit)
            self.committed = time.perf_counter()

        runner.target.commit = timed_commit
        self.stop = threading.Event()
        self.produced = threading.Event()
        self.wake = threading.Event()
        self.errors: list[BaseException] = []

    def produce(self, t0: float) -> None:
        try:
            append, clock, stopped = self.store.append, time.perf_counter, self.stop.wait
            for i, (stream_id, event) in enumerate(self.events):
                wait = t0 + self.times[i] - clock()
                if stopped(wait) if wait > 0 else self.stop.is_set():
                    return  # stopped: a consumer failed, or the caller was interrupted
                append(stream_id, [event])
                self.arrived[i] = clock() - t0
                self.wake.set()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.errors.append(exc)
            self.stop.set()
        finally:
            self.produced.set()

    def consume(self, t0: float, deadline: float) -> None:
        runner, clock, n = self.runner, time.perf_counter, len(self.events)
        try:
            waited = True
            while not self.stop.is_set() and clock() < deadline:
                self.wake.clear()
                start = runner.checkpoint
                began, cpu = clock(), time.process_time()
                k = runner.step(self.batch_size)
                if k:
                    self.done[start - self.head : start - self.head + k] = self.committed - t0
                    self.steps.append(
                        (began - t0, clock() - t0, k, time.process_time() - cpu, waited)
                    )
                    waited = False
                    continue
                if self.produced.is_set() and runner.checkpoint - self.head >= n:
                    return
                self.wake.wait(_POLL)
                waited = True
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(exc)
            self.stop.set()


def run(
    store: Any,
    projection: Projection | VectorisedProjection,
    *,
    arrival_rate: RateSpec,
    duration: float,
    consumers: int = 1,
    batch_size: int = 1,
    seed: int = 0,
    profile: ServiceProfile | None = None,
    drain: float | None = None,
) -> LiveResult:
    """Run a real producer and a real projection runner for ``duration`` seconds.

    A producer thread appends order events (:func:`esnotebook.sim.profile.order_events`,
    one event per append) at Poisson times of ``arrival_rate``; a consumer thread steps a
    :class:`~esnotebook.ProjectionRunner` (``batch_size`` events per step, each step a
    checkpoint commit to a memory target), starting at the store's head, and waits for the
    producer's signal when caught up. Both threads are stopped and joined before it
    returns, also when interrupted or when the projection raises (the error is re-raised).

    Parameters
    ----------
    store
        An :class:`~esnotebook.InMemoryEventStore` or
        :class:`~esnotebook.ParquetEventStore`; the run appends to it.
    projection
        The projection the runner keeps (a fresh instance of its class is used).
    arrival_rate
        Events per second, or a schedule ``[(0, r1), (t, r2), ...]`` as in
        :func:`~esnotebook.sim.simulate_lag` (a burst: a higher rate for a while).
    duration
        Seconds the producer runs.
    consumers
        Consumer threads; 1 for now. A :class:`~esnotebook.ProjectionRunner` reads the
        store's whole log from its checkpoint, so several competing runners would each
        need a log of their own partition (of the stream ids), which neither store has
        yet; runners over the same log would each apply every event.
    batch_size
        Events per runner step.
    seed
        Seeds the arrival times and the events.
    profile
        The consumer's :class:`~esnotebook.sim.ServiceProfile` for the forecast. When not
        given it is measured right before the run with
        :func:`~esnotebook.sim.measure_consumer` (``appends="between"``, CPU time, a
        producer thread at the run's mean rate, over as many events as the run will
        append, between 200 and 1000: an in-memory store's reads after appends slow down
        as it grows, so the range matters).
    drain
        Seconds the consumer may go on after the producer stops to catch up (default
        ``duration``); events not processed by then count as never done.

    Returns
    -------
    LiveResult

    Examples
    --------
    >>> import esnotebook as es
    >>> from esnotebook.readmodels import OrderSummary
    >>> live = es.live.run(es.InMemoryEventStore(), OrderSummary(), arrival_rate=50, duration=1)
    >>> live.timeseries.columns
    ['time', 'produced', 'processed', 'offset_lag', 'time_lag']
    >>> live.compare()["metric"].to_list()[:2]
    ['mean_offset_lag', 'p95_offset_lag']
    """
    from .runner import ProjectionRunner
    from .runner_targets import Committed, MemoryTarget

    if consumers != 1:
        raise ValueError(
            f"'consumers' must be 1: one runner per pipeline for now (got {consumers!r})"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"'batch_size' must be an int >= 1 (got {batch_size!r})")
    ok = isinstance(duration, (int, float)) and not isinstance(duration, bool)
    if not ok or not (0 < duration < math.inf):
        raise ValueError(f"'duration' must be a finite number of seconds > 0 (got {duration!r})")
    drain = float(duration) if drain is None else drain
    if not isinstance(drain, (int, float)) or not (0 <= drain < math.inf):
        raise ValueError(f"'drain' must be a finite number of seconds >= 0 (got {drain!r})")
    if profile is not None and not isinstance(profile, ServiceProfile):
        raise TypeError(f"'profile' must be a ServiceProfile (got {type(profile).__name__})")
    rng = np.random.default_rng(seed)
    times = generate_arrivals(arrival_rate, duration=float(duration), rng=rng).times
    if times.size == 0:
        raise ValueError(f"the producer would make no events in {duration:g} s at {arrival_rate!r}")
    head = store.head_position
    if profile is None:  # timed over as many appended events as the run will hold
        profile = measure_consumer(
            store, projection, events=int(np.clip(times.size, 200, 1000)),
            batch_size=max(batch_size, 10), appends="between", seed=seed,
            producer_rate=times.size / duration,
        )  # fmt: skip
    # New orders, whatever the store already holds.
    events = list(order_events(times.size, seed=rng, tag=f"-at{head}" if head else ""))
    target = MemoryTarget()
    fresh = type(projection)()
    target.commit(Committed(fresh.initial(), head, None, _now()))
    runner = ProjectionRunner(store, fresh, target=target, batch_size=batch_size)
    pipe = _Pipeline(store, runner, events, times, batch_size=batch_size, head=head)
    t0 = time.perf_counter() + 0.05  # both threads up before the first arrival
    threads = [
        threading.Thread(target=pipe.produce, args=(t0,), name="esnotebook-producer", daemon=True),
        threading.Thread(target=pipe.consume, args=(t0, t0 + duration + drain),
                         name="esnotebook-consumer", daemon=True),
    ]  # fmt: skip
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    finally:
        pipe.stop.set()
        pipe.wake.set()
        for t in threads:
            t.join()
    if pipe.errors:
        raise pipe.errors[0]
    arrived = pipe.arrived[~np.isnan(pipe.arrived)]
    done = np.maximum(pipe.done[: arrived.size], arrived)
    steps = pl.DataFrame(pipe.steps, schema=["start", "end", "events", "cpu", "waited"],
                         orient="row")  # fmt: skip
    busy = steps.select("start", "end").to_numpy().reshape(-1, 2)
    # A producer slower than its schedule (a Parquet store's appends) ends late.
    span = max(float(duration), float(arrived[-1]) if arrived.size else 0.0)
    dt = span / _SAMPLES
    metrics, series = _measure(
        arrived, done, (busy[:, 0], busy[:, 1]), duration=span, warmup=0.0,
        sample_interval=dt, active=1, backlog=0, pauses=([], []),
    )  # fmt: skip
    after = _last_change(arrival_rate)
    metrics["drain_time"] = _drain_time(series, after)
    settings = {
        "arrival_rate": arrival_rate,
        "duration": span,
        "events": int(arrived.size),
        "batch_size": batch_size,
        "consumers": consumers,
        "store": type(store).__name__,
        "projection": fresh.name,
        "rate_change": after,
        "sample_interval": dt,
        "seed": seed,
    }
    return LiveResult(
        timeseries=series,
        metrics=metrics,
        arrivals=arrived,
        done=done,
        busy=(busy[:, 0], busy[:, 1]),
        steps=steps,
        event_types=tuple(e.type for _, e in events[: arrived.size]),
        profile=profile,
        settings=settings,
    )


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
