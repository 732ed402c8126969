"""The two projection forms: handler dispatch and row updates; the vectorised fold contract."""

from __future__ import annotations

import itertools

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_readmodels import PROPERTY, fill_store, new_store, order_histories

import esnotebook as es
from esnotebook.projections import EventRow, Projection, VectorisedProjection


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


class CarelessCounter(Projection):
    """Counts a stream's events by changing its row in place, and fails on the SKU 'poison'
    after the change: only the row copy a handler gets keeps the state as it was."""

    schema = {"stream_id": pl.String(), "events": pl.Int64()}

    def on_OrderPlaced(self, row, event):
        return {"stream_id": event.stream_id, "events": 1}

    def on_ItemAdded(self, row, event):
        row["events"] += 1
        if event.data["sku"] == "poison":
            raise ValueError("poison")
        return row


def test_a_handler_that_changes_its_row_and_then_raises_leaves_the_state_as_it_was():
    """A handler gets its own copy of the row: what it changed before raising is not stored."""
    p = CarelessCounter()
    store = es.InMemoryEventStore()
    poison = {"order_id": "1", "sku": "poison", "quantity": 1, "price": 1}
    fill_store(store, [("order-1", "ItemAdded", poison)])
    state = {"order-1": {"stream_id": "order-1", "events": 1}}
    with pytest.raises(ValueError, match="poison"):
        p.apply(state, next(store.read_all()))
    assert state == {"order-1": {"stream_id": "order-1", "events": 1}}


def test_the_runner_retries_and_dead_letters_a_handler_that_changed_its_row_without_a_trace():
    """Each attempt at an event gets a fresh copy of the row: three failed attempts that each
    changed it leave the row as it was, and the events after it still apply."""
    store = es.InMemoryEventStore()
    fill_store(store, [
        ("order-1", "OrderPlaced", {"order_id": "1", "customer": "ada"}),
        ("order-1", "ItemAdded", {"order_id": "1", "sku": "tea", "quantity": 1, "price": 1}),
        ("order-1", "ItemAdded", {"order_id": "1", "sku": "poison", "quantity": 1, "price": 1}),
        ("order-1", "ItemAdded", {"order_id": "1", "sku": "mug", "quantity": 1, "price": 1}),
    ])  # fmt: skip
    runner = es.ProjectionRunner(store, CarelessCounter(), max_attempts=3)
    runner.catch_up()
    assert runner.dead_letters.positions == [3]
    assert runner.state.rows() == [("order-1", 3)]


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


@PROPERTY
@given(history=order_histories(), lo=st.integers(0, 10), span=st.integers(1, 40))
def test_event_rows_carry_what_recorded_events_carry(history, lo, span):
    """EventRow.from_store gives, for any position range, exactly the events read_all gives:
    the same attributes and ``data`` (only the event type's own fields), in position order."""
    store = new_store(history)
    lo = min(lo, store.head_position)
    hi = min(lo + span, store.head_position)
    rows = EventRow.from_store(store, lo, hi)
    events = list(store.read_all(from_position=lo, to_position=hi))
    assert [r.to_recorded() for r in rows] == events
    for row, event in zip(rows, events):
        assert (row.position, row.stream_id, row.type, row.data, row.recorded_at) == (
            event.position, event.stream_id, event.event_type, event.data, event.recorded_at
        )
        assert row.recorded_at.tzinfo is event.recorded_at.tzinfo  # one tzinfo everywhere


def test_event_rows_of_a_parquet_store_decode_metadata_and_ids(tmp_path):
    """Rows read from Parquet files keep metadata, correlation and causation ids."""
    store = es.ParquetEventStore(tmp_path / "s", durable=False)
    store.append("order-1", [es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "ada"},
                                         metadata={"user": "u1"}, correlation_id="c-9")])  # fmt: skip
    store.append("order-1", [es.NewEvent("OrderShipped", {"order_id": "1"}, causation_id="x-1")])
    rows = EventRow.from_store(store, 0, 2, event_types=["OrderPlaced", "OrderShipped"])
    assert [r.to_recorded() for r in rows] == list(store.read_all())
    assert rows[0].metadata == {"user": "u1"} and rows[0].correlation_id == "c-9"
    assert rows[1].causation_id == "x-1" and rows[1].data == {"order_id": "1"}
    store.close()
