"""simulate_lag: agreement with queueing theory, exact fluid behaviour in deterministic
cases, the producer and consumer options, and the result object."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esnotebook.sim import theory
from esnotebook.sim._engine import lindley, merge_pauses, serve
from esnotebook.sim.lag import simulate_lag
from esnotebook.store.memory import InMemoryEventStore

# Statistical checks: R independent replications at utilisation <= 0.8 after a warm-up of
# many relaxation times (1/(μ(1-√ρ)²) ≈ 0.9 s at ρ=0.8, μ=100). The spread of the R
# replication means measures the run-length error directly, so each check asks the theory
# to sit within 4 standard errors (a false alarm about 1 in 16,000) and, so that the check
# has teeth, that the standard error itself is below 2% of the value.
R = 8


def _agrees(result, metric: str, expected: float, *, max_rel_se: float = 0.02) -> None:
    values = result.runs[metric].to_numpy()
    mean, se = values.mean(), values.std(ddof=1) / math.sqrt(len(values))
    assert se <= max_rel_se * expected, f"{metric}: run too short, SE {se:.3g} vs {expected:.3g}"
    assert abs(mean - expected) <= 4 * se, (
        f"{metric}: {mean:.4g} vs theory {expected:.4g} (SE {se:.2g})"
    )


def _run(**kwargs):
    kwargs = {
        "duration": 1500.0,
        "warmup": 20.0,
        "replications": R,
        "seed": 7,
        "keep_events": False,
    } | kwargs
    return simulate_lag(**kwargs)


def test_mm1_latency_and_offset_lag_match_theory():
    """M/M/1 at ρ=0.8: mean latency 1/(μ-λ), mean offset lag ρ/(1-ρ), p99 latency ln100/(μ-λ)."""
    r = _run(arrival_rate=80, service_rate=100)
    q = theory.mm1(80, service_rate=100)
    _agrees(r, "mean_latency", q.mean_latency)
    _agrees(r, "mean_offset_lag", q.mean_in_system)
    _agrees(r, "p99_latency", theory.mm1_latency_quantile(0.99, arrival_rate=80, service_rate=100))
    _agrees(r, "utilisation", 0.8, max_rel_se=0.01)


def test_md1_matches_pollaczek_khinchine():
    """M/D/1 at ρ=0.8: mean latency Wq + 1/μ with Wq half of M/M/1's."""
    r = _run(arrival_rate=80, service_rate=100, service="constant")
    _agrees(r, "mean_latency", theory.md1(80, service_rate=100).mean_latency)


@pytest.mark.parametrize(("service", "cv"), [("gamma", 2.0), ("lognormal", 0.5)])
def test_mg1_matches_pollaczek_khinchine(service, cv):
    """M/G/1 at ρ=0.7 with gamma (cv 2) and lognormal (cv 0.5) service."""
    r = _run(arrival_rate=70, service_rate=100, service=service, service_cv=cv)
    _agrees(
        r,
        "mean_latency",
        theory.mg1(70, service_rate=100, service_cv=cv).mean_latency,
        max_rel_se=0.03,
    )


def test_mmc_competing_consumers_match_erlang_c():
    """Three competing consumers on one queue at ρ=0.8 match M/M/3 (Erlang C)."""
    r = _run(arrival_rate=240, service_rate=100, consumers=3, duration=500.0)
    q = theory.mmc(240, service_rate=100, servers=3)
    _agrees(r, "mean_latency", q.mean_latency)
    _agrees(r, "mean_offset_lag", q.mean_in_system)


def test_gg1_is_near_kingman():
    """Evenly spaced arrivals, gamma service cv 1.5, ρ=0.8: Kingman's approximation is an
    approximation, good to about 10% here; the waiting time must land within 10% of it."""
    r = _run(arrival_rate=80, service_rate=100, arrivals="constant", service_cv=1.5)
    k = theory.kingman(80, service_rate=100, arrival_cv=0.0, service_cv=1.5)
    mean_wait = r["mean_latency"] - 1 / 100
    assert mean_wait == pytest.approx(k.mean_wait, rel=0.10)


