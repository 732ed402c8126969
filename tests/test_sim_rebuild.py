"""The rebuild-cost model (esnotebook.sim.rebuild) and its calibration on a real store."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import esnotebook as es
from esnotebook.examples import Order
from esnotebook.readmodels import OrderSummary
from esnotebook.repository import Repository
from esnotebook.runner import ProjectionRunner
from esnotebook.sim import theory
from esnotebook.sim._costs import RebuildCosts, calibrate
from esnotebook.sim.rebuild import RebuildResult, rebuild_cost
from esnotebook.snapshots import InMemorySnapshotStore, Snapshot

BASE = {"apply_cost": 2e-6, "snapshot_write_cost": 1e-4}


# ---------------------------------------------------------------- the model


@settings(max_examples=40)
@given(
    events=st.integers(1_000, 10**8),
    rate=st.floats(1e3, 1e7),
    live_share=st.floats(0.0, 0.99),
)
def test_rebuild_time_is_the_fluid_catch_up_time_n_over_r_minus_lambda(events, rate, live_share):
    """With no fixed overhead a rebuild at r events/s under live traffic λ takes N/(r-λ)."""
    lam = live_share * rate
    r = rebuild_cost(events, streams=1, apply_cost=1 / rate, live_rate=lam)
    assert r["rebuild_time_s"] == pytest.approx(events / (rate - lam), rel=1e-9)
    assert r["rebuild_time_s"] == pytest.approx(
        theory.rebuild_time(events, rebuild_rate=rate, live_rate=lam)
    )
    assert r.catches_up
    # What it replays in that time: the history plus what arrived meanwhile.
    assert r["events_replayed_in_rebuild"] == pytest.approx(events + lam * r["rebuild_time_s"])


@pytest.mark.parametrize("live", [1000.0, 1500.0])
def test_rebuild_never_catches_up_when_the_rate_does_not_exceed_the_live_rate(live):
    """r <= λ: the rebuild time is infinite and the result says it never catches up."""
    r = rebuild_cost(10_000, streams=10, apply_cost=1e-3, live_rate=live)
    assert not r.catches_up
    assert math.isinf(r["rebuild_time_s"])
    assert "never catches up" in r._repr_html_()


def test_events_per_stream_is_another_way_to_give_the_shape():
    """events_per_stream E describes the same store as streams = N / E."""
    a = rebuild_cost(100_000, events_per_stream=250, interval=40, **BASE)
    b = rebuild_cost(100_000, streams=400, interval=40, **BASE)
    assert a["streams"] == 400
    assert a.intervals.equals(b.intervals)


def test_fixed_overhead_enters_the_fluid_model_once():
    """T = (N c + o) / (1 - λ c): the start-up cost is also slowed by the live traffic."""
    r = rebuild_cost(1_000, streams=1, apply_cost=1e-3, rebuild_overhead=0.5, live_rate=500)
    assert r["rebuild_time_s"] == pytest.approx((1.0 + 0.5) / 0.5)


@settings(max_examples=40)
@given(k=st.integers(1, 500), mean=st.integers(1, 5_000))
def test_replayed_tail_is_k_minus_1_over_2_once_streams_reach_the_interval(k, mean):
    """From the mean length alone: (k-1)/2 per load when streams reach k, else the whole stream."""
    r = rebuild_cost(mean * 100, streams=100, interval=k, **BASE)
    expected = theory.expected_replayed_tail(k) if mean >= k else mean
    assert r["replayed_tail"] == pytest.approx(expected)
    assert r["snapshot_writes_per_event"] == pytest.approx(1 / k)


@settings(max_examples=40)
@given(
    lengths=st.lists(st.integers(1, 300), min_size=1, max_size=40),
    k=st.integers(1, 320),
    keep=st.integers(1, 3),
)
def test_exact_lengths_give_the_tail_snapshots_and_storage_of_each_stream(lengths, k, keep):
    """With the stream lengths: tail = mean(L mod k); written = Σ⌊L/k⌋; kept = Σ min(keep, ⌊L/k⌋)."""
    r = rebuild_cost(sum(lengths), stream_lengths=lengths, interval=k, keep=keep, snapshot_bytes=100,
                     event_bytes=50, **BASE)  # fmt: skip
    assert r["replayed_tail"] == pytest.approx(statistics.mean(L % k for L in lengths))
    assert r["snapshot_share"] == pytest.approx(statistics.mean(L >= k for L in lengths))
    written = sum(L // k for L in lengths)
    assert r["snapshots_written"] == written
    assert r["snapshots_kept"] == sum(min(keep, L // k) for L in lengths)
    assert r["snapshot_storage_bytes"] == pytest.approx(100 * r["snapshots_kept"])
    assert r["write_amplification"] == pytest.approx(written * 100 / (sum(lengths) * 50))


def test_load_time_adds_overhead_snapshot_read_and_the_replayed_tail():
    """load = overhead + read·[snapshot] + per-event cost · tail, with and without snapshots."""
    costs = {
        "apply_cost": 1e-6,
        "load_event_cost": 2e-6,
        "load_overhead": 1e-5,
        "snapshot_read_cost": 3e-5,
    }
    r = rebuild_cost(100_000, streams=1_000, interval=10, **costs)
    assert r["load_time_s"] == pytest.approx(1e-5 + 3e-5 + 2e-6 * 4.5)
    assert r["all_loads_s"] == pytest.approx(1_000 * r["load_time_s"])
    none = r.intervals.filter(pl.col("interval").is_null()).row(0, named=True)
    assert none["load_time_s"] == pytest.approx(1e-5 + 2e-6 * 100)
    # In steady state the loads of a stream's life replay 0, 1, ... 99 events: 49.5 on average.
    assert none["snapshots_written"] == 0 and none["cost_per_event_s"] == pytest.approx(
        none["steady_load_time_s"]
    ) == pytest.approx(1e-5 + 2e-6 * 49.5)


@settings(max_examples=40)
@given(
    lengths=st.lists(st.integers(1, 300), min_size=1, max_size=30),
    k=st.one_of(st.none(), st.integers(1, 320)),
)
def test_steady_state_loads_are_the_loads_of_the_streams_lives(lengths, k):
    """The steady load averages one load per appended event: at versions 0 … L-1 of each
    stream, replaying v mod k events (v without snapshots), from a snapshot once v >= k."""
    costs = {"apply_cost": 1e-6, "load_event_cost": 2e-6, "load_overhead": 1e-5,
             "snapshot_read_cost": 3e-5, "snapshot_write_cost": 1e-4}  # fmt: skip
    r = rebuild_cost(sum(lengths), stream_lengths=lengths, interval=k, **costs)
    loads = [(v, k is not None and v >= k) for n in lengths for v in range(n)]
    tail = statistics.mean(v % k if k else v for v, _ in loads)
    share = statistics.mean(snap for _, snap in loads)
    assert r["steady_replayed_tail"] == pytest.approx(tail)
    assert r["steady_load_time_s"] == pytest.approx(1e-5 + 3e-5 * share + 2e-6 * tail)
    assert r["cost_per_event_s"] == pytest.approx(r["steady_load_time_s"] + (1e-4 / k if k else 0))


def test_the_cheapest_interval_does_not_chase_the_current_stream_lengths():
    """Streams all near 253 events (notebook 04's): at today's lengths a snapshot every 252
    events leaves a tail of about 1, but the loads of a stream's life replay (k-1)/2 on
    average, so the cheapest interval sits near the square-root rule, not at the length
    (above k*: the first k loads of a stream pay no snapshot read)."""
    costs = {"apply_cost": 1e-5, "load_event_cost": 1.5e-5, "load_overhead": 1e-3,
             "snapshot_read_cost": 8e-4, "snapshot_write_cost": 2e-4}  # fmt: skip
    r = rebuild_cost(10_120, stream_lengths=[252, 253, 254] * 13 + [253], interval=252, **costs)
    assert r["replayed_tail"] < 3  # today's loads: the snapshot is right behind the head
    assert r["optimal_interval"] == pytest.approx(math.sqrt(2 * 2e-4 / 1.5e-5))
    assert r["optimal_interval"] <= r.best_interval <= 1.5 * r["optimal_interval"]


@settings(max_examples=40)
@given(
    lengths=st.lists(st.integers(1, 200), min_size=1, max_size=30),
    write=st.floats(1e-7, 1e-3),
    read=st.floats(0, 1e-4),
    loads=st.floats(0.1, 10),
)
def test_best_interval_is_the_cheapest_of_every_interval_and_of_no_snapshots(
    lengths, write, read, loads
):
    """The reported best interval minimises the steady-state cost over every k and 'none'."""
    r = rebuild_cost(sum(lengths), stream_lengths=lengths, apply_cost=1e-6, snapshot_write_cost=write,
                     snapshot_read_cost=read, loads_per_event=loads)  # fmt: skip
    every = rebuild_cost(sum(lengths), stream_lengths=lengths, apply_cost=1e-6, snapshot_write_cost=write,
                         snapshot_read_cost=read, loads_per_event=loads,
                         intervals=[None, *range(1, max(lengths) + 1)])  # fmt: skip
    cheapest = every.intervals["cost_per_event_s"].min()
    assert r["best_cost_per_event_s"] == pytest.approx(cheapest)
    best_row = every.intervals.filter(pl.col("interval").eq_missing(r.best_interval))
    assert best_row["cost_per_event_s"][0] == pytest.approx(cheapest)


def test_best_interval_sits_at_the_square_root_rule_for_long_streams():
    """With (k-1)/2 tails the cost c_e (k-1)/2 + c_w/k is least at k* = sqrt(2 c_w / c_e)."""
    r = rebuild_cost(10**8, streams=10**4, apply_cost=1e-6, snapshot_write_cost=2e-4)
    assert r["optimal_interval"] == pytest.approx(20.0)
    assert r.best_interval in (19, 20, 21)
    # Writing snapshots costs nothing: snapshot every event.
    assert rebuild_cost(10**6, streams=10**3, apply_cost=1e-6).best_interval == 1
    # Short streams and a costly snapshot read: snapshots do not pay.
    short = rebuild_cost(
        3_000, streams=1_000, apply_cost=1e-6, snapshot_read_cost=1e-3, snapshot_write_cost=1e-3
    )
    assert short.best_interval is None


def test_result_views_frames_and_html():
    """The interval sweep and the summary come out as polars and pandas; the HTML is escaped."""
    r = rebuild_cost(
        50_000,
        streams=500,
        interval=20,
        live_rate=1_000,
        snapshot_bytes=200,
        event_bytes=80,
        **BASE,
    )
    assert isinstance(r, RebuildResult)
    frame = r.to_polars()
    assert frame["interval"].null_count() == 1 and 20 in frame["interval"].to_list()
    assert r.to_pandas("summary").shape[1] == 2
    summary = dict(r.summary().iter_rows())
    assert summary["rebuild_time_s"] == pytest.approx(r["rebuild_time_s"])
    assert r.to_dict()["interval"] == 20
    html = r._repr_html_()
    assert "RebuildResult" in html and "<script" not in html
    with pytest.raises(ValueError, match="'view'"):
        r.to_polars("bogus")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no metric 'nope'"):
        r["nope"]


def test_the_model_sweeps_with_run_sweep_into_one_frame():
    """rebuild_cost takes the seed run_sweep passes, so a grid of live rates is one frame."""
    import functools

    from esnotebook.sim.sweep import run_sweep

    fn = functools.partial(rebuild_cost, 10**6, streams=10**4, apply_cost=1e-5)
    frame = run_sweep(fn, {"live_rate": [0.0, 50_000.0, 100_000.0]}, progress=False)
    assert frame["rebuild_time_s"].to_list()[:2] == pytest.approx([10.0, 20.0])
    assert frame["catches_up"].to_list() == [True, True, False]


def test_plot_rebuild_cost_labels_both_axes_with_units():
    """The plot shows load time (ms) and cost per event (µs) against the interval (events)."""
    import matplotlib

    matplotlib.use("Agg")
    from esnotebook.plot import plot_rebuild_cost

    ax = rebuild_cost(10**6, streams=10**4, **BASE).plot()
    assert ax.get_xlabel() == "snapshot interval (events)"
    assert "(ms)" in ax.get_ylabel() and "(µs)" in ax.right_ax.get_ylabel()
    with pytest.raises(ValueError, match="missing columns"):
        plot_rebuild_cost(pl.DataFrame({"x": [1]}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"streams": 10}, "needs 'apply_cost'"),
        ({"streams": 10, "apply_cost": 0}, "'apply_cost' must be a finite number > 0 (got 0)"),
        (
            {"streams": 10, "apply_cost": 1e-6, "live_rate": -1},
            "'live_rate' must be a finite number >= 0 (got -1)",
        ),
        (
            {"streams": 10, "apply_cost": 1e-6, "interval": 0},
            "'interval' must be an int >= 1 (got 0)",
        ),
        ({"streams": 2_000, "apply_cost": 1e-6}, "must be at least 'streams'"),
        ({"apply_cost": 1e-6}, "needs 'streams'"),
        ({"stream_lengths": [3, 0], "apply_cost": 1e-6}, "'stream_lengths' must be"),
        ({"streams": 10, "apply_cost": 1e-6, "intervals": []}, "'intervals' must be"),
        ({"streams": 10, "apply_cost": 1e-6, "keep": 0}, "'keep' must be an int >= 1 (got 0)"),
        ({"streams": 10, "events_per_stream": 5, "apply_cost": 1e-6}, "give one of 'streams'"),
        ({"events_per_stream": 0.5, "apply_cost": 1e-6}, "'events_per_stream' must be between 1"),
    ],
)
def test_bad_input_names_the_argument_and_what_was_wrong(kwargs, message):
    """Each bad argument gets an error naming it, the expectation and the value."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rebuild_cost(1_000, **kwargs)


# ---------------------------------------------------------------- calibration


def notebook_store() -> es.InMemoryEventStore:
    """Notebook 04's store: 40 orders of about 250 events, imported as one frame."""
    from esnotebook.datasets import generate_orders

    store = es.InMemoryEventStore()
    store.append_frame(generate_orders(40, items_per_order=250, p_abandon=0, seed=4, progress=False))
    return store


def snapshots_every(store, ids: list[str], k: int) -> Repository:
    """A repository whose snapshots sit where snapshot_every=k puts them: at multiples of k."""
    snaps = InMemorySnapshotStore()
    repo = Repository(store, Order, snapshots=snaps)
    plain = Repository(store, Order)
    for i in ids:
        v = store.stream_version(f"order-{i}") // k * k
        if v == 0:
            continue
        agg = plain.load(i, version=v)
        last = store.read_stream(f"order-{i}", from_version=v, to_version=v)[0]
        snaps.save(Snapshot(repo.aggregate_type, agg.id, v, Order.schema_version, last.event_id,
                            datetime.now(UTC), json.dumps(agg.get_state())))  # fmt: skip
    return repo


def predicted_over_measured(store, seed: int, k: int = 50, passes: int = 3) -> tuple[dict[str, float], int | None]:
    """Calibrate on ``store`` with notebook 04's settings and time the real thing: the
    projection rebuild and a load of every order in full, from a snapshot at the head and
    from snapshots every ``k`` events, as notebook 04 does (CPU seconds, the loads taking
    turns). ``passes`` before the calibration and as many after, so that the medians
    bracket it: the speed of the shared cores drifts over seconds (see the test).
    Returns predicted / measured per quantity, and the model's cheapest interval."""
    ids = [s.removeprefix("order-") for s in store.streams()]
    at_head = Repository(store, Order, snapshots=InMemorySnapshotStore())
    for i in ids:
        at_head.take_snapshot(i)
    every = snapshots_every(store, ids, k)
    loads = {
        "full replay": lambda: [Repository(store, Order).load(i) for i in ids],
        "snapshot at head": lambda: [at_head.load(i) for i in ids],
        f"snapshots every {k}": lambda: [every.load(i) for i in ids],
    }
    times: dict[str, list[float]] = {name: [] for name in ["rebuild", *loads]}

    def measure() -> None:
        for _ in range(passes):
            for name, job in loads.items():
                t = time.process_time()
                job()
                times[name].append(time.process_time() - t)
        for _ in range(passes):  # apart, as notebook 04 times it
            t = time.process_time()
            ProjectionRunner(store, OrderSummary()).rebuild()
            times["rebuild"].append(time.process_time() - t)

    measure()
    costs = calibrate(store, sample_events=6_000, sample_streams=20, seed=seed)
    measure()
    measured = {name: statistics.median(t) for name, t in times.items()}
    none, at_k = rebuild_cost(costs), rebuild_cost(costs, interval=k)
    predicted = {
        "rebuild": none["rebuild_time_s"],
        "full replay": none["load_time_s"] * len(ids),
        "snapshot at head": rebuild_cost(costs, interval=1)["load_time_s"] * len(ids),
        f"snapshots every {k}": at_k["load_time_s"] * len(ids),
    }
    # The model is not circular: the rebuild sample was a fraction of what it predicts.
    assert costs.measurements.filter(pl.col("what") == "rebuild")["events"].max() < len(store)
    return {name: predicted[name] / measured[name] for name in measured}, at_k.best_interval


def test_calibrated_model_predicts_a_real_rebuild_and_loads_over_5_calibrations():
    """Over 5 calibrations on notebook 04's store, each bracketed by the real thing, the
    median of predicted / measured is within 25 % for the rebuild and for the loads of
    every order by full replay, from a snapshot at the head and from snapshots every 50
    events; and the cheapest interval moves by at most 1.5x.

    The tolerance is the machine's, not the model's. On this 2-core machine, shared with
    three other engineers' runs, the CPU seconds of the same loads changed by up to 2.4x
    between one second and the next (1-second medians of one load: 2.6 to 6.4 ms), so one
    calibration beside one measurement gave predicted / measured from 0.70 to 1.72 (5
    tries), the four quantities moving together. Five replications of this test's medians
    of 5 gave: rebuild 1.03-1.21, full replay 0.86-0.99, snapshot at head 0.92-1.10, every
    50 0.86-1.14; the cheapest interval was 7-10 (at most 1.25x apart within a
    replication). So 20 % holds in the medians but with no margin on this machine: the
    test allows 25 %. The old model put the snapshot load at 0.24-0.46 of the measurement
    and its cheapest interval flipped between "no snapshots" and 252: it fails both.

    Both sides are timed in a fresh interpreter: in the test process the garbage collector's
    passes cost in proportion to the heap that a thousand earlier tests leave, which is no
    part of what the model predicts."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); import test_sim_rebuild as t; t.calibrated_against_measured()"
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)], check=False, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def calibrated_against_measured(rounds: int = 5) -> dict[str, float]:
    """The comparison of the test above; it raises AssertionError when the model is off and
    returns the median predicted / measured per quantity."""
    store = notebook_store()
    tries = [predicted_over_measured(store, seed) for seed in range(rounds)]
    medians = {name: statistics.median(t[0][name] for t in tries) for name in tries[0][0]}
    assert all(0.75 <= r <= 1.25 for r in medians.values()), (medians, tries)
    best = [t[1] for t in tries]
    assert None not in best and max(best) / min(best) <= 1.5, best
    return medians


def test_calibrate_recovers_known_costs_from_streams_all_of_one_length(monkeypatch):
    """On a clock where a load costs a + b·(events read) + r (from a snapshot), a
    rebuild step o + c·n and a snapshot write w, calibrate gives back a, b, r, o, c and w,
    though every stream has the same length (loads up to a random version spread the
    lengths; a single length left the fixed and per-event costs inseparable)."""
    from esnotebook.sim import _costs

    a, b, r, o, c, w = 4e-4, 2e-5, 3e-4, 5e-3, 1e-5, 7e-5
    now = [0.0]
    monkeypatch.setitem(_costs._TIMERS, "cpu", lambda: now[0])
    build, step, save = Repository._build, ProjectionRunner.step, InMemorySnapshotStore.save

    def timed_build(self, id, stream_id, events, snapshot, version, from_index=0):
        now[0] += a + b * len(events) + (r if snapshot is not None else 0.0)  # events read
        return build(self, id, stream_id, events, snapshot, version, from_index)

    def timed_step(self, n=None):
        done = step(self, n)
        now[0] += o + c * done
        return done

    def timed_save(self, snapshot):
        now[0] += w
        save(self, snapshot)

    monkeypatch.setattr(Repository, "_build", timed_build)
    monkeypatch.setattr(ProjectionRunner, "step", timed_step)
    monkeypatch.setattr(InMemorySnapshotStore, "save", timed_save)
    store = es.InMemoryEventStore()
    for i in range(12):
        store.append(f"order-o{i}", [es.NewEvent("OrderPlaced", {"order_id": f"o{i}", "customer": "c"})] + [
            es.NewEvent("ItemAdded", {"order_id": f"o{i}", "sku": "s", "quantity": 1, "price": 1}) for _ in range(39)
        ])  # fmt: skip
    costs = calibrate(store, sample_events=400, sample_streams=8, repeats=3)
    got = (costs.load_overhead, costs.load_event_cost, costs.snapshot_read_cost,
           costs.rebuild_overhead, costs.apply_cost, costs.snapshot_write_cost)  # fmt: skip
    assert got == pytest.approx((a, b, r, o, c, w), rel=1e-6)
    # Loads were timed at many lengths of streams that all have 40 events.
    assert costs.measurements.filter(pl.col("what") == "load")["events"].n_unique() > 3


def test_calibrate_reports_the_shape_and_leaves_the_store_untouched(tmp_path):
    """calibrate reads the aggregate's streams, measures on a Parquet store without writing to it."""
    from esnotebook.datasets import generate_orders

    store = es.ParquetEventStore(tmp_path / "shop")
    store.append_frame(generate_orders(60, seed=2, progress=False))
    before = sorted(p.relative_to(store.path) for p in store.path.rglob("*"))
    costs = calibrate(store, sample_events=200, sample_streams=6, repeats=1)
    assert sorted(p.relative_to(store.path) for p in store.path.rglob("*")) == before
    assert isinstance(costs, RebuildCosts)
    assert costs.streams == 60 and sum(costs.stream_lengths) <= costs.events == len(store)
    assert costs.apply_cost > 0 and costs.snapshot_write_cost > 0 and costs.snapshot_bytes > 0
    assert set(costs.to_polars()["what"]) == {"rebuild", "load", "snapshot_load", "snapshot_write"}
    assert "RebuildCosts" in costs._repr_html_()
    assert costs.to_pandas().shape[0] == costs.measurements.height
    # Given costs override the calibration's.
    assert rebuild_cost(costs, apply_cost=1.0)["rebuild_rate"] == 1.0


def test_calibrate_rejects_stores_it_cannot_measure():
    """An empty store, or one without the aggregate's streams, is refused by name."""
    with pytest.raises(ValueError, match="at least 4 events"):
        calibrate(es.InMemoryEventStore())
    store = es.InMemoryEventStore()
    store.append("cart-1", [es.NewEvent("Touched", {"n": i}) for i in range(5)])
    with pytest.raises(ValueError, match="no Order streams"):
        calibrate(store)
    with pytest.raises(ValueError, match="'repeats' must be an int >= 1 \\(got 0\\)"):
        calibrate(store, repeats=0)
