"""The two projection forms: handler dispatch and row updates; the vectorised fold contract."""

from __future__ import annotations

import itertools

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_readmodels import PROPERTY, fill_store

import esnotebook as es
from esnotebook.projections import Projection, VectorisedProjection


class OpenOrders(Projection):
    """Rows appear on OrderPlaced and disappear on OrderShipped (a handler returning None)."""

    schema = {"stream_id": pl.String(), "customer": pl.String(), "events": pl.Int64()}

    def on_OrderPlaced(self, row, event):
        return {"stream_id": event.stream_id, "customer": event.data["customer"], "events": 1}

    def on_ItemAdded(self, row, event):
        return {**row, "events": row["events"] + 1}

    def on_OrderShipped(self, row, event):
        return None


class ItemsPerSku(VectorisedProjection):
    """Units added per SKU: a keyed sum, the simplest fold that must be batch-independent."""

    key = "sku"
    schema = {"sku": pl.String(), "units": pl.Int64(), "adds": pl.UInt32()}
    event_types = ("ItemAdded",)
    fields = {"sku": pl.String(), "quantity": pl.Int64()}

    def fold(self, state, events):
        new = events.group_by("sku").agg(pl.col("quantity").sum().alias("units"), pl.len().alias("adds"))
        return pl.concat([state, new], how="vertical_relaxed").group_by("sku").agg(
            pl.col("units").sum(), pl.col("adds").sum()
        )


def test_handler_form_lists_its_event_types_and_skips_others():
    """event_types are the on_<Type> methods; events of other types change nothing."""
    p = OpenOrders()
    assert p.event_types == ("ItemAdded", "OrderPlaced", "OrderShipped")
    store = es.InMemoryEventStore()
    fill_store(store, [
        ("order-1", "OrderPlaced", {"order_id": "1", "customer": "ada"}),
        ("order-1", "PaymentFailed", {"order_id": "1", "amount": 1, "reason": "x"}),
        ("order-1", "ItemAdded", {"order_id": "1", "sku": "tea", "quantity": 1, "price": 1}),
        ("order-2", "OrderPlaced", {"order_id": "2", "customer": "bob"}),
        ("order-2", "OrderShipped", {"order_id": "2"}),
    ])  # fmt: skip
    frame = p.rebuild(store.read_all())
    assert frame.rows() == [("order-1", "ada", 2)]  # order-2 deleted by returning None


def test_a_failing_handler_leaves_the_state_as_it_was():
    """apply() changes nothing when the handler raises (handlers return new rows)."""
    p = OpenOrders()
    store = es.InMemoryEventStore()
    fill_store(store, [("order-1", "ItemAdded", {"order_id": "1", "sku": "t", "quantity": 1, "price": 1})])
    state = {"x": {"stream_id": "x", "customer": "c", "events": 1}}
    with pytest.raises(TypeError):
        p.apply(state, next(store.read_all()))  # row is None: None["events"] fails
    assert state == {"x": {"stream_id": "x", "customer": "c", "events": 1}}


def test_handler_state_round_trips_through_its_frame():
    """from_frame(to_frame(state)) is the state: what a restart from a snapshot relies on."""
    p = OpenOrders()
    state = {"b": {"stream_id": "b", "customer": "y", "events": 2}, "a": {"stream_id": "a", "customer": "x", "events": 1}}
    frame = p.to_frame(state)
    assert frame["stream_id"].to_list() == ["a", "b"]  # sorted by key
    assert p.from_frame(frame) == state
    assert p.to_frame({}).schema == pl.Schema(p.schema)


@PROPERTY
@given(
    st.lists(st.tuples(st.sampled_from(["tea", "mug", "pot"]), st.integers(1, 5)), max_size=30),
    st.lists(st.integers(0, 30), max_size=5),
)
def test_vectorised_batches_one_after_another_equal_all_at_once(items, cuts):
    """run(run(s, a), b) == run(s, a + b) for any split of the events into batches."""
    frame = pl.DataFrame(
        {
            "position": list(range(1, len(items) + 1)),
            "stream_id": [f"s{i}" for i in range(len(items))],
            "event_type": ["ItemAdded"] * len(items),
            "sku": [s for s, _ in items],
            "quantity": [q for _, q in items],
        },
        schema={"position": pl.Int64, "stream_id": pl.String, "event_type": pl.String,
                "sku": pl.String, "quantity": pl.Int64},  # fmt: skip
    )
    p = ItemsPerSku()
    whole = p.run(p.initial(), frame)
    state = p.initial()
    bounds = sorted({0, len(items), *(c for c in cuts if c < len(items))})
    for lo, hi in itertools.pairwise(bounds):
        state = p.run(state, frame.slice(lo, hi - lo))
    assert state.equals(whole)
    assert whole["units"].sum() == sum(q for _, q in items)


def test_vectorised_run_supplies_missing_fields_and_drops_other_types():
    """A field the store has never seen arrives as typed nulls; unread event types are dropped."""
    p = ItemsPerSku()
    events = pl.DataFrame({"position": [1, 2], "stream_id": ["a", "b"], "event_type": ["OrderPlaced", "OrderPlaced"]})
    assert p.run(p.initial(), events).height == 0
    with pytest.raises(ValueError, match=r"'engine' must be one of .* \(got 'gpu-ish'\)"):
        p.run(p.initial(), events, engine="gpu-ish")


def test_names_default_to_the_class_name():
    """A projection's name (its folder and DLQ label) defaults to its class name."""
    assert OpenOrders().name == "OpenOrders" and ItemsPerSku.name == "ItemsPerSku"
    assert "form='vectorised'" in repr(ItemsPerSku())
