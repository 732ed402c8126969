"""Closed-form results the simulators are checked against.

Queueing (consumer lag): M/M/1, M/D/1 and M/G/1 (Pollaczek-Khinchine), M/M/c (Erlang C),
Kingman's G/G/1 approximation, Little's law, and the fluid model of overload. Rebuilds:
catch-up time under live traffic and the replayed tail behind a snapshot. Sagas: success
probability, expected compensations, retries and duplicate side effects.

Rates are per second, times in seconds. A queue with utilisation >= 1 has no steady state:
its mean waits are ``math.inf``.

Examples
--------
>>> from esnotebook.sim import theory
>>> round(theory.mm1(80, service_rate=100).mean_latency, 6)
0.05
>>> theory.drain_time(1_000, arrival_rate=50, service_rate=100)
20.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Literal

__all__ = [
    "QueueStats",
    "drain_time",
    "erlang_c",
    "expected_compensations",
    "expected_duplicates",
    "expected_replayed_tail",
    "fluid_lag",
    "kingman",
    "little",
    "md1",
    "mg1",
    "mm1",
    "mm1_latency_quantile",
    "mmc",
    "rebuild_time",
    "retry_failure",
    "saga_success",
    "utilisation",
]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Steady-state means of a queue (seconds and events).

    ``mean_wait`` is the time before service starts, ``mean_latency`` the time from arrival
    to done (wait + service); ``mean_queue`` counts waiting events, ``mean_in_system`` all
    events produced but not yet processed (the mean offset lag).
    """

    utilisation: float
    mean_wait: float
    mean_latency: float
    mean_queue: float
    mean_in_system: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise ValueError(f"{name!r} must be a number > 0 (got {value!r})")
    return float(value)


def _non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value >= 0:
        raise ValueError(f"{name!r} must be a number >= 0 (got {value!r})")
    return float(value)


def _probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value <= 1:
        raise ValueError(f"{name!r} must be a probability in [0, 1] (got {value!r})")
    return float(value)


def _servers(servers: int) -> int:
    if isinstance(servers, bool) or not isinstance(servers, int) or servers < 1:
        raise ValueError(f"'servers' must be an int >= 1 (got {servers!r})")
    return servers


def utilisation(arrival_rate: float, *, service_rate: float, servers: int = 1) -> float:
    """Offered load per server, ``ρ = λ / (c μ)``; the queue is stable only when ``ρ < 1``."""
    lam = _non_negative("arrival_rate", arrival_rate)
    return lam / (_servers(servers) * _positive("service_rate", service_rate))


def _stats(lam: float, mu: float, rho: float, wq: float) -> QueueStats:
    if rho >= 1:
        return QueueStats(rho, math.inf, math.inf, math.inf, math.inf)
    w = wq + 1 / mu
    return QueueStats(rho, wq, w, lam * wq, lam * w)


def mg1(arrival_rate: float, *, service_rate: float, service_cv: float) -> QueueStats:
    """M/G/1 by Pollaczek-Khinchine: ``Wq = ρ (1 + cs²) / (2 (1 - ρ)) · E[S]``.

    Poisson arrivals, one FIFO consumer, service times of mean ``1/service_rate`` and
    coefficient of variation ``service_cv`` (0 constant, 1 exponential).
    """
    lam = _non_negative("arrival_rate", arrival_rate)
    mu = _positive("service_rate", service_rate)
    cs = _non_negative("service_cv", service_cv)
    rho = lam / mu
    wq = rho * (1 + cs * cs) / (2 * (1 - rho)) / mu if rho < 1 else math.inf
    return _stats(lam, mu, rho, wq)


def mm1(arrival_rate: float, *, service_rate: float) -> QueueStats:
    """M/M/1: Poisson arrivals, exponential service, one consumer; ``W = 1 / (μ - λ)``."""
    return mg1(arrival_rate, service_rate=service_rate, service_cv=1.0)


def md1(arrival_rate: float, *, service_rate: float) -> QueueStats:
    """M/D/1: Poisson arrivals, constant service; half the M/M/1 queueing delay."""
    return mg1(arrival_rate, service_rate=service_rate, service_cv=0.0)


