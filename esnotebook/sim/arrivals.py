"""Producers: when events arrive.

Every producer is a piecewise-constant rate path ``λ(t)`` (fixed, a schedule, or a random
Markov-modulated path) plus unit-rate points mapped through the inverse of the cumulative
rate ``Λ(t)``: exponential gaps give a (non-homogeneous) Poisson process, gaps of 1 give
evenly spaced arrivals. All of it is vectorised with numpy; a store's own ``recorded_at``
timestamps can stand in for the producer instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

__all__ = ["ArrivalMode", "Arrivals", "generate_arrivals", "recorded_arrivals"]

ArrivalMode = Literal["poisson", "constant", "onoff", "mmpp"]
_MODES = ("poisson", "constant", "onoff", "mmpp")

RateSpec = float | Sequence[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Arrivals:
    """Arrival times (seconds from 0, sorted) and what is known of the process behind them.

    ``long_run_rate`` is the rate that persists after the generated span (the last segment
    of a schedule, the stationary mean of a modulated process); ``arrival_cv`` is the
    coefficient of variation of the gaps when it is known (1 Poisson, 0 constant).
    """

    times: np.ndarray
    duration: float
    long_run_rate: float
    arrival_cv: float | None


def _number(name: str, value: object, *, positive: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name!r} must be a finite number {bound} (got {value!r})")
    return float(value)


def _schedule(arrival_rate: RateSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, rates)`` of a rate spec; a lone number is a single segment from 0."""
    if isinstance(arrival_rate, (int, float, np.integer, np.floating)) and not isinstance(
        arrival_rate, bool
    ):
        return np.array([0.0]), np.array([_number("arrival_rate", arrival_rate, positive=True)])
    try:
        pairs = [(float(s), float(r)) for s, r in arrival_rate]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(
            "'arrival_rate' must be a number > 0 or a list of (start_time, rate) pairs "
            f"(got {arrival_rate!r})"
        ) from None
    if not pairs:
        raise ValueError("'arrival_rate' schedule is empty; give at least one (start_time, rate)")
    starts = np.array([s for s, _ in pairs])
    rates = np.array([r for _, r in pairs])
    if starts[0] != 0 or np.any(np.diff(starts) <= 0) or not np.all(np.isfinite(starts)):
        raise ValueError(
            "'arrival_rate' schedule start times must begin at 0 and strictly increase "
            f"(got {starts.tolist()})"
        )
    if np.any(rates < 0) or not np.all(np.isfinite(rates)) or rates[-1] <= 0 and rates.max() <= 0:
        raise ValueError(
            f"'arrival_rate' schedule rates must be finite, >= 0 and not all 0 (got {rates.tolist()})"
        )
    return starts, rates


