"""Throughput versus consumer lag: :func:`simulate_lag` and its :class:`LagResult`.

A producer (see :mod:`esnotebook.sim.arrivals`) feeds a consumer group; each event's done
time comes from :mod:`esnotebook.sim._engine`. From arrival and done times follow the two
lags a dashboard shows: offset lag (events produced but not yet processed) and time lag
(age of the oldest unprocessed event), and the per-event latency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from ._engine import merge_pauses, serve
from ._result import LagResult
from .arrivals import ArrivalMode, Arrivals, RateSpec, generate_arrivals, recorded_arrivals
from .profile import ServiceProfile

__all__ = ["ServiceDist", "simulate_lag"]

ServiceDist = Literal["exponential", "constant", "gamma", "lognormal"]
_SERVICES = ("exponential", "constant", "gamma", "lognormal")
_SAMPLES = 2000


def _int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name!r} must be an int >= {minimum} (got {value!r})")
    return int(value)


def _float(name: str, value: object, *, positive: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(
            f"{name!r} must be a finite number {'> 0' if positive else '>= 0'} (got {value!r})"
        )
    return float(value)


def _service_draw(service: str, cv: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit-mean service times; scaled by ``1/service_rate`` later so that runs at
    different rates with the same seed share their randomness (common random numbers)."""
    if service == "constant" or cv == 0:
        return np.ones(n)
    if service == "exponential":
        return rng.exponential(1.0, size=n)
    if service == "gamma":
        shape = 1 / (cv * cv)
        return rng.gamma(shape, 1 / shape, size=n)
    sigma2 = math.log1p(cv * cv)
    return rng.lognormal(-sigma2 / 2, math.sqrt(sigma2), size=n)


def _resolve_service(service: str | None, service_cv: float | None) -> tuple[str, float]:
    if service is None:
        service = "exponential" if service_cv is None else "gamma"
    if service not in _SERVICES:
        raise ValueError(f"'service' must be one of {', '.join(_SERVICES)} (got {service!r})")
    fixed = {"exponential": 1.0, "constant": 0.0}
    if service in fixed:
        if service_cv is not None and service_cv != fixed[service]:
            raise ValueError(
                f"service={service!r} has coefficient of variation {fixed[service]:g}; "
                f"use service='gamma' or 'lognormal' for service_cv={service_cv!r}"
            )
        return service, fixed[service]
    if service_cv is None:
        raise ValueError(f"service={service!r} needs 'service_cv' (coefficient of variation > 0)")
    return service, _float("service_cv", service_cv, positive=True)


def _from_profile(
    profile: ServiceProfile, *, service_rate: object, service_cv: object, batch_overhead: object
) -> tuple[float, float]:
    """``(service_rate, batch_overhead)`` of a measured profile: the per-event rate and the
    mean fixed cost per batch (each batch draws its own from the measured ones)."""
    given = {"service_rate": service_rate, "service_cv": service_cv}
    given["batch_overhead"] = None if batch_overhead == 0 else batch_overhead
    clash = [name for name, value in given.items() if value is not None]
    if clash:
        raise ValueError(
            "service=ServiceProfile(...) sets the service time; leave "
            f"{', '.join(map(repr, clash))} unset"
        )
    return (1 / profile.mean if profile.mean > 0 else math.inf), profile.batch_overhead


def _group_capacity(
    *, mu: float, consumers: int, partitions: int | None, batch_size: int, overhead: float
) -> float:
    """Arrival rate at which the busiest consumer saturates (full batches).

    Competing consumers share the load evenly; keyed partitions are assigned round-robin,
    so with fewer consumers than partitions the consumer holding most partitions decides.
    """
    per_consumer = batch_size / (overhead + batch_size / mu)
    if partitions is None:
        return consumers * per_consumer
    busiest_share = (
        math.ceil(partitions / consumers) / partitions if consumers < partitions else 1 / partitions
    )
    return per_consumer / busiest_share


