"""Saga Monte Carlo (esnotebook.sim.sagas) against the closed forms of esnotebook.sim.theory.

Tolerances: every estimate is a mean of n independent instances, so its standard error is
sigma/sqrt(n) with sigma from the exact distribution under test; checks allow 4 standard
errors (a correct simulator fails one with probability about 6e-5; the seeds are fixed,
so a run is reproducible either way).
"""

from __future__ import annotations

import functools
import math
import pickle

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esnotebook.sim import theory
from esnotebook.sim._saga_result import SagaResult
from esnotebook.sim.sagas import chain_saga, expected_step_duplicates, simulate_sagas
from esnotebook.sim.sweep import run_sweep

N = 400
Z = 4.0


def within(estimate: float, expected: float, sd: float, n: int = N) -> bool:
    return abs(estimate - expected) <= Z * sd / math.sqrt(n) + 1e-12


def compensation_sd(failure: list[float]) -> float:
    """Exact standard deviation of compensations per saga: i-1 with probability reach_i·p_i."""
    mean, second, reach = 0.0, 0.0, 1.0
    for i, p in enumerate(failure):
        mean += reach * p * i
        second += reach * p * i * i
        reach *= 1 - p
    return math.sqrt(second - mean * mean)


def test_success_rate_agrees_with_the_product_of_step_survivals():
    """success = Π(1 - pᵢ) for the real OrderFulfillment saga (reserve, charge, ship)."""
    p = [0.1, 0.2, 0.15]
    r = simulate_sagas(N, saga="fulfillment", failure=p, seed=11, progress=False)
    s = theory.saga_success(p)
    assert r["instances"] == N
    assert within(r["success_rate"], s, math.sqrt(s * (1 - s)))
    assert r["compensated_rate"] == pytest.approx(1 - r["success_rate"])
    assert r["dead_letter_rate"] == 0


def test_compensations_per_saga_agree_with_the_closed_form():
    """Step i failing compensates the i-1 steps before it: E = Σ reachᵢ pᵢ (i-1)."""
    p = [0.15, 0.25, 0.3]
    r = simulate_sagas(N, saga="fulfillment", failure=p, seed=5, progress=False)
    expected = theory.expected_compensations(p)
    assert r.expected["compensations_per_saga"] == pytest.approx(expected)
    assert within(r["compensations_per_saga"], expected, compensation_sd(p))


@pytest.mark.parametrize(("p", "retries"), [(0.5, 1), (0.6, 2)])
def test_retries_turn_a_transient_failure_p_into_p_to_the_r_plus_1(p, retries):
    """A transient fault retried r times fails the step with p^(r+1); attempts average Σ p^a."""
    r = simulate_sagas(N, saga="chain", steps=1, failure=p, retries=retries, seed=3, progress=False)
    q = theory.retry_failure(p, retries=retries)
    assert within(1 - r["success_rate"], q, math.sqrt(q * (1 - q)))
    attempts = sum(p**a for a in range(retries + 1))
    second = sum(
        (a + 1) ** 2 * (p**a * (1 - p) if a < retries else p**a) for a in range(retries + 1)
    )
    assert within(r["attempts_per_saga"], attempts, math.sqrt(second - attempts**2))


def test_permanent_faults_are_not_retried():
    """A permanent fault fails the step at once, so retries leave success at Π(1 - pᵢ)."""
    p = [0.2, 0.2]
    r = simulate_sagas(
        N, saga="chain", steps=2, failure=p, fault="permanent", retries=3, seed=8, progress=False
    )
    s = theory.saga_success(p)
    assert r.expected["success_rate"] == pytest.approx(s)
    assert within(r["success_rate"], s, math.sqrt(s * (1 - s)))
    assert r.instances["attempts"].max() <= 2  # one attempt per step reached


def test_duplicates_without_keys_agree_with_theory_and_keys_remove_them():
    """Without idempotency keys each redelivery repeats its side effect: d per step
    (theory.expected_duplicates); with keys the same redeliveries change nothing."""
    d, steps = 0.25, 3
    off = simulate_sagas(
        N, saga="chain", steps=steps, duplicate=d, idempotency="off", seed=4, progress=False
    )
    expected = theory.expected_duplicates([0.0] * steps, duplicate_probability=d)
    assert expected == pytest.approx(d * steps)
    assert within(off["duplicates_per_saga"], expected, math.sqrt(steps * d * (1 - d)))
    on = simulate_sagas(
        N, saga="chain", steps=steps, duplicate=d, idempotency="on", seed=4, progress=False
    )
    assert on["duplicates_per_saga"] == 0 and on.expected["duplicates_per_saga"] == 0
    assert on["success_rate"] == off["success_rate"] == 1.0


