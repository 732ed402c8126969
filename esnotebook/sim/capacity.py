"""Capacity planning: the smallest consumer rate or count that keeps lag under a target."""

from __future__ import annotations

import html
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from ._result import LagResult, confidence_interval
from .arrivals import generate_arrivals, recorded_arrivals
from .lag import simulate_lag

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CapacityResult", "required_capacity"]

Vary = Literal["service_rate", "consumers"]
_MAX_STEPS = 40
_FASTEST = 2.0**20  # times the load: a consumer this fast is as good as an infinitely fast one


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion (sound even at 0 or n successes)."""
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True, slots=True, eq=False)
class CapacityResult:
    """The answer of :func:`required_capacity` and how sure it is.

    ``value`` is the smallest ``parameter`` (``service_rate`` in events/s per consumer, or
    ``consumers``) at which at least ``meet_fraction`` of the replications kept ``metric``
    at or under ``target``. ``fraction_meeting`` is the share that did, with a Wilson
    interval ``fraction_ci``; ``metric_mean`` and ``metric_ci`` describe the metric there.
    ``trace`` lists every candidate tried.
    """

    parameter: str
    value: float
    metric: str
    target: float
    meet_fraction: float
    fraction_meeting: float
    fraction_ci: tuple[float, float]
    metric_mean: float
    metric_ci: tuple[float, float]
    replications: int
    trace: pl.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {
            "parameter": self.parameter,
            "value": self.value,
            "metric": self.metric,
            "target": self.target,
            "fraction_meeting": self.fraction_meeting,
            "fraction_ci_low": self.fraction_ci[0],
            "fraction_ci_high": self.fraction_ci[1],
            "metric_mean": self.metric_mean,
            "replications": self.replications,
        }

    def to_polars(self) -> pl.DataFrame:
        """The search trace: one row per candidate value tried."""
        return self.trace

    def to_pandas(self) -> pd.DataFrame:
        return self.trace.to_pandas()

    def _repr_html_(self) -> str:
        value = f"{self.value:.4g}" if self.parameter == "service_rate" else f"{int(self.value)}"
        text = (
            f"<b>required {self.parameter}</b>: {value} — {self.metric} ≤ {self.target:g} in "
            f"{self.fraction_meeting:.0%} of {self.replications} replications "
            f"(95% CI {self.fraction_ci[0]:.0%}–{self.fraction_ci[1]:.0%}); "
            f"{self.metric} there ≈ {self.metric_mean:.4g}"
        )
        # Everything above is numbers and our own names, escaped anyway for safety.
        return f"<div>{html.escape(text).replace('&lt;b&gt;', '<b>').replace('&lt;/b&gt;', '</b>')}</div>"


def _mean_rate(arrival_rate: Any, lag_kwargs: dict[str, Any], seed: int | None) -> float:
    """Events per second the producer delivers over the run (its sizing load)."""
    if lag_kwargs.get("timestamps") is not None:
        arr = recorded_arrivals(lag_kwargs["timestamps"])
    else:
        keys = ("arrivals", "duration", "n_events", "burst", "states")
        arr = generate_arrivals(
            arrival_rate,
            rng=np.random.default_rng(seed),
            **{k: lag_kwargs[k] for k in keys if k in lag_kwargs},
        )
    return max(len(arr.times) / arr.duration, arr.long_run_rate)


def required_capacity(
    arrival_rate: Any = None,
    *,
    target_p99_time_lag: float | None = None,
    target_max_offset_lag: float | None = None,
    vary: Vary = "service_rate",
    service_rate: float | None = None,
    consumers: int = 1,
    meet_fraction: float = 0.9,
    replications: int = 20,
    tolerance: float = 0.01,
    seed: int | None = 0,
    progress: bool = True,
    **lag_kwargs: Any,
) -> CapacityResult:
    """The smallest consumer rate (or consumer count) that keeps lag under a target.

    Every candidate is simulated with the same seeds (common random numbers), so results
    are monotone in the candidate and the search is a bisection.

    Parameters
    ----------
    arrival_rate
        The producer, as for :func:`~esnotebook.sim.simulate_lag` (with ``duration`` or
        ``n_events``, ``arrivals``, ``timestamps`` ... passed in ``lag_kwargs``).
    target_p99_time_lag, target_max_offset_lag
        The target: p99 time lag in seconds, or max offset lag in events; exactly one.
    vary
        ``"service_rate"`` (events/s per consumer; ``consumers`` fixed) or ``"consumers"``
        (``service_rate`` fixed and required).
    meet_fraction
        Share of replications that must meet the target, e.g. 0.9.
    replications, seed
        Independent runs per candidate and the seed they derive from.
    tolerance
        Relative precision of a service rate found by bisection.
    progress
        Show a ``tqdm.auto`` bar counting the candidates simulated.
    **lag_kwargs
        Passed to :func:`~esnotebook.sim.simulate_lag` (``duration``, ``arrivals``,
        ``service``, ``partitions``, ``batch_size``, ``pauses``, ``warmup`` ...).

    Raises
    ------
    ValueError
        At once, before any long search, when no candidate can meet the target. When the
        first candidate misses it, the most capacity that can help is simulated: for
        ``"service_rate"`` consumers ``2**20`` times faster than the load needs, for
        ``"consumers"`` a free consumer for every event (or one per partition). If that
        misses too, the error says what sets the floor (service time, batch overhead,
        pauses, backlog, or a load beyond what the partitions' consumers process) and from
        which value a target is reachable.

    Examples
    --------
    >>> from esnotebook.sim import required_capacity
    >>> r = required_capacity(100, target_p99_time_lag=0.5, duration=200, replications=5)
    >>> 100 < r.value < 120
    True
    """
    if (target_p99_time_lag is None) == (target_max_offset_lag is None):
        raise ValueError(
            "give exactly one target: 'target_p99_time_lag' (s) or 'target_max_offset_lag' (events)"
        )
    metric, target = (
        ("p99_time_lag", target_p99_time_lag)
        if target_p99_time_lag is not None
        else ("max_offset_lag", target_max_offset_lag)
    )
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not target > 0:
        raise ValueError(f"the target must be a number > 0 (got {target!r})")
    if vary not in ("service_rate", "consumers"):
        raise ValueError(f"'vary' must be 'service_rate' or 'consumers' (got {vary!r})")
    if not (isinstance(meet_fraction, float) and 0 < meet_fraction <= 1):
        raise ValueError(f"'meet_fraction' must be a float in (0, 1] (got {meet_fraction!r})")
    if not (isinstance(tolerance, float) and 0 < tolerance < 1):
        raise ValueError(f"'tolerance' must be a float in (0, 1) (got {tolerance!r})")
    for fixed in ("replications", "seed", "keep_events", "progress", "service_rate", "consumers"):
        if fixed in lag_kwargs:
            raise ValueError(f"{fixed!r} is set by required_capacity itself; remove it")
    if vary == "consumers" and service_rate is None:
        raise ValueError("vary='consumers' needs 'service_rate' (events/s per consumer)")
    if vary == "service_rate" and service_rate is not None:
        raise ValueError("vary='service_rate' searches the rate; leave 'service_rate' unset")

    if seed is None:
        # Every candidate must see the same randomness, or the search is not monotone.
        seed = int(np.random.SeedSequence().entropy % 2**63)
    trace: list[dict[str, Any]] = []
    simulated: dict[float, LagResult] = {}

    def simulate(x: float) -> LagResult:
        if x not in simulated:
            kwargs = dict(
                lag_kwargs, replications=replications, seed=seed, keep_events=False, progress=False
            )
            rate, count = (x, consumers) if vary == "service_rate" else (service_rate, int(x))
            result = simulate_lag(arrival_rate, service_rate=rate, consumers=count, **kwargs)
            # Keep the per-run metrics, not the time series: a search tries dozens of candidates.
            simulated[x] = replace(result, timeseries=result.timeseries.clear())
            bar.update()
        return simulated[x]

    def metric_values(x: float) -> np.ndarray:
        return simulate(x).runs[metric].to_numpy().astype(float)

    def share(x: float) -> float:
        return float(np.mean(metric_values(x) <= target))

    def check(x: float) -> bool:
        ok = share(x) >= meet_fraction
        if all(row[vary] != x for row in trace):
            trace.append(
                {
                    vary: x,
                    "fraction_meeting": share(x),
                    f"mean_{metric}": float(metric_values(x).mean()),
                    "meets": ok,
                }
            )
        return ok

    def floor(x: float) -> None:
        """Refuse at once a target that ``x``, the most capacity that can help, misses."""
        if share(x) >= meet_fraction:
            return
        result, values = simulate(x), metric_values(x)
        if vary == "service_rate":
            how = f"by any service rate: even at {x:.3g} events/s per consumer (service time ~0)"
        elif x == lag_kwargs.get("partitions"):
            how = (
                f"by any consumer count up to the {int(x)} partitions (consumers beyond the "
                f"partition count do nothing): even with {int(x)}"
            )
        else:
            how = "by any consumer count: even with a free consumer for every event"
        if result.grows_without_bound:
            why = (
                f"they process {result.settings['capacity']:.4g} events/s, below the producer's "
                f"{result.settings['arrival_rate']:.4g}/s, and the lag grows without bound"
            )
        else:
            reachable = next(v for v in np.sort(values) if np.mean(values <= v) >= meet_fraction)
            unit = "s" if metric == "p99_time_lag" else "events"
            why = (
                f"{metric} is up to {reachable:.4g} {unit} in {meet_fraction:.0%} of the "
                f"replications, set by {_floor_causes(vary, lag_kwargs, service_rate)}; targets "
                f"from about {reachable:.4g} {unit} on are reachable"
            )
        raise ValueError(f"{metric} <= {target:g} cannot be met {how}, {why}")

    load = _mean_rate(arrival_rate, lag_kwargs, seed)
    from .._progress import progress_bar

    bar = progress_bar(desc=f"searching {vary}", unit="candidate", enabled=progress)
    try:
        value = _search(vary, check, floor, load, consumers, service_rate, tolerance, lag_kwargs)
    finally:
        bar.close()
    values = metric_values(value)
    mean, low, high = confidence_interval(values, 0.95)
    frame = pl.DataFrame(trace).sort(vary)
    if vary == "consumers":
        frame = frame.with_columns(pl.col("consumers").cast(pl.Int64))
    return CapacityResult(
        parameter=vary,
        value=value,
        metric=metric,
        target=float(target),
        meet_fraction=meet_fraction,
        fraction_meeting=share(value),
        fraction_ci=wilson_interval(round(share(value) * replications), replications, 0.95),
        metric_mean=mean,
        metric_ci=(low, high),
        replications=replications,
        trace=frame,
    )


def _floor_causes(vary: Vary, lag_kwargs: dict[str, Any], service_rate: float | None) -> str:
    """What, besides the capacity searched, keeps the lag up."""
    causes = [
        f"{what} ({key}={lag_kwargs[key]!r})"
        for key, what in (
            ("batch_overhead", "the batch overhead"),
            ("pauses", "the pauses"),
            ("backlog", "the backlog at the start"),
        )
        if lag_kwargs.get(key)
    ]
    if vary == "consumers":
        causes.insert(0, f"the service time (mean {1 / service_rate:.3g} s per event)")
    return ", ".join(causes) or "the arrivals themselves (an event waits from its arrival on)"


def _search(
    vary: Vary,
    check: Callable[[float], bool],
    floor: Callable[[float], None],
    load: float,
    consumers: int,
    service_rate: float | None,
    tolerance: float,
    lag_kwargs: dict[str, Any],
) -> float:
    """Bracket the answer by halving or doubling, then bisect (monotone under CRN).

    Before growing past the first candidate, ``floor`` tries the most capacity that can
    help; it raises when even that misses the target, and otherwise the doubling stops
    there at the latest."""
    if vary == "service_rate":
        x = load / consumers
        if check(x):
            hi = x
            steps = 0
            while check(lo := hi / 2):
                hi = lo
                steps += 1
                if steps > _MAX_STEPS:
                    return hi  # met at every rate tried: the target does not bind
        else:
            fastest = x * _FASTEST
            floor(fastest)
            lo = x
            while not check(hi := min(lo * 2, fastest)):
                lo = hi
        while (hi - lo) / hi > tolerance:
            mid = (lo + hi) / 2
            if check(mid):
                hi = mid
            else:
                lo = mid
        return hi
    # Consumers beyond the partition count, or beyond one per event, do nothing.
    most = lag_kwargs.get("partitions") or sys.maxsize
    lo, hi = 0, min(max(1, math.ceil(load / service_rate)), most)
    if not check(float(hi)):
        floor(float(most))
        while not check(float(hi)):  # the first is the candidate just missed, cached
            lo, hi = hi, min(hi * 2, most)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if check(float(mid)):
            hi = mid
        else:
            lo = mid
    return float(hi)
