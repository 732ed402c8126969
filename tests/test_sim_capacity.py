"""required_capacity: the smallest consumer rate or count meeting a lag target."""

from __future__ import annotations

import re

import polars as pl
import pytest

from esnotebook.sim import capacity, theory
from esnotebook.sim.capacity import required_capacity, wilson_interval
from esnotebook.sim.lag import simulate_lag

BURST = [(0, 50), (100, 200), (150, 50)]


def test_deterministic_burst_needs_the_fluid_rate():
    """A 50 s burst at 200/s over a 50/s base with constant service: the max offset lag is
    (200 - μ)·50, so a target of 2000 events needs μ = 160/s (to the 1% tolerance)."""
    r = required_capacity(
        BURST,
        target_max_offset_lag=2000,
        arrivals="constant",
        service="constant",
        duration=300,
        replications=1,
    )
    assert r.value == pytest.approx(160, rel=0.011)
    assert r.value >= 160 * 0.999  # never below what the fluid model needs
    assert r.fraction_meeting == 1.0
    check = simulate_lag(
        BURST, service_rate=r.value, arrivals="constant", service="constant", duration=300
    )
    assert check["max_offset_lag"] <= 2000


def test_found_rate_meets_the_target_and_a_slightly_lower_one_does_not():
    """Bisection brackets the answer: the trace has a failing rate within tolerance below it."""
    r = required_capacity(
        100,
        target_p99_time_lag=0.2,
        duration=300,
        replications=8,
        meet_fraction=0.9,
        tolerance=0.01,
        seed=3,
    )
    trace = r.to_polars()
    assert trace.filter(pl.col("service_rate") == r.value)["meets"].item()
    below = trace.filter(pl.col("service_rate") < r.value)
    assert not below["meets"].any()
    assert below["service_rate"].max() >= r.value * 0.99 - 1e-9
    assert r.fraction_meeting >= 0.9
    # M/M/1 sense check: the p99 latency bound ln100/(μ-λ) at the found rate is of the target's order
    assert 0.05 < theory.mm1_latency_quantile(0.99, arrival_rate=100, service_rate=r.value) < 1.0


def test_consumer_count_is_the_smallest_that_meets_the_target():
    """λ=450, μ=100 per consumer: 5 consumers are needed for stability; the answer is the
    smallest count whose replications meet the target, and one fewer fails."""
    r = required_capacity(
        450,
        target_p99_time_lag=0.1,
        vary="consumers",
        service_rate=100,
        duration=100,
        replications=5,
        seed=1,
    )
    assert r.value >= 5
    trace = r.to_polars()
    assert trace.filter(pl.col("consumers") == r.value)["meets"].item()
    assert not trace.filter(pl.col("consumers") == r.value - 1)["meets"].item()


def test_consumers_beyond_the_partition_count_are_not_offered_as_an_answer():
    """Two partitions cap the group at 2μ = 200/s; λ=300 cannot be met by any count."""
    with pytest.raises(ValueError, match="up to the 2 partitions"):
        required_capacity(
            300,
            target_p99_time_lag=1.0,
            vary="consumers",
            service_rate=100,
            partitions=2,
            duration=50,
            replications=2,
        )


@pytest.mark.parametrize(
    "search", [{"vary": "service_rate"}, {"vary": "consumers", "service_rate": 100}]
)
def test_an_unreachable_target_fails_at_once_saying_why_and_what_is_reachable(
    search, monkeypatch
):
    """A backlog of 100 events at time 0 is an offset lag of 100 however fast or many the
    consumers: a target of 50 is refused after two candidates (the first and the most that
    can help), naming the backlog and the reachable targets."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return simulate_lag(*args, **kwargs)

    monkeypatch.setattr(capacity, "simulate_lag", counted)
    with pytest.raises(ValueError) as info:
        required_capacity(
            100, target_max_offset_lag=50, backlog=100, duration=50, replications=3, **search
        )
    message = str(info.value)
    assert message.startswith("max_offset_lag <= 50 cannot be met by any ")
    assert "the backlog at the start (backlog=100)" in message
    assert "targets from about 100 events on are reachable" in message
    assert len(calls) <= 2


def test_a_lag_below_the_service_time_needs_no_consumer_search_and_the_offer_holds():
    """Constant service of 0.01 s: even with a consumer free for every event the time lag
    reaches nearly 0.01 s, so a 0.005 s target is refused naming the service time; the
    target the error offers is then met."""
    day = {"arrivals": "constant", "service": "constant", "duration": 50, "replications": 1}
    with pytest.raises(ValueError, match="the service time \\(mean 0.01 s per event\\)") as info:
        required_capacity(
            50, target_p99_time_lag=0.005, vary="consumers", service_rate=100, **day
        )
    offered = float(re.search(r"targets from about ([0-9.e-]+) s", str(info.value)).group(1))
    assert 0.005 < offered <= 0.01
    r = required_capacity(
        50, target_p99_time_lag=offered * 1.001, vary="consumers", service_rate=100, **day
    )
    assert r.value == 1


def test_result_says_how_sure_it_is():
    r = required_capacity(50, target_p99_time_lag=0.5, duration=100, replications=10, seed=2)
    low, high = r.fraction_ci
    assert 0 <= low <= r.fraction_meeting <= high <= 1
    assert r.metric_mean <= 0.5 or r.fraction_meeting < 1
    html = r._repr_html_()
    assert "required service_rate" in html and "&lt;" not in html.replace("&lt;b", "")
    assert r.to_pandas().shape[0] == r.to_polars().height
    assert r.to_dict()["value"] == r.value


def test_wilson_interval_bounds():
    """The Wilson interval stays inside [0, 1] and is not degenerate at 0 or n successes."""
    low, high = wilson_interval(10, 10, 0.95)
    assert high == pytest.approx(1.0) and 0.6 < low < 0.75
    low, high = wilson_interval(0, 10, 0.95)
    assert low == pytest.approx(0.0, abs=1e-12) and 0.25 < high < 0.35


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give exactly one target"),
        ({"target_p99_time_lag": 1, "target_max_offset_lag": 5}, "give exactly one target"),
        ({"target_p99_time_lag": -1}, "the target must be a number > 0 (got -1)"),
        ({"target_p99_time_lag": 1, "vary": "consumers"}, "needs 'service_rate'"),
        (
            {"target_p99_time_lag": 1, "vary": "partitions"},
            "'vary' must be 'service_rate' or 'consumers'",
        ),
        (
            {"target_p99_time_lag": 1, "replications": 3, "seed": 1, "keep_events": True},
            "'keep_events' is set by",
        ),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError) as info:
        required_capacity(10, duration=10, **kwargs)
    assert message in str(info.value)