def test_littles_law_holds_for_a_bursty_producer():
    """L = λW with no distributional assumptions: on/off bursts, two consumers, batches."""
    r = simulate_lag(
        60,
        service_rate=50,
        arrivals="onoff",
        burst=(1.0, 1.0),
        consumers=2,
        batch_size=4,
        batch_overhead=0.002,
        duration=2000,
        warmup=10,
        seed=3,
    )
    assert r["mean_offset_lag"] == pytest.approx(r["throughput"] * r["mean_latency"], rel=0.02)


def test_overload_grows_at_lambda_minus_mu_exactly():
    """Deterministic overload λ=10, μ=8: offset lag is the fluid 2t at every sample, up to
    whole events (the one in service still counts, and counts are integers: within 2)."""
    r = simulate_lag(10, service_rate=8, arrivals="constant", service="constant", duration=100)
    ts = r.timeseries
    fluid = [theory.fluid_lag(t, arrival_rate=10, service_rate=8) for t in ts["time"]]
    assert np.max(np.abs(ts["offset_lag"].to_numpy() - np.asarray(fluid))) <= 2
    assert r["lag_trend"] == pytest.approx(2.0, rel=1e-3)
    assert r.grows_without_bound


def test_backlog_drains_in_b_over_mu_minus_lambda():
    """A backlog of 1000 with λ=5, μ=10 (deterministic) drains in 200 s, to one arrival gap."""
    r = simulate_lag(
        5, service_rate=10, arrivals="constant", service="constant", backlog=1000, duration=400
    )
    assert r["drain_time"] == pytest.approx(
        theory.drain_time(1000, arrival_rate=5, service_rate=10), abs=0.201
    )
    assert not r.grows_without_bound


def test_pause_builds_a_backlog_that_recovers_as_the_fluid_model_says():
    """A 20 s outage at λ=5 leaves 100 events; they drain in 100/(10-5) = 20 s."""
    r = simulate_lag(
        5,
        service_rate=10,
        arrivals="constant",
        service="constant",
        pauses=[(100, 20)],
        duration=400,
    )
    assert r["recovery_time"] == pytest.approx(20.0, abs=0.201)
    assert r["max_offset_lag"] == pytest.approx(100, abs=1)
    assert r["max_time_lag"] == pytest.approx(20.0, abs=0.201)


@settings(max_examples=40, deadline=None)
@given(
    rate=st.floats(0.5, 50),
    mu=st.floats(5, 100),
    consumers=st.integers(1, 3),
    batch=st.integers(1, 4),
    pause=st.tuples(st.floats(1, 20), st.floats(0.001, 2)),
    seed=st.integers(0, 999),
)
def test_recovery_time_is_the_wait_from_the_pause_end_until_nothing_is_left(
    rate, mu, consumers, batch, pause, seed
):
    """recovery_time is 0 exactly when nothing waits as the pause ends; otherwise the queue
    is first empty (everything produced is processed) recovery_time seconds later."""
    r = simulate_lag(
        rate,
        service_rate=mu,
        consumers=consumers,
        batch_size=batch,
        duration=30,
        pauses=[pause],
        seed=seed,
        progress=False,
    )
    ev = r.to_polars("events")
    arrival, done = ev["arrival"].to_numpy(), ev["done"].to_numpy()

    def waiting(t):
        return int(((arrival <= t) & (done > t)).sum())

    end = pause[0] + pause[1]
    recovery = r["recovery_time"]
    assert (recovery == 0) == (waiting(end) == 0)
    if recovery > 0:
        # The queue can only empty when an event is done: it empties at one done time and
        # at none before (within the run; inf: not drained within the run).
        drained = end + recovery
        if not math.isinf(drained):
            drained = done[np.argmin(abs(done - drained))]
            assert drained == pytest.approx(end + recovery) and waiting(drained) == 0
        assert all(waiting(t) > 0 for t in done[(done >= end) & (done < drained) & (done <= 30)])


def test_batches_with_overhead_cap_throughput_at_b_over_o_plus_b_over_mu():
    """Batches of 10 with 50 ms overhead at μ=100: capacity 10/0.15 ≈ 66.7/s; at λ=80 lag
    grows at 80-66.7 per second, at λ=50 it does not."""
    over = simulate_lag(
        80,
        service_rate=100,
        arrivals="constant",
        service="constant",
        batch_size=10,
        batch_overhead=0.05,
        duration=200,
    )
    assert over["lag_trend"] == pytest.approx(80 - 10 / 0.15, rel=1e-3)
    assert over.grows_without_bound
    under = simulate_lag(
        50,
        service_rate=100,
        arrivals="constant",
        service="constant",
        batch_size=10,
        batch_overhead=0.05,
        duration=200,
    )
    assert not under.grows_without_bound
    assert under["max_offset_lag"] < 20


