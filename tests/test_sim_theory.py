"""The closed forms in esnotebook.sim.theory: known values, the identities that tie them
together, and Monte Carlo checks of the saga and snapshot formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esnotebook.sim import theory

rates = st.floats(0.01, 1000)
loads = st.floats(0.01, 0.99)
probs = st.lists(st.floats(0, 1), min_size=1, max_size=6)


def test_mm1_textbook_values():
    """M/M/1 at λ=80, μ=100: ρ=0.8, W=1/(μ-λ)=0.05 s, L=ρ/(1-ρ)=4, Wq=ρ/(μ-λ)=0.04 s."""
    q = theory.mm1(80, service_rate=100)
    assert q.utilisation == pytest.approx(0.8)
    assert q.mean_latency == pytest.approx(0.05)
    assert q.mean_wait == pytest.approx(0.04)
    assert q.mean_in_system == pytest.approx(4.0)
    assert q.mean_queue == pytest.approx(3.2)


@given(rho=loads, mu=rates)
def test_md1_waits_half_as_long_as_mm1(rho, mu):
    """Constant service halves the Pollaczek-Khinchine queueing delay of exponential service."""
    assert theory.md1(rho * mu, service_rate=mu).mean_wait == pytest.approx(
        theory.mm1(rho * mu, service_rate=mu).mean_wait / 2
    )


@given(rho=loads, mu=rates, cs=st.floats(0, 5))
def test_kingman_with_poisson_arrivals_is_pollaczek_khinchine(rho, mu, cs):
    """With ca=1 Kingman's formula reduces exactly to Pollaczek-Khinchine (and to M/M/1 at cs=1)."""
    k = theory.kingman(rho * mu, service_rate=mu, arrival_cv=1.0, service_cv=cs)
    assert k.mean_wait == pytest.approx(
        theory.mg1(rho * mu, service_rate=mu, service_cv=cs).mean_wait
    )


@given(rho=loads, mu=rates, cs1=st.floats(0, 3), cs2=st.floats(0, 3))
def test_mg1_wait_grows_with_service_variability(rho, mu, cs1, cs2):
    """More variable service means longer waits at the same load."""
    lo, hi = sorted([cs1, cs2])
    assert (
        theory.mg1(rho * mu, service_rate=mu, service_cv=lo).mean_wait
        <= theory.mg1(rho * mu, service_rate=mu, service_cv=hi).mean_wait
    )


def _erlang_c_direct(c: int, a: float) -> float:
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@given(c=st.integers(1, 30), frac=loads)
def test_erlang_c_matches_the_textbook_sum(c, frac):
    """The stable Erlang-B recursion gives the same C(c, a) as the factorial formula."""
    a = frac * c
    assert theory.erlang_c(a, servers=c) == pytest.approx(
        _erlang_c_direct(c, a), rel=1e-9, abs=1e-12
    )


def test_erlang_c_known_value_and_mmc_with_one_server_is_mm1():
    """C(2, 1) = 1/3; M/M/c with c=1 is M/M/1 (C(1, ρ) = ρ)."""
    assert theory.erlang_c(1.0, servers=2) == pytest.approx(1 / 3)
    assert theory.mmc(50, service_rate=100, servers=1).mean_latency == pytest.approx(
        theory.mm1(50, service_rate=100).mean_latency
    )


@given(lam=st.floats(1, 100), c=st.integers(2, 10))
def test_more_consumers_never_wait_longer(lam, c):
    """Adding a competing consumer (same per-consumer rate) never raises M/M/c's wait."""
    mu = lam / (c - 1) * 1.01
    assert (
        theory.mmc(lam, service_rate=mu, servers=c).mean_wait
        <= theory.mmc(lam, service_rate=mu, servers=c - 1).mean_wait
    )


def test_overloaded_queues_have_no_steady_state():
    """At utilisation >= 1 the mean waits are infinite, not a negative number."""
    assert theory.mm1(100, service_rate=100).mean_latency == math.inf
    assert theory.mmc(300, service_rate=100, servers=2).mean_wait == math.inf
    assert theory.kingman(2, service_rate=1, arrival_cv=1, service_cv=1).mean_wait == math.inf
    assert theory.erlang_c(3.0, servers=2) == 1.0


def test_mm1_latency_quantile_is_exponential():
    """M/M/1 latency is exponential with rate μ-λ: median ln2/(μ-λ), p99 ln100/(μ-λ)."""
    assert theory.mm1_latency_quantile(0.5, arrival_rate=80, service_rate=100) == pytest.approx(
        math.log(2) / 20
    )
    assert theory.mm1_latency_quantile(0.99, arrival_rate=80, service_rate=100) == pytest.approx(
        math.log(100) / 20
    )


@given(lam=rates, w=st.floats(0.001, 100))
def test_little_solves_for_the_missing_quantity(lam, w):
    """L = λW, and each of the three comes back from the other two."""
    n = theory.little(arrival_rate=lam, mean_time=w)
    assert n == pytest.approx(lam * w)
    assert theory.little(arrival_rate=lam, mean_number=n) == pytest.approx(w)
    assert theory.little(mean_time=w, mean_number=n) == pytest.approx(lam)


