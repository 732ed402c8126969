"""The random draws behind the synthetic workloads, each vectorised over all orders or events.

Every function takes the caller's ``numpy.random.Generator``; none keeps state of its own.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MINUTE_US = 60_000_000
_DAY_MINUTES = 1440

#: Zipf-Mandelbrot rank offset: the head of the distribution is skewed but no single
#: customer or product takes an absurd share of everything.
ZIPF_OFFSET = 10.0

#: Shops are busier at weekends.
WEEKEND_FACTOR = 1.2

#: Mean gaps (seconds) before an event, by its type code (codes follow
#: ``orders.ORDER_EVENT_TYPES``), and when it follows a failed payment.
_GAP_SECONDS = np.array([0, 45, 150, 240, 240, 0, 14400], dtype=np.float64)
_GAP_AFTER_FAILURE = np.array([0, 45, 150, 1800, 1800, 0, 3600], dtype=np.float64)
_FAILED, _SHIPPED = 4, 5
SHIP_MEDIAN_HOURS = 18.0
SHIP_SIGMA = 0.5


def zipf_choice(n: int, size: int, skew: float, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws (UInt32) from ``0..n-1``, rank ``r`` with weight
    ``1 / (r + 1 + offset) ** skew``."""
    weights = (np.arange(1, n + 1) + ZIPF_OFFSET) ** -skew
    if n <= _ALIAS_UP_TO:
        return alias_choice(weights, size, rng)
    # Searching sorted draws walks the table once instead of jumping around it (several
    # times faster for big tables); shuffling afterwards makes the draws independent again.
    cdf = np.cumsum(weights)
    picks = np.searchsorted(cdf, np.sort(rng.random(size)) * cdf[-1], side="right")
    picks = np.minimum(picks, n - 1).astype(np.uint32)
    rng.shuffle(picks)
    return picks


#: Catalogues up to this size are sampled with an alias table: a binary search per draw
#: (``searchsorted``) is several times slower for millions of draws.
_ALIAS_UP_TO = 1 << 16


def alias_choice(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws (UInt32) from ``0..len(weights)-1`` in proportion to ``weights``, by
    Walker's alias method (Vose's construction): two lookups per draw, no search."""
    n = weights.size
    prob = weights * (n / weights.sum())
    alias = np.arange(n)
    small = [i for i in range(n) if prob[i] < 1.0]
    large = [i for i in range(n) if prob[i] >= 1.0]
    while small and large:  # over the catalogue (once per call), not over the draws
        s, g = small.pop(), large.pop()
        alias[s] = g
        prob[g] -= 1.0 - prob[s]
        (small if prob[g] < 1.0 else large).append(g)
    prob[small + large] = 1.0
    u = rng.random(size) * n
    column = np.minimum(u.astype(np.int64), n - 1)
    keep = (u - column) < prob[column]
    return np.where(keep, column, alias[column]).astype(np.uint32)


def outcome_counts(
    pays: np.ndarray, p_fail: float, p_retry: float, attempts: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Failed payment attempts per order, and whether the order ends up paid.

    Only orders with ``pays`` try to pay. Each attempt fails with ``p_fail``; after a
    failure the customer tries again with ``p_retry``, at most ``attempts`` times in all.
    """
    n = pays.size
    fails = rng.random((attempts, n)) < p_fail
    retries = rng.random((attempts, n)) < p_retry
    failures = np.zeros(n, np.int64)
    paid = np.zeros(n, bool)
    trying = pays.copy()
    for a in range(attempts):  # over attempts (at most three), not over orders
        failed = trying & fails[a]
        paid |= trying & ~fails[a]
        failures += failed
        trying = failed & retries[a] if a + 1 < attempts else np.zeros(n, bool)
    return failures, paid


def daily_profile(hour: np.ndarray) -> np.ndarray:
    """Relative rate of new orders by hour of day (UTC): quiet nights, a morning and a
    lunchtime bump, the peak in the evening."""

    def bump(centre: float, width: float) -> np.ndarray:
        d = np.abs(hour - centre)
        d = np.minimum(d, 24 - d)  # the day wraps around midnight
        return np.exp(-0.5 * (d / width) ** 2)

    return 0.06 + 0.25 * bump(9.0, 1.5) + 0.45 * bump(12.75, 1.25) + 1.0 * bump(20.25, 1.75)