def test_group_throughput_is_capped_by_min_consumers_partitions():
    """Four consumers on two partitions process at most 2μ; extra consumers stay idle."""
    r = simulate_lag(
        300,
        service_rate=100,
        arrivals="constant",
        service="constant",
        consumers=4,
        partitions=2,
        duration=200,
    )
    assert r["throughput"] == pytest.approx(200, rel=0.01)
    assert r.grows_without_bound
    ok = simulate_lag(150, service_rate=100, consumers=4, partitions=2, duration=300, seed=1)
    assert not ok.grows_without_bound
    assert ok["utilisation"] == pytest.approx(0.75, rel=0.03)


def test_uneven_partition_assignment_saturates_the_busiest_consumer():
    """Three partitions on two consumers: one consumer reads 2/3 of the traffic, so the
    group saturates at λ = 1.5 μ, not 2 μ."""
    r = simulate_lag(160, service_rate=100, consumers=2, partitions=3, duration=200, seed=1)
    assert r.grows_without_bound
    assert r["offered_load"] == pytest.approx(160 / 150)


def test_schedule_burst_builds_and_drains_lag():
    """Rate 50/s, a 50 s burst at 200/s, back to 50/s, μ=100: lag peaks near (200-100)·50
    = 5000 at the end of the burst (Poisson noise: sd ≈ 100) and is gone 100 s later."""
    r = simulate_lag(
        [(0, 50), (100, 200), (150, 50)],
        service_rate=100,
        duration=400,
        sample_interval=1.0,
        seed=2,
    )
    ts = r.timeseries
    at = dict(zip(ts["time"].to_list(), ts["offset_lag"].to_list()))
    assert at[150.0] == pytest.approx(5000, abs=500)
    assert at[90.0] < 50
    assert at[270.0] < 50
    assert not r.grows_without_bound


def test_onoff_and_mmpp_keep_their_mean_rate():
    """On/off bursts keep the requested mean rate; an MMPP's is Σ rate·hold / Σ hold."""
    onoff = simulate_lag(
        40, service_rate=100, arrivals="onoff", burst=(0.5, 2.0), duration=4000, seed=4
    )
    assert onoff["events"] / 4000 == pytest.approx(40, rel=0.05)
    mmpp = simulate_lag(
        arrivals="mmpp", states=[(10, 1.0), (100, 0.5)], service_rate=200, duration=4000, seed=4
    )
    assert mmpp["events"] / 4000 == pytest.approx((10 * 1 + 100 * 0.5) / 1.5, rel=0.05)


def test_n_events_produces_exactly_that_many():
    r = simulate_lag(
        arrivals="mmpp", states=[(5, 1.0), (50, 1.0)], service_rate=100, n_events=5000, seed=1
    )
    assert r["events"] == 5000


def _store_with_times(times):
    clock_times = iter(times)
    store = InMemoryEventStore(clock=lambda: next(clock_times))
    from esnotebook.events import NewEvent

    for i in range(len(times)):
        store.append(f"order-{i}", [NewEvent("OrderPlaced", {"order_id": str(i), "customer": "c"})])
    return store