def test_fulfillment_domain_refuses_most_repeats_but_reserves_twice():
    """In OrderFulfillment without keys only a redelivered ReserveInventory repeats its
    effect (a second charge, payment or shipment is refused by the aggregates), so no
    closed form is claimed; with keys nothing repeats."""
    d = 0.3
    off = simulate_sagas(
        N, saga="fulfillment", duplicate=d, idempotency="off", seed=2, progress=False
    )
    assert off.expected["duplicates_per_saga"] is None
    assert set(off.to_polars("duplicates")["command_type"]) == {"ReserveInventory"}
    assert within(off["duplicates_per_saga"], d, math.sqrt(d * (1 - d)))
    on = simulate_sagas(
        N, saga="fulfillment", duplicate=d, idempotency="on", seed=2, progress=False
    )
    assert on.to_polars("duplicates").height == 0 and on["duplicates_per_saga"] == 0


def test_duplicates_with_failures_repeat_only_what_went_through():
    """A failed attempt had no effect to repeat: duplicates follow d·Σ reach after step i,
    theory.expected_duplicates' default; below its redelivered="every" model."""
    p, d = [0.3, 0.3], 0.3
    r = simulate_sagas(N, saga="chain", steps=2, failure=p, retries=1, duplicate=d, idempotency="off", seed=9,
                       progress=False)  # fmt: skip
    mine = expected_step_duplicates(p, duplicate_probability=d, retries=1)
    assert mine == theory.expected_duplicates(p, duplicate_probability=d, retries=1)
    assert mine < theory.expected_duplicates(
        p, duplicate_probability=d, retries=1, redelivered="every"
    )
    assert within(
        r["duplicates_per_saga"], mine, math.sqrt(2 * d)
    )  # Var <= E[X²] <= 2d for two steps


@settings(max_examples=10)
@given(
    steps=st.integers(1, 4),
    p=st.floats(0, 0.7),
    retries=st.integers(0, 2),
    fault=st.sampled_from(["transient", "permanent"]),
    seed=st.integers(0, 2**31),
)
def test_every_failed_instance_is_compensated_back_to_the_start(steps, p, retries, fault, seed):
    """Whatever the faults: a compensated instance undid exactly the steps it had done and
    failed at the step after them; a completed one did every step and undid none."""
    r = simulate_sagas(
        30,
        saga="chain",
        steps=steps,
        failure=p,
        retries=retries,
        fault=fault,
        seed=seed,
        progress=False,
    )
    f = r.instances
    assert set(f["status"]) <= {"completed", "compensated"}
    done = f.filter(pl.col("status") == "completed")
    assert (done["compensations"] == 0).all() and (done["steps_done"] == steps).all()
    failed = f.filter(pl.col("status") == "compensated")
    assert (failed["compensations"] == failed["steps_done"]).all()
    assert failed["failed_step"].to_list() == [f"s{k + 1}" for k in failed["steps_done"]]
    if fault == "permanent":
        assert (f["attempts"] <= f["steps_done"] + 1).all()


@settings(max_examples=8)
@given(seed=st.integers(0, 2**31), p=st.floats(0, 0.6), d=st.floats(0, 0.5))
def test_the_same_seed_gives_the_same_instances(seed, p, d):
    """Seeded and reproducible: two runs with one seed give identical frames."""
    run = functools.partial(simulate_sagas, 25, saga="chain", failure=p, duplicate=d, retries=1,
                            idempotency="off", command_time=0.1, seed=seed, progress=False)  # fmt: skip
    assert run().instances.equals(run().instances)


def test_different_seeds_give_different_runs():
    """The seed drives the faults: another seed, another sample."""
    a = simulate_sagas(100, saga="chain", failure=0.3, seed=1, progress=False)
    b = simulate_sagas(100, saga="chain", failure=0.3, seed=2, progress=False)
    assert not a.instances.equals(b.instances)


def test_latency_is_the_simulated_command_times_and_backoffs():
    """Mean latency with no faults is steps × command_time (a sum of exponentials); a
    step that fails every attempt waits exactly the backoffs 0.1 + 0.2 + 0.4 s."""
    t, steps = 0.05, 3
    r = simulate_sagas(N, saga="chain", steps=steps, command_time=t, seed=6, progress=False)
    assert within(r["mean_latency_s"], steps * t, math.sqrt(steps) * t)
    assert r["p50_latency_s"] <= r["p95_latency_s"] <= r["p99_latency_s"] <= r["max_latency_s"]
    stuck = simulate_sagas(5, saga="chain", steps=2, failure=[1.0, 0.0], retries=3, backoff=0.1, seed=0,
                           progress=False)  # fmt: skip
    assert stuck.instances["latency_s"].to_list() == pytest.approx([0.7] * 5)
    assert (stuck.instances["status"] == "compensated").all()