def _run_once(
    arr: Arrivals,
    *,
    backlog: int,
    unit_service: np.ndarray,
    mu: float,
    consumers: int,
    partitions: int | None,
    batch_size: int,
    overhead: float | np.ndarray,
    pauses: tuple[list[float], list[float]],
    rng: np.random.Generator,
    **costs: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One replication's arrival, done and busy times; ``costs`` are the engine's extra
    costs of a measured profile (``behind``, ``growth``, ...)."""
    arrival = np.concatenate([np.zeros(backlog), arr.times]) if backlog else arr.times
    service = unit_service / mu
    if partitions is None:
        served = serve(
            arrival,
            service,
            servers=consumers,
            batch_size=batch_size,
            overhead=overhead,
            pauses=pauses,
            **costs,
        )
        return arrival, served.done, served.busy_start, served.busy_end
    owner = rng.integers(0, partitions, size=len(arrival)) % consumers
    done = np.empty(len(arrival))
    b_start, b_end = [], []
    for q in range(min(consumers, partitions)):
        idx = np.flatnonzero(owner == q)
        served = serve(
            arrival[idx],
            service[idx],
            batch_size=batch_size,
            overhead=overhead,
            pauses=pauses,
            **costs,
        )
        done[idx] = served.done
        b_start.append(served.busy_start)
        b_end.append(served.busy_end)
    return arrival, done, np.concatenate(b_start), np.concatenate(b_end)


def _measure(
    arrival: np.ndarray,
    done: np.ndarray,
    busy: tuple[np.ndarray, np.ndarray],
    *,
    duration: float,
    warmup: float,
    sample_interval: float,
    active: int,
    backlog: int,
    pauses: tuple[list[float], list[float]],
) -> tuple[dict[str, float], pl.DataFrame]:
    """Summary metrics over ``[warmup, duration]`` and the sampled lag time series."""
    grid = np.arange(0.0, duration + sample_interval / 2, sample_interval)
    produced = np.searchsorted(arrival, grid, side="right")
    # Stable sort is a linear pass when done times are already in order (one FIFO consumer).
    done_sorted = np.sort(done, kind="stable")
    processed = np.searchsorted(done_sorted, grid, side="right")
    # The first not-yet-done event (in arrival order) at t is the first whose running max
    # of done times exceeds t; it is unprocessed if it has already arrived.
    done_max = np.maximum.accumulate(done)
    first_open = np.searchsorted(done_max, grid, side="right")
    safe = np.minimum(first_open, len(arrival) - 1)
    waiting = (first_open < len(arrival)) & (arrival[safe] <= grid)
    time_lag = np.where(waiting, grid - arrival[safe], 0.0)
    offset_lag = produced - processed
    series = pl.DataFrame(
        {
            "time": grid,
            "produced": produced,
            "processed": processed,
            "offset_lag": offset_lag,
            "time_lag": time_lag,
        }
    )

    window = grid >= warmup
    span = duration - warmup
    in_window = (arrival >= warmup) & (arrival <= duration)
    latency = (done - arrival)[in_window]
    # Exact time-averaged offset lag: each event counts for the part of [arrival, done]
    # that falls in the window.
    overlap = np.clip(np.minimum(done, duration) - np.maximum(arrival, warmup), 0, None)
    busy_overlap = np.clip(np.minimum(busy[1], duration) - np.maximum(busy[0], warmup), 0, None)
    # Offset lag peaks right after an arrival: count everything done by then.
    done_by_arrival = np.searchsorted(done_sorted, arrival, side="right")
    at_arrival = np.arange(1, len(arrival) + 1) - done_by_arrival
    ol, tl = offset_lag[window], time_lag[window]
    q = [50, 95, 99]
    m: dict[str, float] = {"events": float(in_window.sum())}
    m["mean_offset_lag"] = float(overlap.sum() / span)
    m.update(
        zip(("p50_offset_lag", "p95_offset_lag", "p99_offset_lag"), np.percentile(ol, q).tolist())
    )
    m["max_offset_lag"] = float(at_arrival[in_window].max()) if in_window.any() else 0.0
    m["mean_time_lag"] = float(tl.mean())
    m.update(zip(("p50_time_lag", "p95_time_lag", "p99_time_lag"), np.percentile(tl, q).tolist()))
    # The oldest open event is oldest right before it completes: max time lag = max latency.
    m["max_time_lag"] = float(latency.max()) if latency.size else 0.0
    if latency.size:
        m["mean_latency"] = float(latency.mean())
        m.update(
            zip(("p50_latency", "p95_latency", "p99_latency"), np.percentile(latency, q).tolist())
        )
    else:
        m.update(
            dict.fromkeys(("mean_latency", "p50_latency", "p95_latency", "p99_latency"), math.nan)
        )
    m["max_latency"] = m["max_time_lag"]
    m["throughput"] = float(((done >= warmup) & (done <= duration)).sum() / span)
    m["utilisation"] = float(busy_overlap.sum() / (active * span))
    # Drained = the first moment, from `after` on, with nothing produced left unprocessed:
    # just before arrival i when all i earlier events are done (at their latest done
    # time), and after the last event.
    idle_before = np.flatnonzero(done_by_arrival[1:] == np.arange(1, len(arrival))) + 1
    empty_at = np.append(done_max[idle_before - 1], done_max[-1])

    def first_empty(after: float) -> float:
        if np.searchsorted(arrival, after, side="right") == np.searchsorted(
            done_sorted, after, side="right"
        ):
            return after  # already drained: everything produced by then is done
        k = np.searchsorted(empty_at, after, side="left")
        # Not drained within the run: the producer's future is unknown, so no finite answer.
        return float(empty_at[k]) if k < len(empty_at) and empty_at[k] <= duration else math.inf

    m["drain_time"] = first_empty(0.0) if backlog else math.nan
    p_end = pauses[1]
    recovery = [first_empty(pe) - pe for pe in p_end if pe <= duration]
    m["recovery_time"] = max(recovery) if recovery else math.nan
    half = grid >= warmup + span / 2
    m["lag_trend"] = (
        float(np.polyfit(grid[half], offset_lag[half], 1)[0]) if half.sum() > 1 else math.nan
    )
    return m, series


def simulate_lag(
    arrival_rate: RateSpec | None = None,
    *,
    service_rate: float | None = None,
    arrivals: ArrivalMode = "poisson",
    burst: tuple[float, float] = (1.0, 4.0),
    states: Sequence[tuple[float, float]] | None = None,
    timestamps: Any = None,
    duration: float | None = None,
    n_events: int | None = None,
    service: ServiceDist | ServiceProfile | None = None,
    service_cv: float | None = None,
    consumers: int = 1,
    partitions: int | None = None,
    batch_size: int = 1,
    batch_overhead: float = 0.0,
    pauses: Sequence[tuple[float, float]] = (),
    backlog: int = 0,
    warmup: float = 0.0,
    replications: int = 1,
    confidence: float = 0.95,
    sample_interval: float | None = None,
    keep_events: bool = True,
    progress: bool = True,
    seed: int | None = None,
) -> LagResult:
    """Simulate a consumer group behind a producer and measure its lag.

    Parameters
    ----------
    arrival_rate
        Events per second: a number, or a schedule of ``(start_time, rate)`` pairs (from
        0, piecewise constant, the last rate holds on). For ``arrivals="onoff"`` it is the
        mean rate; unused for ``"mmpp"`` and ``timestamps``.
    service_rate
        Events per second one consumer processes (mean service time ``1/service_rate``).
    arrivals
        ``"poisson"`` (random), ``"constant"`` (evenly spaced), ``"onoff"`` (Poisson bursts:
        on for ``burst[0]`` s, off for ``burst[1]`` s on average, exponentially distributed,
        same mean rate) or ``"mmpp"`` (Markov-modulated Poisson over ``states``).
    states
        For ``"mmpp"``: ``(rate, mean_holding_time)`` per state; the chain jumps to a
        uniformly chosen other state.
    timestamps
        Replay real arrivals instead: a polars Series of datetimes, a frame with
        ``recorded_at``, or a store (anything with ``.scan()``).
    duration, n_events
        How long the producer runs (seconds), or how many events it produces; one of them.
    service, service_cv
        Service-time law: ``"exponential"`` (default), ``"constant"``, or ``"gamma"`` /
        ``"lognormal"`` with coefficient of variation ``service_cv`` (gamma when only
        ``service_cv`` is given). Or a measured
        :class:`~esnotebook.sim.ServiceProfile` (from
        :func:`~esnotebook.sim.measure_consumer`) in place of ``service_rate``,
        ``service_cv`` and ``batch_overhead``: each event costs the profile's ``mean``
        and each batch a fixed cost resampled from the measured ones (mean
        ``batch_overhead``), so at ``batch_size=1`` an event's service time has the
        measured one-event steps' distribution; a batch that ends with events waiting
        keeps its consumer ``behind_overhead`` longer, one started by an idle consumer
        costs ``cold_overhead`` more; the fixed costs grow with the events in
        the store as measured (``growth``, from ``reads`` reads at time 0).
    consumers, partitions
        Consumer count. ``partitions=None`` is one shared queue with competing consumers
        (M/M/c); a number keys each event to a random partition, partitions are assigned
        round-robin and each consumer reads its partitions in order. Either way at most
        ``min(consumers, partitions)`` consumers work.
    batch_size, batch_overhead
        A consumer takes up to ``batch_size`` queued events per poll and pays
        ``batch_overhead`` seconds per batch; a batch's events are done at its end.
    pauses
        ``(start_time, duration)`` intervals with no processing (deploys, outages). The
        result's ``recovery_time`` is the longest time from a pause's end until every event
        produced is processed (0 when nothing is waiting as the pause ends).
    backlog
        Events already waiting at time 0 (a consumer starting behind).
    warmup
        Seconds cut from the start before measuring (initial transient).
    replications, confidence
        Independent runs; the summary gives the mean and a Student-t interval at
        ``confidence`` across them.
    sample_interval
        Spacing of the lag time series; about 2000 points by default.
    keep_events
        Keep per-event arrival and done times (for ``to_polars("events")``).
    progress
        Show a ``tqdm.auto`` bar over the replications (when there are several).
    seed
        Same seed, same result.

    Returns
    -------
    LagResult

    Examples
    --------
    >>> from esnotebook.sim import simulate_lag
    >>> r = simulate_lag(80, service_rate=100, duration=500, seed=1)
    >>> round(r["utilisation"], 1)
    0.8

    With a measured consumer (one-event steps of 2 ms mean, 1 ms of it fixed):

    >>> from esnotebook.sim import ServiceProfile
    >>> p = ServiceProfile(mean=0.001, cv=0.0, batch_overhead=0.001)
    >>> r = simulate_lag(400, service=p, duration=50, seed=1)
    >>> round(r["utilisation"], 1), r.settings["capacity"]
    (0.8, 500.0)
    """
    profile = service if isinstance(service, ServiceProfile) else None
    if profile is not None:
        mu, batch_overhead = _from_profile(
            profile,
            service_rate=service_rate,
            service_cv=service_cv,
            batch_overhead=batch_overhead,
        )
        service, cv = "measured", profile.cv
    else:
        if service_rate is None:
            raise ValueError(
                "simulate_lag needs 'service_rate' (events/s per consumer) or "
                "service=ServiceProfile(...) (got neither)"
            )
        mu = _float("service_rate", service_rate, positive=True)
        service, cv = _resolve_service(service, service_cv)
    consumers = _int("consumers", consumers, 1)
    if partitions is not None:
        partitions = _int("partitions", partitions, 1)
    batch_size = _int("batch_size", batch_size, 1)
    overhead = _float("batch_overhead", batch_overhead)
    backlog = _int("backlog", backlog, 0)
    warmup = _float("warmup", warmup)
    replications = _int("replications", replications, 1)
    if not (isinstance(confidence, float) and 0 < confidence < 1):
        raise ValueError(f"'confidence' must be a float in (0, 1) (got {confidence!r})")
    merged = merge_pauses(pauses)
    if timestamps is not None:
        if arrival_rate is not None or duration is not None or n_events is not None:
            raise ValueError(
                "'timestamps' replays recorded arrivals; leave 'arrival_rate', 'duration' and "
                "'n_events' unset"
            )
        recorded = recorded_arrivals(timestamps)

    rngs = np.random.default_rng(seed).spawn(replications)
    runs, series, events = [], [], []
    settings: dict[str, Any] = {}
    if progress and replications > 1:
        from .._progress import progress_bar

        rngs = progress_bar(rngs, desc="replications")
    for rep, rng in enumerate(rngs):
        if timestamps is not None:
            arr = recorded
        else:
            arr = generate_arrivals(
                arrival_rate,
                arrivals=arrivals,
                duration=duration,
                n_events=n_events,
                burst=burst,
                states=states,
                rng=rng,
            )
        if warmup >= arr.duration:
            raise ValueError(
                f"'warmup' must be shorter than the run ({arr.duration:g} s) (got {warmup!r})"
            )
        if len(arr.times) + backlog == 0:
            raise ValueError(
                f"the producer made no events in {arr.duration:g} s (long-run rate "
                f"{arr.long_run_rate:g}/s); use a longer 'duration' or 'n_events'"
            )
        n = len(arr.times) + backlog
        extra: dict[str, Any] = {}
        if profile is not None:
            extra = {
                "behind": profile.behind_overhead,
                "cold": profile.cold_overhead,
                "growth": profile.growth,
                "behind_growth": profile.behind_growth,
                "reads": profile.reads,
            }
        if profile is None:
            unit, costs = _service_draw(service, cv, n, rng), overhead
        else:
            unit, costs = np.ones(n), profile.draw_overheads(n, rng)
        arrival, done, b_start, b_end = _run_once(
            arr,
            backlog=backlog,
            unit_service=unit,
            mu=mu,
            consumers=consumers,
            partitions=partitions,
            batch_size=batch_size,
            overhead=costs,
            **extra,
            pauses=merged,
            rng=rng,
        )
        active = consumers if partitions is None else min(consumers, partitions)
        dt = sample_interval or arr.duration / _SAMPLES
        metrics, ts = _measure(
            arrival,
            done,
            (b_start, b_end),
            duration=arr.duration,
            warmup=warmup,
            sample_interval=_float("sample_interval", dt, positive=True),
            active=active,
            backlog=backlog,
            pauses=merged,
        )
        capacity = _group_capacity(
            mu=mu,
            consumers=consumers,
            partitions=partitions,
            batch_size=batch_size,
            overhead=overhead if profile is None else profile.fixed_behind,
        )
        metrics["offered_load"] = arr.long_run_rate / capacity
        metrics["grows_without_bound"] = float(arr.long_run_rate >= capacity)
        runs.append({"replication": rep, **metrics})
        series.append(ts.with_columns(pl.lit(rep, pl.Int32).alias("replication")))
        if keep_events:
            events.append((arrival, done))
        settings = {
            "arrivals": "recorded" if timestamps is not None else arrivals,
            "arrival_rate": arr.long_run_rate,
            "arrival_cv": arr.arrival_cv,
            "service_rate": mu,
            "service": service,
            "service_cv": cv,
            "consumers": consumers,
            "partitions": partitions,
            "batch_size": batch_size,
            "batch_overhead": overhead,
            "capacity": capacity,
            "duration": arr.duration,
            "warmup": warmup,
            "replications": replications,
            "seed": seed,
        }
    timeseries = pl.concat(series).select("replication", pl.exclude("replication"))
    return LagResult(
        runs=pl.DataFrame(runs),
        timeseries=timeseries,
        settings=settings,
        confidence=confidence,
        events=tuple(events),
    )