def mm1_latency_quantile(q: float, *, arrival_rate: float, service_rate: float) -> float:
    """The ``q``-quantile of M/M/1 latency, which is exponential with rate ``μ - λ``."""
    q = _probability("q", q)
    lam = _non_negative("arrival_rate", arrival_rate)
    mu = _positive("service_rate", service_rate)
    if lam >= mu or q == 1:
        return math.inf
    return -math.log1p(-q) / (mu - lam)


def erlang_c(offered_load: float, *, servers: int) -> float:
    """Probability that an arrival waits in M/M/c with ``a = λ/μ`` erlangs offered.

    Computed through the Erlang B recursion, which stays stable for hundreds of servers.
    """
    c = _servers(servers)
    a = _non_negative("offered_load", offered_load)
    if a >= c:
        return 1.0
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1 - rho + rho * b)


def mmc(arrival_rate: float, *, service_rate: float, servers: int) -> QueueStats:
    """M/M/c, competing consumers on one shared queue: ``Wq = C(c, a) / (c μ - λ)``."""
    lam = _non_negative("arrival_rate", arrival_rate)
    mu = _positive("service_rate", service_rate)
    c = _servers(servers)
    rho = lam / (c * mu)
    wq = erlang_c(lam / mu, servers=c) / (c * mu - lam) if rho < 1 else math.inf
    return _stats(lam, mu, rho, wq)


def kingman(
    arrival_rate: float, *, service_rate: float, arrival_cv: float, service_cv: float
) -> QueueStats:
    """Kingman's G/G/1 approximation: ``Wq ≈ ρ/(1-ρ) · (ca² + cs²)/2 · E[S]``.

    Exact for M/M/1 (``ca = cs = 1``); for other inputs it is an approximation that gets
    better as ``ρ`` approaches 1 (heavy traffic).
    """
    lam = _non_negative("arrival_rate", arrival_rate)
    mu = _positive("service_rate", service_rate)
    ca = _non_negative("arrival_cv", arrival_cv)
    cs = _non_negative("service_cv", service_cv)
    rho = lam / mu
    wq = rho / (1 - rho) * (ca * ca + cs * cs) / 2 / mu if rho < 1 else math.inf
    return _stats(lam, mu, rho, wq)


def little(
    *,
    arrival_rate: float | None = None,
    mean_time: float | None = None,
    mean_number: float | None = None,
) -> float:
    """Little's law ``L = λ W``: give any two of the three and get the third.

    >>> little(arrival_rate=100, mean_time=0.05)
    5.0
    """
    given = {
        k: v
        for k, v in (
            ("arrival_rate", arrival_rate),
            ("mean_time", mean_time),
            ("mean_number", mean_number),
        )
        if v is not None
    }
    if len(given) != 2:
        raise ValueError(
            "little() needs exactly two of 'arrival_rate', 'mean_time', 'mean_number' "
            f"(got {', '.join(given) or 'none'})"
        )
    if mean_number is None:
        return _non_negative("arrival_rate", arrival_rate) * _non_negative("mean_time", mean_time)
    if mean_time is None:
        return _non_negative("mean_number", mean_number) / _positive("arrival_rate", arrival_rate)
    return _non_negative("mean_number", mean_number) / _positive("mean_time", mean_time)


def fluid_lag(t: float, *, arrival_rate: float, service_rate: float, backlog: float = 0.0) -> float:
    """Offset lag at time ``t`` in the fluid model: ``max(0, B + (λ - μ) t)``.

    Under overload (``λ > μ``) lag grows at ``λ - μ`` events per second without bound.
    """
    t = _non_negative("t", t)
    lam = _non_negative("arrival_rate", arrival_rate)
    mu = _non_negative("service_rate", service_rate)
    return max(0.0, _non_negative("backlog", backlog) + (lam - mu) * t)


def drain_time(backlog: float, *, arrival_rate: float, service_rate: float) -> float:
    """Seconds to drain a backlog ``B`` while traffic continues: ``B / (μ - λ)``.

    ``math.inf`` when ``μ <= λ`` (the backlog never drains) and ``B > 0``.
    """
    b = _non_negative("backlog", backlog)
    lam = _non_negative("arrival_rate", arrival_rate)
    mu = _non_negative("service_rate", service_rate)
    if b == 0:
        return 0.0
    return b / (mu - lam) if mu > lam else math.inf