def test_recorded_timestamps_replay_the_store_arrivals():
    """A store's recorded_at times are the arrivals, in seconds from the first event; the
    same answer comes from the store, its frame and its recorded_at Series."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    offsets = [0.0, 0.5, 0.5, 1.25, 3.0, 3.0, 3.1, 7.5]
    store = _store_with_times([t0 + timedelta(seconds=s) for s in offsets])
    by_store = simulate_lag(timestamps=store, service_rate=2.0, service="constant")
    assert by_store.to_polars("events")["arrival"].to_list() == offsets
    assert by_store.settings["arrival_rate"] == pytest.approx(len(offsets) / 7.5)
    frame = store.to_polars()
    by_frame = simulate_lag(timestamps=frame, service_rate=2.0, service="constant")
    by_series = simulate_lag(timestamps=frame["recorded_at"], service_rate=2.0, service="constant")
    assert by_frame.runs.equals(by_store.runs) and by_series.runs.equals(by_store.runs)
    # constant 0.5 s service: events 2 and 3 (both at 0.5) wait for each other
    assert by_store.to_polars("events")["done"].to_list()[:4] == [0.5, 1.0, 1.5, 2.0]


def test_same_seed_same_result_and_different_seed_differs():
    kwargs = {
        "service_rate": 100,
        "arrivals": "onoff",
        "consumers": 2,
        "batch_size": 3,
        "duration": 50,
        "replications": 2,
    }
    a, b = simulate_lag(70, seed=5, **kwargs), simulate_lag(70, seed=5, **kwargs)
    assert a.runs.equals(b.runs) and a.timeseries.equals(b.timeseries)
    assert not simulate_lag(70, seed=6, **kwargs).runs.equals(a.runs)


def test_replications_give_a_confidence_interval_around_the_mean():
    r = simulate_lag(50, service_rate=100, duration=200, replications=5, seed=1)
    row = r.summary().filter(pl.col("metric") == "mean_latency").row(0, named=True)
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    assert row["mean"] == pytest.approx(r.runs["mean_latency"].mean())
    single = simulate_lag(50, service_rate=100, duration=200, seed=1).summary()
    assert single.filter(pl.col("metric") == "mean_latency")["ci_low"].is_nan().all()


def test_warmup_removes_the_initial_backlog_from_the_summary():
    """A backlog cleared within the warm-up does not count in the lag summary."""
    kwargs = {"service_rate": 100, "backlog": 500, "duration": 300, "seed": 1}
    cold = simulate_lag(50, **kwargs)
    warm = simulate_lag(50, warmup=50, **kwargs)
    assert cold["max_offset_lag"] >= 500
    assert warm["max_offset_lag"] < 50


@settings(max_examples=40, deadline=None)
@given(gaps=st.lists(st.floats(0, 5), min_size=1, max_size=60), seed=st.integers(0, 99))
def test_lindley_vectorised_equals_the_recursion(gaps, seed):
    """D[n] = max(A[n], D[n-1]) + S[n], computed without a loop, equals the loop."""
    a = np.cumsum(gaps)
    s = np.random.default_rng(seed).exponential(1.0, len(a))
    d, prev = [], 0.0
    for ai, si in zip(a, s):
        prev = max(ai, prev) + si
        d.append(prev)
    np.testing.assert_allclose(lindley(a, s), d, rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.floats(0, 3), min_size=1, max_size=60),
    servers=st.integers(1, 4),
    seed=st.integers(0, 99),
)
def test_competing_consumers_engine_equals_a_naive_fifo(gaps, servers, seed):
    """The batch engine with batch 1 gives each event to the earliest-free consumer, FIFO."""
    a = np.cumsum(gaps)
    s = np.random.default_rng(seed).exponential(1.0, len(a))
    free = [0.0] * servers
    expected = []
    for ai, si in zip(a, s):
        k = int(np.argmin(free))
        free[k] = max(ai, free[k]) + si
        expected.append(free[k])
    np.testing.assert_allclose(serve(a, s, servers=servers).done, expected, rtol=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    rate=st.floats(1, 200),
    mu=st.floats(1, 200),
    consumers=st.integers(1, 3),
    batch=st.integers(1, 5),
    seed=st.integers(0, 999),
)
def test_lags_are_never_negative_and_events_finish_after_they_arrive(
    rate, mu, consumers, batch, seed
):
    r = simulate_lag(
        rate,
        service_rate=mu,
        consumers=consumers,
        batch_size=batch,
        n_events=300,
        pauses=[(0.5, 0.3)],
        seed=seed,
    )
    ts, ev = r.timeseries, r.to_polars("events")
    assert (ts["offset_lag"] >= 0).all() and (ts["time_lag"] >= 0).all()
    assert (ts["processed"] <= ts["produced"]).all()
    assert (ev["latency"] > 0).all()
    assert r["max_time_lag"] >= r["p99_time_lag"]


def test_pauses_merge_and_bad_pauses_are_refused():
    assert merge_pauses([(5, 2), (1, 1), (6, 3)]) == ([1.0, 5.0], [2.0, 9.0])
    with pytest.raises(ValueError, match=r"'pauses\[0\]' needs start_time >= 0 and duration > 0"):
        simulate_lag(10, service_rate=20, duration=10, pauses=[(1, 0)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"arrival_rate": 10, "service_rate": -1, "duration": 10},
            "'service_rate' must be a finite number > 0 (got -1)",
        ),
        (
            {"arrival_rate": -5, "service_rate": 1, "duration": 10},
            "'arrival_rate' must be a finite number > 0 (got -5)",
        ),
        ({"arrival_rate": 10, "service_rate": 1}, "exactly one of 'duration'"),
        ({"arrival_rate": [(5, 1)], "service_rate": 1, "duration": 10}, "must begin at 0"),
        (
            {"arrival_rate": 10, "service_rate": 1, "duration": 10, "warmup": 10},
            "'warmup' must be shorter than the run",
        ),
        (
            {"arrival_rate": 10, "service_rate": 1, "duration": 10, "consumers": 0},
            "'consumers' must be an int >= 1 (got 0)",
        ),
        (
            {"arrival_rate": 10, "service_rate": 1, "duration": 10, "service": "gamma"},
            "needs 'service_cv'",
        ),
        (
            {
                "arrival_rate": 10,
                "service_rate": 1,
                "duration": 10,
                "service": "constant",
                "service_cv": 2.0,
            },
            "use service='gamma'",
        ),
        (
            {"arrival_rate": 10, "service_rate": 1, "duration": 10, "arrivals": "weekly"},
            "'arrivals' must be one of",
        ),
        ({"service_rate": 1, "duration": 10, "arrivals": "mmpp"}, "needs 'states'"),
        ({"arrival_rate": 10, "service_rate": 1, "timestamps": pl.Series([1, 2])}, "timestamps"),
        (
            {"arrival_rate": 0.001, "service_rate": 1, "duration": 1, "seed": 0},
            "made no events in 1 s",
        ),
    ],
)
def test_bad_arguments_are_named_with_what_was_expected(kwargs, message):
    with pytest.raises(ValueError) as info:
        simulate_lag(**kwargs)
    assert message in str(info.value)


def test_result_views_html_and_plot():
    """Every view is a frame (pandas too), the HTML is compact and escaped, the plot has units."""
    import matplotlib

    matplotlib.use("Agg")
    r = simulate_lag(90, service_rate=100, duration=60, replications=2, seed=1)
    for view in ("timeseries", "summary", "runs", "events"):
        assert isinstance(r.to_polars(view), pl.DataFrame)
        assert len(r.to_pandas(view)) == r.to_polars(view).height
    assert r.to_polars("events").height == r.runs["events"].sum()
    html = r._repr_html_()
    assert "p99_time_lag" in html and len(html) < 3000 and "<script" not in html
    ax = r.plot()
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel() == "offset lag (events)"
    assert ax.right_ax.get_ylabel() == "time lag (s)"
    with pytest.raises(KeyError, match="no metric 'p42'"):
        r["p42"]


def test_constant_schedule_places_exactly_rate_times_length_events_per_segment():
    """Evenly spaced arrivals under a schedule with a silent segment: 100, 0 and 50 events."""
    r = simulate_lag(
        [(0, 10), (10, 0), (20, 5)], arrivals="constant", service_rate=100, duration=30
    )
    arrival = r.to_polars("events")["arrival"].to_numpy()
    counts = np.histogram(arrival, bins=[0, 10 + 1e-9, 20 + 1e-9, 30 + 1e-9])[0]
    assert counts.tolist() == [100, 0, 50]


def test_backlog_that_never_drains_reports_infinity():
    """Overloaded with a backlog: the consumer never catches up within the run."""
    r = simulate_lag(
        10, service_rate=8, arrivals="constant", service="constant", backlog=50, duration=100
    )
    assert r["drain_time"] == math.inf


def test_import_is_light_and_the_namespace_is_curated():
    """`import esnotebook.sim` loads no plotting, stats, progress, SimPy or Dask module, and
    its __all__ is sorted and complete."""
    import subprocess
    import sys

    code = (
        "import sys, esnotebook.sim as sim\n"
        "heavy = [m for m in ('matplotlib', 'scipy', 'tqdm', 'simpy', 'dask', 'IPython') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert sim.__all__ == sorted(sim.__all__)\n"
        "assert all(hasattr(sim, n) for n in sim.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
