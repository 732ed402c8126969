"""ServiceProfile and measure_consumer: what a real runner costs, and simulate_lag with it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import esnotebook as es
from esnotebook.readmodels import OrderSummary, OrderSummaryFrame
from esnotebook.sim import ServiceProfile, measure_consumer, simulate_lag, theory
from esnotebook.sim._engine import serve
from esnotebook.sim.profile import order_events

# The same statistical check as tests/test_sim_lag.py: R replications, the theory within
# 4 standard errors of their mean, the standard error itself below 3% of the value.
R = 8


def _agrees(result, metric: str, expected: float, *, max_rel_se: float = 0.03) -> None:
    values = result.runs[metric].to_numpy()
    mean, se = values.mean(), values.std(ddof=1) / math.sqrt(len(values))
    assert se <= max_rel_se * expected, f"{metric}: run too short, SE {se:.3g} vs {expected:.3g}"
    assert abs(mean - expected) <= 4 * se, f"{metric}: {mean:.4g} vs theory {expected:.4g}"


def _exponential_profile(mean_single: float, *, per_event: float = 0.0, n: int = 20_000):
    """A profile whose one-event steps are exponential with mean ``mean_single``."""
    overheads = np.random.default_rng(3).exponential(mean_single - per_event, n)
    return ServiceProfile(
        mean=per_event, cv=1.0, batch_overhead=float(overheads.mean()), overheads=overheads
    )


def test_profile_at_batch_size_one_is_mg1_with_the_measured_steps():
    """At batch_size=1 an event's service time is its batch's drawn overhead plus the
    per-event cost: exponential overheads (mean 8 ms) plus 2 ms make an M/G/1 queue with
    cv 0.8, checked by Pollaczek-Khinchine at ρ=0.7."""
    p = _exponential_profile(0.01, per_event=0.002)
    r = simulate_lag(70, service=p, duration=1500, warmup=20, replications=R, seed=5,
                     keep_events=False)  # fmt: skip
    cv = float(p.overheads.std() / p.single)
    q = theory.mg1(70, service_rate=1 / p.single, service_cv=cv)
    _agrees(r, "mean_latency", q.mean_latency)
    _agrees(r, "utilisation", 70 * p.single)


def test_profile_reproduces_mean_service_time_and_cv():
    """Busy time per event is the profile's mean one-event step, and latencies of a
    lightly loaded consumer have the steps' coefficient of variation."""
    p = _exponential_profile(0.004)
    r = simulate_lag(5, service=p, duration=4000, seed=2)
    a, d = r.events[0]
    service = d - a  # at ρ=0.02 nearly every event finds the consumer idle
    assert service.mean() == pytest.approx(p.single, rel=0.05)
    assert service.std() / service.mean() == pytest.approx(1.0, abs=0.1)


def test_batches_pay_one_drawn_overhead_plus_the_per_event_cost():
    """Full batches: capacity is batch_size / (batch_overhead + batch_size * mean)."""
    p = ServiceProfile(mean=0.001, cv=0.0, batch_overhead=0.009, overheads=np.full(10, 0.009))
    r = simulate_lag(arrival_rate=[(0, 2000)], service=p, batch_size=10, duration=20, seed=0)
    assert r["throughput"] == pytest.approx(p.rate(10), rel=0.01)
    assert r.settings["capacity"] == pytest.approx(10 / 0.019)


def test_behind_cost_is_paid_only_when_events_are_waiting():
    """Two events at once: the first batch ends with the second waiting, so the consumer
    spends `behind` more before it; an event alone pays no such cost."""
    out = serve(np.array([0.0, 0.0, 10.0]), np.full(3, 1.0), behind=0.5)
    assert out.done.tolist() == [1.0, 2.5, 11.0]


def test_fixed_cost_grows_with_the_reads_of_fresh_appends():
    """growth: each batch's fixed cost grows by `growth` per earlier read of fresh appends
    (an in-memory store's frame gains a chunk per such read)."""
    out = serve(np.array([0.0, 10.0]), np.full(2, 1.0), overhead=0.5, growth=0.01, reads=100)
    # batch 1: after 100 reads; batch 2: after 101 (batch 1 read a fresh event).
    assert out.done.tolist() == pytest.approx([1.5 + 1.0, 10 + 1.5 + 1.01])