def start_chain(store, ids):
    from esnotebook.events import NewEvent

    for oid in ids:
        store.append(f"order-{oid}", [NewEvent("OrderPlaced", {"order_id": oid, "customer": "c"})])


def test_any_saga_runs_through_a_factory_and_a_setup():
    """A user's own saga (a module-level factory and the events that start it) is simulated too."""
    r = simulate_sagas(60, saga=functools.partial(chain_saga, 2), setup=start_chain, failure=[0.0, 1.0],
                       fault="permanent", seed=1, progress=False)  # fmt: skip
    assert r.settings["saga"] == "Chain" and (r.instances["failed_step"] == "s2").all()
    assert r["compensations_per_saga"] == 1.0 == r.expected["compensations_per_saga"]


def test_simulate_sagas_travels_to_sweep_workers():
    """Module-level and picklable, so run_sweep can fan it out; rows carry theory beside it."""
    fn = pickle.loads(
        pickle.dumps(functools.partial(simulate_sagas, 30, saga="chain", progress=False))
    )
    frame = run_sweep(fn, {"failure": [0.0, 0.5]}, seeds=2, progress=False)
    assert frame.height == 4
    assert {"success_rate", "theory_success_rate", "duplicates_per_saga"} <= set(frame.columns)
    assert frame.filter(pl.col("failure") == 0.0)["success_rate"].to_list() == [1.0, 1.0]


def test_result_views_summary_and_html():
    """Instances and summary as polars and pandas; the summary has intervals and theory; HTML escaped."""
    r = simulate_sagas(80, saga="chain", failure=0.2, seed=1, progress=False)
    assert isinstance(r, SagaResult)
    summary = r.to_polars("summary")
    assert summary.columns == ["metric", "mean", "ci_low", "ci_high", "theory"]
    row = summary.filter(pl.col("metric") == "success_rate").row(0, named=True)
    assert row["ci_low"] <= row["mean"] <= row["ci_high"] and row["theory"] == pytest.approx(0.512)
    assert r.to_pandas().shape[0] == 80
    assert r.outcomes()["instances"].sum() == 80
    html = r._repr_html_()
    assert "SagaResult" in html and "s1 → s2 → s3" in html
    with pytest.raises(KeyError, match="no metric"):
        r["nope"]
    with pytest.raises(ValueError, match="'view'"):
        r.to_polars("nope")  # type: ignore[arg-type]


def test_saga_plots_label_their_axes():
    """Outcome bars (share of instances) and the latency CDF (simulated seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    from esnotebook.plot import plot_saga_latency, plot_saga_outcomes

    r = simulate_sagas(60, saga="chain", failure=0.2, command_time=0.1, seed=1, progress=False)
    ax = r.plot()
    assert ax.get_ylabel() == "share of instances"
    assert ax.get_xticklabels()[0].get_text() == "completed"
    assert plot_saga_latency(r).get_xlabel() == "end-to-end latency (s, simulated)"
    assert r.plot("latency").get_ylabel() == "share of instances ≤ latency"
    with pytest.raises(ValueError, match="missing columns"):
        plot_saga_outcomes(pl.DataFrame({"x": [1]}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure": [0.1, 0.2]}, "'failure' must be a probability or a list of 3"),
        ({"failure": 1.5}, "'failure[0]' must be a probability in [0, 1] (got 1.5)"),
        ({"fault": "flaky"}, "'fault' must be 'transient' or 'permanent' (got 'flaky')"),
        ({"idempotency": "maybe"}, "'idempotency' must be 'on' or 'off' (got 'maybe')"),
        ({"saga": "nope"}, "'saga' must be 'fulfillment', 'chain' or a saga factory"),
        ({"saga": chain_saga}, "needs 'setup(store, instance_ids)'"),
        ({"retries": -1}, "'retries' must be an int >= 0 (got -1)"),
        ({"duplicate": -0.1}, "'duplicate' must be a probability in [0, 1] (got -0.1)"),
        ({"command_time": float("nan")}, "'command_time' must be a finite number >= 0"),
        ({"seed": -1}, "'seed' must be an int >= 0 (got -1)"),
    ],
)
def test_bad_input_names_the_argument_and_what_was_wrong(kwargs, message):
    """Each bad argument is refused before anything runs, by name, with the value found."""
    import re

    with pytest.raises(ValueError, match=re.escape(message)):
        simulate_sagas(5, progress=False, **kwargs)