def placement_times(
    n: int, *, days: float, bursts_per_day: float, start: datetime, rng: np.random.Generator
) -> np.ndarray:
    """``n`` sorted order placement times (microseconds since the epoch) in
    ``[start, start + days)``, following :func:`daily_profile`, weekends and random bursts."""
    start_us = (start - _EPOCH) // timedelta(microseconds=1)
    start_minute = start_us // _MINUTE_US
    minutes = max(1, math.ceil(days * _DAY_MINUTES))
    absolute = start_minute + np.arange(minutes)
    hour = (absolute % _DAY_MINUTES) / 60.0
    weekday = (absolute // _DAY_MINUTES + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    rate = daily_profile(hour) * np.where(weekday >= 5, WEEKEND_FACTOR, 1.0)

    bursts = rng.poisson(bursts_per_day * days)
    first = rng.integers(0, minutes, bursts)
    length = rng.integers(10, 91, bursts)
    extra = rng.uniform(2.0, 7.0, bursts)  # a burst runs at 3-8 times the usual rate
    change = np.zeros(minutes + 1)
    np.add.at(change, first, extra)
    np.add.at(change, np.minimum(first + length, minutes), -extra)
    rate = rate * (1.0 + np.cumsum(change)[:minutes])

    # The window may end inside its last minute, and starts wherever ``start`` falls.
    end_us = start_us + round(days * _DAY_MINUTES * _MINUTE_US)
    lo = np.maximum(absolute * _MINUTE_US, start_us)
    hi = np.minimum((absolute + 1) * _MINUTE_US, end_us)
    rate = rate * (hi - lo) / _MINUTE_US

    cdf = np.cumsum(rate)
    # Sorted draws: the search walks the table once, and the times come out (nearly) sorted.
    draws = np.sort(rng.random(n)) * cdf[-1]
    bins = np.minimum(np.searchsorted(cdf, draws, side="right"), minutes - 1)
    at = lo[bins] + (rng.random(n) * (hi[bins] - lo[bins])).astype(np.int64)
    at.sort()
    return at


def clock_times(
    code: np.ndarray,
    per_order: np.ndarray,
    placed_us: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The time (microseconds since the epoch) of every event: its order's placement time
    plus the gaps before it, each at least one microsecond, so every order's events are
    strictly increasing in time. ``code`` holds the orders' events one order after another,
    ``per_order`` events each.

    Items follow each other within a minute or so, payment a few minutes later, a retry
    after a failed payment half an hour later, shipping hours to a few days after payment.
    """
    # Key = code * 8 + code of the event before: one lookup gives each event's mean gap.
    key = code.astype(np.int16) * 8
    key[1:] += code[:-1]
    table = np.zeros(8 * len(_GAP_SECONDS))
    for c in range(len(_GAP_SECONDS)):
        table[8 * c : 8 * c + 8] = _GAP_SECONDS[c]
        table[8 * c + _FAILED] = _GAP_AFTER_FAILURE[c]
    gap_s = rng.standard_exponential(code.size) * table[key]
    shipping = np.flatnonzero(code == _SHIPPED)
    gap_s[shipping] = rng.lognormal(math.log(SHIP_MEDIAN_HOURS * 3600), SHIP_SIGMA, shipping.size)
    gap_us = (gap_s * 1e6).astype(np.int64) + 1
    starts = np.cumsum(per_order) - per_order
    gap_us[starts] = 0  # an order's first event is its placement
    elapsed = np.cumsum(gap_us)
    return elapsed + np.repeat(placed_us - elapsed[starts], per_order)


def nullable(values: np.ndarray, valid: np.ndarray) -> pl.Series:
    """``values`` as a polars Series, null where ``valid`` is False."""
    return pl.select(pl.when(pl.Series(valid)).then(pl.Series(values))).to_series()