@given(b=st.floats(1, 1e6), lam=st.floats(0, 100), extra=st.floats(0.1, 100))
def test_fluid_backlog_reaches_zero_exactly_at_drain_time(b, lam, extra):
    """Fluid model: lag B + (λ-μ)t hits 0 at t = B/(μ-λ), the drain time."""
    mu = lam + extra
    t = theory.drain_time(b, arrival_rate=lam, service_rate=mu)
    assert t == pytest.approx(b / extra)
    assert theory.fluid_lag(t, arrival_rate=lam, service_rate=mu, backlog=b) == pytest.approx(
        0, abs=1e-6 * b
    )
    assert theory.fluid_lag(t / 2, arrival_rate=lam, service_rate=mu, backlog=b) == pytest.approx(
        b / 2
    )


def test_fluid_overload_grows_at_lambda_minus_mu_and_never_drains():
    """Overload: lag grows at λ-μ per second; a backlog never drains."""
    assert theory.fluid_lag(10, arrival_rate=120, service_rate=100) == pytest.approx(200)
    assert theory.drain_time(10, arrival_rate=100, service_rate=100) == math.inf


def test_rebuild_catches_up_in_n_over_r_minus_lambda_or_never():
    """A rebuild of N events at r/s under live traffic λ takes N/(r-λ); never when r <= λ."""
    assert theory.rebuild_time(1_000_000, rebuild_rate=50_000, live_rate=10_000) == pytest.approx(
        25.0
    )
    assert theory.rebuild_time(1_000_000, rebuild_rate=50_000) == pytest.approx(20.0)
    assert theory.rebuild_time(10, rebuild_rate=5, live_rate=5) == math.inf


@given(k=st.integers(1, 200), cycles=st.integers(1, 5))
def test_replayed_tail_is_the_mean_of_length_mod_interval(k, cycles):
    """Over streams of every length in whole snapshot cycles, the mean tail is (k-1)/2."""
    lengths = np.arange(1, k * cycles + 1)
    assert np.mean(lengths % k) == pytest.approx(theory.expected_replayed_tail(k))


def test_retries_turn_p_into_p_to_the_r_plus_one():
    assert theory.retry_failure(0.1, retries=2) == pytest.approx(0.001)
    assert theory.retry_failure(0.3, retries=0) == pytest.approx(0.3)


def _monte_carlo_sagas(p, retries, dup, n, seed):
    """Independent attempts; step i runs only if every earlier step succeeded."""
    rng = np.random.default_rng(seed)
    p = np.asarray(p)
    fails = rng.random((n, len(p), retries + 1)) < p[None, :, None]
    step_failed = fails.all(axis=2)
    # attempts made on a step: up to and including the first success, at most r+1
    first_ok = np.where(fails.all(axis=2), retries + 1, np.argmin(fails, axis=2) + 1)
    reached = np.concatenate(
        [np.ones((n, 1), bool), np.cumprod(~step_failed, axis=1)[:, :-1].astype(bool)], axis=1
    )
    success = (~step_failed).all(axis=1)
    first_fail = np.where(success, len(p), np.argmax(step_failed, axis=1))
    compensations = np.where(success, 0, first_fail)
    attempts = (first_ok * reached).sum(axis=1)
    duplicates = rng.binomial(attempts, dup)
    return success, compensations, duplicates


@settings(max_examples=15, deadline=None)
@given(
    p=st.lists(st.floats(0, 0.6), min_size=1, max_size=5),
    retries=st.integers(0, 2),
    seed=st.integers(0, 1000),
)
def test_saga_closed_forms_agree_with_monte_carlo(p, retries, seed):
    """Success Π(1-pᵢ^(r+1)), compensations and duplicates match 40k simulated sagas within
    5 standard errors (the SE of a mean of 40k independent sagas)."""
    n = 40_000
    success, comp, dup = _monte_carlo_sagas(p, retries, 0.1, n, seed)
    for sample, expected in (
        (success, theory.saga_success(p, retries=retries)),
        (comp, theory.expected_compensations(p, retries=retries)),
        (
            dup,
            theory.expected_duplicates(
                p, duplicate_probability=0.1, retries=retries, redelivered="every"
            ),
        ),
    ):
        se = max(sample.std() / math.sqrt(n), 1e-3)
        assert abs(sample.mean() - expected) <= 5 * se


def test_idempotency_keys_remove_duplicate_side_effects():
    assert (
        theory.expected_duplicates([0.1, 0.2], duplicate_probability=0.3, idempotency_keys=True)
        == 0
    )
    assert theory.expected_duplicates([0.0, 0.0], duplicate_probability=0.3) == pytest.approx(0.6)


def test_saga_known_values():
    """Three steps at 10%: success 0.729; compensations 0.9·0.1·1 + 0.81·0.1·2."""
    assert theory.saga_success([0.1] * 3) == pytest.approx(0.729)
    assert theory.expected_compensations([0.1] * 3) == pytest.approx(0.09 + 0.162)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: theory.mm1(80, service_rate=0), "'service_rate' must be a number > 0 (got 0)"),
        (lambda: theory.mm1(-1, service_rate=10), "'arrival_rate' must be a number >= 0 (got -1)"),
        (lambda: theory.mmc(1, service_rate=2, servers=0), "'servers' must be an int >= 1 (got 0)"),
        (lambda: theory.little(arrival_rate=1), "exactly two"),
        (
            lambda: theory.saga_success([0.5, 1.5]),
            "'failure[1]' must be a probability in [0, 1] (got 1.5)",
        ),
        (lambda: theory.expected_replayed_tail(0), "'interval' must be an int >= 1 (got 0)"),
        (lambda: theory.retry_failure(0.1, retries=-1), "'retries' must be an int >= 0 (got -1)"),
    ],
)
def test_bad_input_names_the_argument_and_the_value(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)