def rebuild_time(events: float, *, rebuild_rate: float, live_rate: float = 0.0) -> float:
    """Seconds for a rebuild at ``r`` events/s to catch up with live traffic ``λ``: ``N/(r - λ)``.

    ``math.inf`` when ``r <= λ``: the rebuild never catches up. The same fluid model as
    :func:`drain_time`, with the stored history as the backlog.
    """
    return drain_time(events, arrival_rate=live_rate, service_rate=rebuild_rate)


def expected_replayed_tail(interval: int) -> float:
    """Events replayed after the latest snapshot when loading an aggregate: ``(k - 1) / 2``.

    With a snapshot every ``k`` events a stream's length modulo ``k`` is, over streams of
    many lengths, uniform on ``0 … k-1``; ``interval=1`` snapshots every event (no tail).
    """
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"'interval' must be an int >= 1 (got {interval!r})")
    return (interval - 1) / 2


def _probabilities(name: str, values: Sequence[float]) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name!r} must be a sequence of probabilities (got {values!r})")
    return [_probability(f"{name}[{i}]", v) for i, v in enumerate(values)]


def _retries(retries: int) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"'retries' must be an int >= 0 (got {retries!r})")
    return retries


def retry_failure(p: float, *, retries: int) -> float:
    """Failure probability of a step retried ``r`` times on independent transient faults:
    ``p^(r+1)``."""
    return _probability("p", p) ** (_retries(retries) + 1)


def _effective(failure: Sequence[float], retries: int) -> list[float]:
    r = _retries(retries)
    return [p ** (r + 1) for p in _probabilities("failure", failure)]


def saga_success(failure: Sequence[float], *, retries: int = 0) -> float:
    """Probability that every step of a saga succeeds: ``Π (1 - pᵢ)``.

    ``failure[i]`` is step ``i``'s failure probability per attempt; with ``retries`` each
    becomes ``pᵢ^(r+1)``.
    """
    return math.prod(1 - p for p in _effective(failure, retries))


def expected_compensations(failure: Sequence[float], *, retries: int = 0) -> float:
    """Expected compensating actions per saga: ``Σᵢ Π_{j<i}(1 - pⱼ) · pᵢ · (i - 1)``.

    When step ``i`` (from 1) fails, the ``i - 1`` completed steps before it are compensated;
    a fully successful saga compensates nothing.
    """
    total, reach = 0.0, 1.0
    for i, p in enumerate(_effective(failure, retries)):
        total += reach * p * i
        reach *= 1 - p
    return total


def expected_duplicates(
    failure: Sequence[float],
    *,
    duplicate_probability: float,
    retries: int = 0,
    idempotency_keys: bool = False,
    redelivered: Literal["successful", "every"] = "successful",
) -> float:
    """Expected duplicate side effects per saga when deliveries are duplicated.

    A delivery is repeated with probability ``d``. Without idempotency keys a repeated
    delivery repeats its side effect; with keys it changes nothing (0). Which deliveries
    can repeat a side effect:

    - ``"successful"`` (default; what :class:`~esnotebook.FaultPlan` does): a failed attempt
      had no effect, so only the attempt that went through can be repeated. Step ``i``
      succeeds with probability ``Π_{j<=i}(1 - pⱼ^(r+1))``, so the answer is
      ``d · Σᵢ Π_{j<=i}(1 - pⱼ^(r+1))``.
    - ``"every"``: every attempt, failed ones included, took effect before it was reported
      as failed (a timeout after the work was done). Step ``i`` is reached with probability
      ``Π_{j<i}(1 - pⱼ^(r+1))`` and makes ``Σ_{a=0..r} pᵢ^a`` attempts on average, so the
      answer is ``d · Σᵢ reachᵢ · attemptsᵢ``.

    The two agree when no step fails: ``d`` per step.

    Examples
    --------
    >>> expected_duplicates([0.0, 0.0, 0.0], duplicate_probability=0.1)
    0.30000000000000004
    """
    d = _probability("duplicate_probability", duplicate_probability)
    probs = _probabilities("failure", failure)
    r = _retries(retries)
    if redelivered not in ("successful", "every"):
        raise ValueError(f"'redelivered' must be 'successful' or 'every' (got {redelivered!r})")
    if idempotency_keys:
        return 0.0
    total, reach = 0.0, 1.0
    for p in probs:
        if redelivered == "every":
            total += reach * sum(p**a for a in range(r + 1))
            reach *= 1 - p ** (r + 1)
        else:
            reach *= 1 - p ** (r + 1)
            total += reach
    return d * total