def _states(states: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    try:
        pairs = [(float(r), float(h)) for r, h in states]
    except (TypeError, ValueError):
        raise ValueError(
            f"'states' must be a list of (rate, mean_holding_time) pairs (got {states!r})"
        ) from None
    if len(pairs) < 2:
        raise ValueError(
            f"'states' needs at least 2 (rate, mean_holding_time) pairs (got {states!r})"
        )
    rates = np.array([r for r, _ in pairs])
    hold = np.array([h for _, h in pairs])
    if np.any(rates < 0) or rates.max() <= 0 or np.any(hold <= 0):
        raise ValueError(
            f"'states' rates must be >= 0 (one > 0) and holding times > 0 (got {pairs})"
        )
    return rates, hold


def _modulated_path(
    rates: np.ndarray, hold: np.ndarray, horizon: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random Markov-modulated rate path covering ``[0, horizon]``.

    The modulating chain jumps to a uniformly chosen other state; it starts in its
    time-stationary law (proportional to mean holding time), so the path is stationary.
    """
    k = len(rates)
    mean_cycle = hold.mean()
    n = int(horizon / mean_cycle * 1.2) + 16
    state = [int(rng.choice(k, p=hold / hold.sum()))]
    chunks_s: list[np.ndarray] = []
    chunks_d: list[np.ndarray] = []
    total = 0.0
    while total <= horizon:
        if k == 2:
            seq = (state[-1] + 1 + np.arange(n)) % 2
        else:
            steps = rng.integers(1, k, size=n)
            seq = (state[-1] + np.cumsum(steps)) % k
        seq = np.concatenate([[state[-1]], seq[:-1]]) if not chunks_s else seq
        durations = rng.exponential(hold[seq])
        chunks_s.append(seq)
        chunks_d.append(durations)
        state.append(int(seq[-1]))
        total += durations.sum()
    seq = np.concatenate(chunks_s)
    durations = np.concatenate(chunks_d)
    starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    keep = starts <= horizon
    return starts[keep], rates[seq[keep]]


def _invert(units: np.ndarray, starts: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Times ``t`` with ``Λ(t) = u`` for a piecewise-constant rate path."""
    if len(starts) == 1:
        return units / rates[0]
    cum = np.concatenate([[0.0], np.cumsum(np.diff(starts) * rates[:-1])])
    # The first t with Λ(t) >= u: a unit exactly at a segment boundary stays in the earlier
    # segment, so zero-rate segments (flat Λ) are never chosen.
    seg = np.maximum(np.searchsorted(cum, units, side="left") - 1, 0)
    offset = (units - cum[seg]) / rates[seg]
    return starts[seg] + offset


def _cumulative(t: float, starts: np.ndarray, rates: np.ndarray) -> float:
    seg = int(np.searchsorted(starts, t, side="right")) - 1
    cum = np.concatenate([[0.0], np.cumsum(np.diff(starts) * rates[:-1])])
    return float(cum[seg] + (t - starts[seg]) * rates[seg])


def _unit_points(mode: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if mode == "constant":
        return np.arange(1, n + 1, dtype=np.float64)
    return np.cumsum(rng.exponential(1.0, size=n))


def generate_arrivals(
    arrival_rate: RateSpec | None,
    *,
    arrivals: ArrivalMode = "poisson",
    duration: float | None = None,
    n_events: int | None = None,
    burst: tuple[float, float] = (1.0, 4.0),
    states: Sequence[tuple[float, float]] | None = None,
    rng: np.random.Generator,
) -> Arrivals:
    """Arrival times of a producer over ``duration`` seconds, or its first ``n_events``.

    See :func:`esnotebook.sim.simulate_lag` for the meaning of each argument.
    """
    if arrivals not in _MODES:
        raise ValueError(f"'arrivals' must be one of {', '.join(_MODES)} (got {arrivals!r})")
    if (duration is None) == (n_events is None):
        raise ValueError(
            "give exactly one of 'duration' (seconds) or 'n_events' "
            f"(got duration={duration!r}, n_events={n_events!r})"
        )
    if duration is not None:
        duration = _number("duration", duration, positive=True)
    if n_events is not None and (
        isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 1
    ):
        raise ValueError(f"'n_events' must be an int >= 1 (got {n_events!r})")

    if arrivals == "mmpp":
        if states is None:
            raise ValueError("arrivals='mmpp' needs 'states': a list of (rate, mean_holding_time)")
        if arrival_rate is not None:
            raise ValueError(
                "arrivals='mmpp' takes its rates from 'states'; leave 'arrival_rate' as None "
                f"(got {arrival_rate!r})"
            )
        mod_rates, hold = _states(states)
        long_run = float((mod_rates * hold).sum() / hold.sum())
        cv = None
    else:
        if arrival_rate is None:
            raise ValueError(f"arrivals={arrivals!r} needs 'arrival_rate' (events/s)")
        sched_starts, sched_rates = _schedule(arrival_rate)
        long_run = float(sched_rates[-1])
        if long_run == 0 and n_events is not None:
            raise ValueError(
                "with 'n_events' the schedule's last rate must be > 0, or the producer never "
                f"reaches n_events (got {sched_rates.tolist()})"
            )
        cv = None if len(sched_rates) > 1 else (0.0 if arrivals == "constant" else 1.0)
        if arrivals == "onoff":
            on, off = (_number("burst", b, positive=True) for b in burst)
            mod_rates, hold = np.array([(on + off) / on, 0.0]), np.array([on, off])
            cv = None

    if n_events is not None:
        units = _unit_points(arrivals, int(n_events), rng)
        horizon = None
    else:
        horizon = duration
        units = None

    def path(h: float) -> tuple[np.ndarray, np.ndarray]:
        if arrivals == "mmpp":
            return _modulated_path(mod_rates, hold, h, rng)
        if arrivals != "onoff":
            return sched_starts, sched_rates
        m_starts, m_factor = _modulated_path(mod_rates, hold, h, rng)
        starts = np.union1d(m_starts, sched_starts[sched_starts <= h])
        factor = m_factor[np.searchsorted(m_starts, starts, side="right") - 1]
        base = sched_rates[np.searchsorted(sched_starts, starts, side="right") - 1]
        return starts, factor * base

    if horizon is None:
        # Grow the modulated path until it carries n_events of cumulative rate.
        need = float(units[-1])
        h = need / max(long_run, 1e-300)
        while True:
            starts, rates = path(h)
            if arrivals in ("poisson", "constant") or _cumulative(starts[-1], starts, rates) > need:
                break
            h *= 2
        times = _invert(units, starts, rates)
        return Arrivals(times, float(times[-1]), long_run, cv)

    starts, rates = path(horizon)
    total = _cumulative(horizon, starts, rates)
    n = int(total + 6 * math.sqrt(total) + 16)
    units = _unit_points(arrivals, n, rng)
    while units[-1] <= total:
        units = np.concatenate([units, units[-1] + _unit_points(arrivals, n, rng)])
    units = units[units <= total]
    return Arrivals(_invert(units, starts, rates), horizon, long_run, cv)


def recorded_arrivals(source: Any) -> Arrivals:
    """Arrival times from real ``recorded_at`` timestamps, in seconds from the first event.

    ``source`` is a polars Series of datetimes, a polars (Lazy)DataFrame with a
    ``recorded_at`` column, or any object with ``.scan()`` returning the canonical event
    frame (every esnotebook store); an :class:`Arrivals` (seconds already, e.g. those a
    live run recorded) is used as it is.
    """
    if isinstance(source, Arrivals):
        return source
    if hasattr(source, "scan") and not isinstance(source, (pl.DataFrame, pl.LazyFrame)):
        source = source.scan()
    if isinstance(source, pl.LazyFrame):
        source = source.select("recorded_at").collect()
    if isinstance(source, pl.DataFrame):
        if "recorded_at" not in source.columns:
            raise ValueError(
                f"timestamps frame must have a 'recorded_at' column (got columns {source.columns})"
            )
        source = source["recorded_at"]
    if not isinstance(source, pl.Series):
        raise ValueError(
            "'timestamps' must be a polars Series of datetimes, a frame with 'recorded_at', "
            f"or a store with .scan() (got {type(source).__name__})"
        )
    if not isinstance(source.dtype, pl.Datetime):
        raise ValueError(f"timestamps must be datetimes (got dtype {source.dtype})")
    source = source.drop_nulls()
    if source.len() < 2:
        raise ValueError(f"timestamps need at least 2 events (got {source.len()})")
    micros = source.dt.epoch("us").sort().to_numpy().astype(np.int64)
    times = (micros - micros[0]) / 1e6
    duration = float(times[-1])
    if duration <= 0:
        raise ValueError("timestamps all fall on the same instant; there is no rate to replay")
    return Arrivals(times, duration, len(times) / duration, None)
