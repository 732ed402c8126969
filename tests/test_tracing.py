"""Causal tracing across aggregates, broken chains reported, and the swimlane plot."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import polars as pl
import pytest

import esnotebook as es
from esnotebook.events import new_id
from esnotebook.examples import AddItem, AddStock, PlaceOrder, order_domain_bus
from esnotebook.examples.fulfillment import OrderFulfillment
from esnotebook.faults import FaultPlan
from esnotebook.plot import trace_swimlane
from esnotebook.tracing import trace


def fulfilled(store, plan=None):
    bus = order_domain_bus(store)
    bus.dispatch(AddStock("sku-1", 5))
    placed = bus.dispatch(PlaceOrder("o-1", "c-1")).events[0]
    bus.dispatch(AddItem("o-1", "sku-1", 2, 300))
    OrderFulfillment().run(store, faults=plan)
    return placed


def test_a_trace_of_one_order_spans_order_inventory_and_payment_in_causal_order(store):
    placed = fulfilled(store)
    t = trace(store, placed.correlation_id)
    f = t.to_polars()
    assert t.ok
    assert {s.split("-")[0] for s in t.streams} == {"order", "inventory", "payment"}
    assert f["event_type"].to_list() == [
        "OrderPlaced", "InventoryReserved", "PaymentCharged", "PaymentReceived", "OrderShipped",
    ]  # fmt: skip
    # Each event's cause comes before it and is one level shallower.
    by_pos = dict(zip(f["position"].to_list(), f["depth"].to_list()))
    for pos, cause, depth in f.select("position", "caused_by_position", "depth").iter_rows():
        if cause is None:
            assert depth == 0 and pos == placed.position
        else:
            assert cause < pos and by_pos[cause] == depth - 1
    assert f["via_command"].to_list()[1:] == ["ReserveInventory", "ChargePayment", "PayOrder", "ShipOrder"]


def test_a_compensated_order_traces_through_its_compensations():
    store = es.InMemoryEventStore()
    placed = fulfilled(store, FaultPlan().permanent("ChargePayment"))
    f = trace(store, placed).to_polars()
    assert f["event_type"].to_list() == [
        "OrderPlaced", "InventoryReserved", "PaymentFailed", "OrderCancelled", "InventoryReleased",
    ]  # fmt: skip
    assert f["depth"].to_list() == [0, 1, 2, 3, 4]


def test_a_cause_that_does_not_exist_is_reported_not_hidden():
    store = es.InMemoryEventStore()
    root = store.append("a-1", [es.NewEvent("Started", {"n": 1})])[0]
    store.append("b-1", [es.NewEvent("Followed", {"n": 2}, correlation_id=root.correlation_id, causation_id=new_id())])
    t = trace(store, root.correlation_id)
    assert not t.ok
    assert t.problems.select("event_type", "problem", "depth").rows() == [("Followed", "missing cause", 0)]


def test_a_cause_in_another_chain_is_reported():
    store = es.InMemoryEventStore()
    other = store.append("a-1", [es.NewEvent("Elsewhere", {"n": 1})])[0]
    mine = store.append("b-1", [es.NewEvent("Mine", {"n": 1})])[0]
    store.append("b-1", [es.NewEvent("Odd", {"n": 2}, correlation_id=mine.correlation_id, causation_id=other.event_id)])
    row = trace(store, mine).problems.row(0, named=True)
    assert row["problem"] == "cause in another chain" and row["caused_by_position"] == other.position


def test_a_cycle_of_causes_is_reported():
    store = es.InMemoryEventStore()
    a, b, corr = new_id(), new_id(), new_id()
    store.append_frame(pl.DataFrame({
        "stream_id": ["x-1", "x-1", "x-1"], "event_type": ["Root", "A", "B"],
        "event_id": [corr, a, b], "correlation_id": [corr, corr, corr], "causation_id": [None, b, a],
        "n": [0, 1, 2],
    }))  # fmt: skip
    f = trace(store, corr).to_polars()
    # Both members of the loop are flagged and have no depth; the root is untouched.
    assert f.select("event_type", "caused_by_position", "depth", "problem").rows() == [
        ("Root", None, 0, None), ("A", 3, None, "cycle"), ("B", 2, None, "cycle"),
    ]


def test_a_bad_correlation_id_is_refused():
    with pytest.raises(ValueError, match="'correlation_id' must be a non-empty str or an event \\(got 3\\)"):
        trace(es.InMemoryEventStore(), 3)


def test_an_unknown_correlation_gives_an_empty_trace():
    assert len(trace(es.InMemoryEventStore(), "nope")) == 0


def test_the_display_is_escaped_and_the_swimlane_has_one_lane_per_stream_and_one_arrow_per_link():
    store = es.InMemoryEventStore()
    placed = fulfilled(store)
    t = trace(store, placed)
    assert "<b>trace" in t._repr_html_() and "OrderShipped" in t._repr_html_()
    ax = trace_swimlane(t)
    assert [tick.get_text() for tick in ax.get_yticklabels()] == t.streams
    arrows = [c for c in ax.texts if getattr(c, "arrow_patch", None) is not None]
    assert len(arrows) == t.frame["caused_by_position"].is_not_null().sum()
    with pytest.raises(ValueError, match="missing columns"):
        trace_swimlane(pl.DataFrame({"position": [1]}))
    esc = es.InMemoryEventStore()
    e = esc.append("<s>-1", [es.NewEvent("X", {"n": 1})])[0]
    assert "<s>" not in trace(esc, e)._repr_html_()


def test_a_cause_recorded_after_its_effect_is_reported():
    store = es.InMemoryEventStore()
    corr, late = new_id(), new_id()
    store.append_frame(pl.DataFrame({
        "stream_id": ["x-1"] * 3, "event_type": ["Root", "Early", "Late"],
        "event_id": [corr, new_id(), late], "correlation_id": [corr] * 3,
        "causation_id": [None, late, corr], "n": [0, 1, 2],
    }))  # fmt: skip
    f = trace(store, corr).to_polars()
    assert f.select("event_type", "depth", "problem").rows() == [
        ("Root", 0, None), ("Early", 2, "cause recorded later"), ("Late", 1, None),
    ]
