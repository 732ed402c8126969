"""The explorers (esnotebook.widgets): built headless, driven through their controls; the
pure functions behind them checked directly."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import esnotebook as es
from esnotebook.datasets import generate_orders
from esnotebook.widgets import (
    browse,
    burst_schedule,
    lag_explorer,
    rebuild_explorer,
    saga_explorer,
    store_browser,
)


def classes(widget) -> list[str]:
    return list(widget._dom_classes)


# ---------------------------------------------------------------------- lag explorer
@pytest.fixture(scope="module")
def lag_box():
    return lag_explorer(duration=120)


def test_lag_explorer_is_a_widget_with_findable_parts(lag_box):
    import ipywidgets

    assert isinstance(lag_box, ipywidgets.VBox)
    assert "esn-lag-explorer" in classes(lag_box)
    assert "esn-lag-plot" in classes(lag_box.figure)
    assert "esn-lag-summary" in classes(lag_box.summary)
    slider = lag_box.controls["consumer_rate"]
    assert "esn-control-consumer-rate" in classes(slider)
    assert slider.description.startswith("consumer rate")
    assert all(c.continuous_update is False for c in lag_box.controls.values())
    assert lag_box.figure.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_faster_consumer_lowers_the_lag_and_redraws_plot_and_summary(lag_box):
    c = lag_box.controls
    c["consumer_rate"].value = 250.0
    slow, png, text = lag_box.result, lag_box.figure.value, lag_box.summary.value
    c["consumer_rate"].value = 900.0
    fast = lag_box.result
    assert fast.settings["capacity"] == pytest.approx(900.0)
    assert fast["max_offset_lag"] < slow["max_offset_lag"]
    assert lag_box.figure.value != png and lag_box.summary.value != text


def test_no_burst_means_less_lag_than_a_burst(lag_box):
    c = lag_box.controls
    c["consumer_rate"].value = 300.0
    c["burst_size"].value = 4.0
    bursty = lag_box.result["max_offset_lag"]
    c["burst_size"].value = 1.0
    assert lag_box.result["max_offset_lag"] < bursty
    c["burst_size"].value = 3.0


def test_consumers_partitions_and_batches_reach_the_simulation(lag_box):
    c = lag_box.controls
    c["consumers"].value = 3
    c["partitions"].value = 2
    c["batch_size"].value = 10
    s = lag_box.result.settings
    assert (s["consumers"], s["partitions"], s["batch_size"]) == (3, 2, 10)
    c["partitions"].value = 0
    assert lag_box.result.settings["partitions"] is None
    c["consumers"].value, c["batch_size"].value = 1, 1


def test_burst_schedule_refuses_a_burst_smaller_than_one():
    with pytest.raises(ValueError, match=r"'burst_size' must be >= 1 .*got 0.5"):
        burst_schedule(100, burst_size=0.5, burst_length=10, duration=100)
    with pytest.raises(ValueError, match=r"'producer_rate' must be a number > 0 \(got -1\)"):
        burst_schedule(-1, burst_size=2, burst_length=10, duration=100)


@given(
    rate=st.floats(1, 1e4),
    size=st.floats(1, 10),
    length=st.floats(0, 200),
    duration=st.floats(10, 1e4),
)
def test_a_burst_schedule_carries_the_rate_and_adds_the_burst(rate, size, length, duration):
    """Rule: the schedule starts at 0 at the producer rate, ends back at it, and its peak is
    rate × size (or the rate when there is no burst)."""
    sched = burst_schedule(rate, burst_size=size, burst_length=length, duration=duration)
    assert sched[0] == (0.0, rate) and sched[-1][1] == rate
    assert [t for t, _ in sched] == sorted(t for t, _ in sched)
    assert max(r for _, r in sched) == pytest.approx(rate * size if len(sched) == 3 else rate)


# ---------------------------------------------------------------------- rebuild explorer
def test_rebuild_explorer_follows_the_snapshot_interval_and_live_rate():
    box = rebuild_explorer(events=100_000, streams=1000)
    assert "esn-rebuild-explorer" in classes(box) and box.figure.value[:4] == b"\x89PNG"
    c = box.controls
    c["snapshot_interval"].value = 0
    assert box.result["replayed_tail"] == pytest.approx(100.0)  # no snapshots: whole stream
    c["snapshot_interval"].value = 10
    assert box.result["replayed_tail"] == pytest.approx(4.5)
    assert box.result.catches_up
    png = box.figure.value
    c["live_rate"].value = 1e6  # faster than the default 2 M/s rebuild? no: still slower
    rebuild_rate = box.result["rebuild_rate"]
    assert box.result.catches_up == (rebuild_rate > 1e6)
    c["events"].value = 1e8
    assert box.figure.value != png


def test_rebuild_explorer_says_when_streams_outnumber_events_and_keeps_its_result():
    box = rebuild_explorer(events=10_000, streams=100)
    before = box.result
    box.controls["streams"].value = 1e6
    assert "&#x27;streams&#x27; must be &lt;= &#x27;events&#x27;" in box.summary.value
    assert box.result is before


def test_rebuild_explorer_uses_calibrated_costs():
    costs = es.sim.RebuildCosts(apply_cost=1e-3)
    box = rebuild_explorer(events=10_000, streams=100, live_rate=0, costs=costs)
    assert box.result["rebuild_rate"] == pytest.approx(1000.0)


# ---------------------------------------------------------------------- saga explorer
def test_saga_explorer_outcomes_follow_failures_retries_and_idempotency():
    box = saga_explorer(failure=(0.0, 0.0), retries=0, duplicate=0.0, instances=40)
    assert "esn-saga-explorer" in classes(box)
    c = box.controls
    assert box.result["success_rate"] == 1.0
    c["failure_1"].value = 1.0
    assert box.result["success_rate"] == 0.0
    assert box.result["compensations_per_saga"] == pytest.approx(1.0)  # step 1 is undone
    c["failure_1"].value = 0.0
    c["duplicate"].value = 0.5
    assert box.result["duplicates_per_saga"] == 0.0  # keys absorb the redeliveries
    c["idempotency"].value = False
    assert box.result["duplicates_per_saga"] > 0.3
    assert box.result.settings["idempotency"] == "off"


# ---------------------------------------------------------------------- store browser
@pytest.fixture(scope="module")
def orders_store():
    store = es.InMemoryEventStore()
    store.append_frame(generate_orders(120, seed=5))
    return store


def test_the_browser_filters_by_stream_type_and_time_without_a_button(orders_store):
    box = store_browser(orders_store, page_size=10)
    c = box.controls
    total = len(orders_store)
    assert box.result.matches == total and box.result.frame.height == 10
    c["stream"].value = "order-"
    assert box.result.matches == total
    stream = orders_store.streams()[7]
    c["stream"].value = stream
    assert box.result.matches == orders_store.stream_version(stream)
    assert set(box.result.frame["stream_id"]) <= {s for s in orders_store.streams() if stream in s}
    c["stream"].value = ""
    c["event_types"].value = ("OrderPlaced",)
    assert box.result.matches == 120
    assert "rows 1–10 of 120" in box.summary.value
    c["page"].value = 3
    assert box.result.first_row == 21 and box.result.frame["event_type"].unique().to_list() == [
        "OrderPlaced"
    ]
    options = c["time"].options
    c["time"].index = (0, len(options) // 2)
    lo, hi = c["time"].value
    frame = orders_store.to_polars().filter(pl.col("event_type") == "OrderPlaced")
    expected = frame.filter((pl.col("recorded_at") >= lo) & (pl.col("recorded_at") < hi)).height
    assert box.result.matches == expected < 120


def test_browser_html_is_escaped():
    store = es.InMemoryEventStore()
    store.append(
        "order-<script>", [es.NewEvent("OrderPlaced", {"order_id": "<b>x</b>", "customer": "c"})]
    )
    box = store_browser(store)
    assert "<script>" not in box.table.value and "&lt;script&gt;" in box.table.value


@settings(max_examples=15)
@given(
    page_size=st.integers(4, 60),
    kinds=st.lists(st.sampled_from(["OrderPlaced", "ItemAdded", "OrderShipped"]), unique=True),
)
def test_pages_cut_the_matches_into_disjoint_ordered_pieces(orders_store, page_size, kinds):
    """Rule: walking the pages yields every matching event once, in position order."""
    first = browse(orders_store, event_types=kinds, page_size=page_size)
    seen = []
    for p in range(first.pages):
        seen.extend(
            browse(orders_store, event_types=kinds, page=p, page_size=page_size)
            .frame["position"]
            .to_list()
        )
    frame = orders_store.to_polars()
    if kinds:
        frame = frame.filter(pl.col("event_type").is_in(kinds))
    assert seen == frame["position"].to_list() and first.matches == frame.height


def test_browse_refuses_bad_pages_and_naive_times(orders_store):
    with pytest.raises(ValueError, match=r"'page_size' must be an int >= 1 \(got 0\)"):
        browse(orders_store, page_size=0)
    with pytest.raises(ValueError, match="'start' must be a timezone-aware datetime"):
        browse(orders_store, start=orders_store.to_polars()["recorded_at"][0].replace(tzinfo=None))
    past_end = browse(orders_store, page=10**6, page_size=50)
    assert past_end.last_row == len(orders_store)  # shows the last page


def test_importing_the_widgets_module_displays_nothing_and_loads_no_ipywidgets():
    import subprocess
    import sys

    code = "import sys, esnotebook.widgets; print('ipywidgets' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]


def test_time_window_end_is_exclusive(orders_store):
    first = orders_store.to_polars()["recorded_at"].min()
    assert browse(orders_store, end=first).matches == 0
    assert browse(orders_store, start=first, end=first + timedelta(microseconds=1)).matches >= 1


def test_browse_refuses_what_is_not_events():
    with pytest.raises(
        TypeError, match=r"browse needs an event store or an event frame \(got list\)"
    ):
        browse([1, 2])


def test_a_new_filter_starts_again_on_the_first_page(orders_store):
    box = store_browser(orders_store, page_size=10)
    box.controls["page"].value = 5
    assert box.result.first_row == 41
    box.controls["event_types"].value = ("ItemAdded",)
    assert box.controls["page"].value == 1 and box.result.first_row == 1
    assert set(box.result.frame["event_type"]) == {"ItemAdded"}


def test_a_starting_value_beyond_the_usual_range_is_kept_not_clamped():
    box = lag_explorer(consumer_rate=5000.0, producer_rate=4000.0, burst_size=1.0, duration=30)
    assert box.controls["consumer_rate"].value == 5000.0
    assert box.result.settings["capacity"] == pytest.approx(5000.0)


def test_explorers_refuse_bad_starting_values():
    with pytest.raises(ValueError, match="'failure' must be a non-empty list"):
        saga_explorer(failure=())
    with pytest.raises(TypeError, match=r"'consumer_rate' must be a number \(got 'fast'\)"):
        lag_explorer(consumer_rate="fast")
    with pytest.raises(ValueError, match=r"'events' must be > 0 \(got 0\)"):
        rebuild_explorer(events=0)
