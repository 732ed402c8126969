"""es.live.run: a real producer and a real runner, measured; LiveResult.compare beside it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import esnotebook as es
from esnotebook.live import COMPARED
from esnotebook.readmodels import OrderSummary
from esnotebook.sim import ServiceProfile

# A fixed profile (5 ms a one-event step) keeps the functional tests quick: no timing
# before each run. The accuracy test measures its own.
PROFILE = ServiceProfile(mean=0.0005, cv=0.3, batch_overhead=0.0045)


def _live(store, **kwargs):
    kwargs = {"arrival_rate": 40, "duration": 1.0, "profile": PROFILE, "seed": 3} | kwargs
    return es.live.run(store, OrderSummary(), **kwargs)


@pytest.mark.parametrize("kind", ["memory", "parquet"])
def test_run_appends_at_the_rate_and_the_runner_processes_every_event(kind, tmp_path):
    store = es.InMemoryEventStore() if kind == "memory" else es.ParquetEventStore(tmp_path / "s")
    before = threading.active_count()
    # A Parquet store's steps take tens of ms (a file per append): a slower producer.
    live = _live(store, arrival_rate=40 if kind == "memory" else 8, duration=1.5)
    n = live.settings["events"]
    assert store.head_position == n > 5
    assert live.timeseries.columns == ["time", "produced", "processed", "offset_lag", "time_lag"]
    assert np.all(np.diff(live.arrivals) >= 0) and np.all(live.done >= live.arrivals)
    assert np.isfinite(live.done).all()  # drained within the run's bound
    assert live.timeseries["produced"][-1] == n
    assert threading.active_count() == before  # both threads joined
    assert {"mean_offset_lag", "p95_time_lag", "utilisation"} <= set(live.metrics)


def test_same_seed_same_arrival_schedule_and_events():
    """The producer's schedule and events are seeded (the measured times are not)."""
    a, b = _live(es.InMemoryEventStore()), _live(es.InMemoryEventStore())
    assert a.settings["events"] == b.settings["events"]
    assert a.event_types == b.event_types


def test_run_on_a_store_with_events_starts_at_its_head_with_new_orders():
    store = es.InMemoryEventStore()
    first = _live(store)
    head = store.head_position
    second = _live(store)  # same seed: the same orders again, under new ids
    assert store.head_position == head + second.settings["events"]
    assert first.settings["events"] == second.settings["events"]
    runner = es.ProjectionRunner(store, OrderSummary())
    runner.catch_up()
    assert len(runner.dead_letters) == 0
    assert runner.state.height == 2 * first.event_types.count("OrderPlaced")
    assert store.read_stream(f"{next(iter(store.read_all())).stream_id}-at{head}")


def test_compare_has_a_row_per_metric_and_error_is_predicted_over_measured():
    live = _live(es.InMemoryEventStore())
    table = live.compare(replications=3)
    assert table.columns == ["metric", "predicted", "measured", "error"]
    assert table["metric"].to_list() == list(COMPARED)
    row = table.row(0, named=True)
    assert row["error"] == pytest.approx(row["predicted"] / row["measured"] - 1)


def test_burst_drain_time_is_measured_and_predicted():
    """A burst above the consumer's capacity (100-200 events/s here) for 0.5 s, then a
    quiet producer: the lag drains, in the run and in the forecast, well within the 2 s
    left (about 0.6 s expected)."""
    live = _live(es.InMemoryEventStore(), arrival_rate=[(0, 20), (0.5, 300), (1.0, 20)],
                 duration=3.0)  # fmt: skip
    table = dict(live.compare(replications=3).select("metric", "predicted").iter_rows())
    assert 0 < live["drain_time"] < 2.0
    assert 0 < table["drain_time"] < 2.0


def test_a_projection_error_is_raised_and_the_threads_are_stopped(monkeypatch):
    """The consumer's error stops the producer too (well before its 5 s) and is re-raised."""
    before = threading.active_count()

    def fail(self, n=None):
        raise RuntimeError("projection exploded")

    monkeypatch.setattr(es.ProjectionRunner, "step", fail)
    with pytest.raises(RuntimeError, match="projection exploded"):
        _live(es.InMemoryEventStore(), duration=5.0)
    assert threading.active_count() == before


def test_plot_overlays_measured_and_forecast():
    import matplotlib

    matplotlib.use("Agg")
    live = _live(es.InMemoryEventStore())
    ax = live.plot()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["forecast 5–95%", "forecast (mean)", "measured"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"consumers": 2}, "'consumers' must be 1"),
        ({"batch_size": 0}, r"'batch_size' must be an int >= 1 \(got 0\)"),
        ({"duration": -1}, r"'duration' must be a finite number of seconds > 0 \(got -1\)"),
        ({"drain": float("inf")}, r"'drain' must be a finite number of seconds >= 0"),
        ({"arrival_rate": [(1, 5)]}, "start times must begin at 0"),
    ],
)
def test_run_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _live(es.InMemoryEventStore(), **kwargs)


def test_run_needs_a_profile_object():
    with pytest.raises(TypeError, match="'profile' must be a ServiceProfile"):
        _live(es.InMemoryEventStore(), profile=0.005)


def test_given_the_runs_step_costs_the_model_predicts_the_mean_lag():
    """compare(costs="run"): the queueing model with the steps priced at what they cost in
    this run. Over 5 replications of this 3 s run at utilisation 0.6 on the busy 2-core
    machine the mean offset lag's error was -0.09, +0.02, -0.08, +0.03, -0.06 (load
    average 0.5, cost ratio 1.05-1.2), and -0.31..-0.09 and -0.21..+0.47 in two earlier
    sets of 5 with the others' tests running (load 5-8): a tolerance of 0.75 keeps a
    false alarm rare on a busy machine and still fails a model that gets the queue wrong
    by a factor of 2 or more."""
    profile = es.sim.measure_consumer(es.InMemoryEventStore(), OrderSummary(), events=300,
                                      appends="between")  # fmt: skip
    live = _live(es.InMemoryEventStore(), arrival_rate=0.6 * profile.at(150).rate(),
                 duration=3.0, profile=profile, seed=0)  # fmt: skip
    table = dict(live.compare(costs="run", replications=10).select("metric", "error").iter_rows())
    assert abs(table["mean_offset_lag"]) < 0.75
    assert live.cost_ratio > 0