def test_profile_at_and_scaled():
    p = ServiceProfile(mean=0.001, cv=0.3, batch_overhead=0.004, growth=1e-5,
                       overheads=np.array([0.003, 0.005]))  # fmt: skip
    assert p.at(100).rate() == pytest.approx(1 / (0.004 + 0.001 + 1e-3))
    doubled = p.scaled(2.0)
    assert doubled.rate() == pytest.approx(p.rate() / 2)
    assert doubled.overheads.tolist() == [0.006, 0.010]


def test_measure_consumer_times_a_store_with_enough_events_and_leaves_it_alone():
    store = es.InMemoryEventStore()
    for stream_id, event in order_events(120, seed=1):
        store.append(stream_id, [event])
    p = measure_consumer(store, OrderSummary(), events=100, batch_size=5)
    assert p.source == "store"
    assert store.head_position == 120
    assert p.batch_overhead > 0 and p.single > 0
    assert set(p.by_type["event_type"]) <= set(store.scan().collect()["event_type"])
    assert p.growth == 0.0  # a full store does not grow while timed


@pytest.mark.parametrize("kind", ["memory", "parquet"])
def test_measure_consumer_generates_events_in_a_scratch_store(kind, tmp_path):
    """Too few events, or appends='between': generated order events in a scratch store
    of the same kind; the user's store is never written to."""
    store = es.InMemoryEventStore() if kind == "memory" else es.ParquetEventStore(tmp_path / "s")
    p = measure_consumer(store, OrderSummary(), events=80, appends="between")
    assert p.source == "generated"
    assert store.head_position == 0
    assert p.single > 0 and p.append_cost > 0 and p.cv > 0
    if kind == "parquet":
        assert list((tmp_path / "s" / "events").glob("*")) == []


def test_a_vectorised_projection_costs_more_per_step_than_per_event():
    """The vectorised form pays a polars query per step: its fixed cost dominates."""
    p = measure_consumer(es.InMemoryEventStore(), OrderSummaryFrame(), events=60, batch_size=10)
    assert p.batch_overhead > 3 * p.mean


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"events": 10}, "'events' must be an int >= 20 (got 10)"),
        ({"batch_size": 0}, "'batch_size' must be an int >= 1 (got 0)"),
        ({"appends": "during"}, "'appends' must be 'before' or 'between' (got 'during')"),
        ({"timer": "gpu"}, "'timer' must be 'wall' or 'cpu' (got 'gpu')"),
        (
            {"appends": "between", "events": 50},
            "'events' must be >= 72 for appends='between' with batch_size=10: three rounds",
        ),
        ({"target": "disk"}, "'target' must be 'memory' or 'parquet' (got 'disk')"),
    ],
)
def test_measure_consumer_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        measure_consumer(es.InMemoryEventStore(), OrderSummary(), **kwargs)


def test_measure_consumer_needs_a_store():
    with pytest.raises(TypeError, match="'store' must be an esnotebook event store"):
        measure_consumer([1, 2], OrderSummary())


def test_simulate_lag_with_a_profile_refuses_a_second_service_time():
    p = ServiceProfile(mean=0.001, cv=0.0, batch_overhead=0.001)
    with pytest.raises(ValueError, match="leave 'service_rate' unset"):
        simulate_lag(10, service=p, service_rate=100, duration=10)
    with pytest.raises(ValueError, match="leave 'batch_overhead' unset"):
        simulate_lag(10, service=p, batch_overhead=0.01, duration=10)
    with pytest.raises(ValueError, match="needs 'service_rate'"):
        simulate_lag(10, duration=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mean": -1.0}, "'mean' must be a finite number >= 0 (got -1.0)"),
        ({"batch_overhead": math.inf}, "'batch_overhead' must be a finite number >= 0"),
        ({"mean": 0.0, "batch_overhead": 0.0}, "needs 'mean' or 'batch_overhead' > 0"),
    ],
)
def test_service_profile_bad_values(kwargs, message):
    values = {"mean": 0.001, "cv": 0.1, "batch_overhead": 0.001} | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ServiceProfile(**values)


def test_overheads_drawn_in_blocks_keep_consecutive_measurements_together():
    p = ServiceProfile(mean=0.0, cv=1.0, batch_overhead=5.0, overheads=np.arange(10.0), block=4)
    drawn = p.draw_overheads(12, np.random.default_rng(0))
    runs = drawn.reshape(3, 4)
    assert np.all((np.diff(runs, axis=1) == 1) | (np.diff(runs, axis=1) == -9))  # wraps at 10
