"""The shipped read models: both forms of OrderSummary agree; incremental equals rebuild.

Also home of the hypothesis strategy for valid order histories (the fixed order schema),
which the runner and dead-letter tests import.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import polars as pl
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import esnotebook as es
from esnotebook.readmodels import CustomerValue, OrderSummary, OrderSummaryFrame, RevenueByDaySku

SKUS = ["tea", "mug", "pot", "cup"]
PROPERTY = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)  # fmt: skip


@st.composite
def order_history(draw, order_id: str) -> list[tuple[str, dict]]:
    """One valid order: placed; items added/removed before payment (never removing more
    than held); failed payments; at most one payment of the exact total; shipped only
    after payment; cancelled only before shipping; nothing after shipping or cancelling."""
    events = [("OrderPlaced", {"order_id": order_id, "customer": draw(st.sampled_from(["ada", "bob", "cy"]))})]
    held: dict[str, int] = {}
    price: dict[str, int] = {}
    total = 0
    paid = False
    for _ in range(draw(st.integers(0, 8))):
        choices = ["cancel"] + (["ship"] if paid else ["add", "fail", "pay"])
        if not paid and any(held.values()):
            choices.append("remove")
        op = draw(st.sampled_from(choices))
        if op == "add":
            sku = draw(st.sampled_from(SKUS))
            q, p = draw(st.integers(1, 3)), draw(st.sampled_from([100, 250, 999]))
            held[sku] = held.get(sku, 0) + q
            price[sku] = p
            total += q * p
            events.append(("ItemAdded", {"order_id": order_id, "sku": sku, "quantity": q, "price": p}))
        elif op == "remove":
            sku = draw(st.sampled_from(sorted(s for s, q in held.items() if q)))
            q = draw(st.integers(1, held[sku]))
            held[sku] -= q
            total -= q * price[sku]
            events.append(("ItemRemoved", {"order_id": order_id, "sku": sku, "quantity": q}))
        elif op == "fail":
            events.append(("PaymentFailed", {"order_id": order_id, "amount": total, "reason": "declined"}))
        elif op == "pay":
            paid = True
            events.append(("PaymentReceived", {"order_id": order_id, "amount": total}))
        elif op == "ship":
            events.append(("OrderShipped", {"order_id": order_id}))
            break
        else:
            events.append(("OrderCancelled", {"order_id": order_id, "reason": "changed mind"}))
            break
    return events


@st.composite
def order_histories(draw, max_orders: int = 6) -> list[tuple[str, str, dict]]:
    """Several valid orders, interleaved at random: ``(stream_id, event_type, data)``."""
    n = draw(st.integers(1, max_orders))
    pending = [list(draw(order_history(f"o{i}"))) for i in range(n)]
    out = []
    while any(pending):
        i = draw(st.sampled_from([k for k, h in enumerate(pending) if h]))
        t, d = pending[i].pop(0)
        out.append((f"order-{d['order_id']}", t, d))
    return out


class Tick:
    """A fake clock: each call is one minute after the last (events span several days)."""

    def __init__(self, start: datetime = datetime(2026, 3, 1, 22, tzinfo=timezone.utc), step: float = 60):
        self.now, self.step = start, timedelta(seconds=step)

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


def fill_store(store, history) -> None:
    for stream_id, event_type, data in history:
        store.append(stream_id, [es.NewEvent(event_type, data)])


def new_store(history, *, hours_per_event: float = 0.1) -> es.InMemoryEventStore:
    store = es.InMemoryEventStore(clock=Tick(step=hours_per_event * 3600))
    fill_store(store, history)
    return store


def _chunks(store, cuts: list[int]) -> list[tuple[int, int]]:
    bounds = sorted({0, store.head_position, *(c for c in cuts if c < store.head_position)})
    return list(itertools.pairwise(bounds))


def fold_in_chunks(projection, store, cuts: list[int], **scan) -> pl.DataFrame:
    state = projection.initial()
    for lo, hi in _chunks(store, cuts):
        state = projection.run(state, store.scan(from_position=lo, to_position=hi, **scan))
    return state


@PROPERTY
@given(order_histories(), st.lists(st.integers(1, 60), max_size=4))
def test_order_summary_forms_agree_and_incremental_equals_rebuild(history, cuts):
    """Handler and vectorised OrderSummary give the identical frame on any valid history, and
    folding it in batches (any cut points) gives the same frame as folding it at once."""
    store = new_store(history)
    handler = OrderSummary().rebuild(store.read_all())
    vector = OrderSummaryFrame()
    rebuilt = vector.rebuild(store.scan(with_stream_number=True))
    assert handler.equals(rebuilt)
    # Its three ways to fold give the same frame: array reductions keyed by the store's
    # stream numbers, by numbers made from stream ids, and the lazy group-by (streaming).
    assert vector.rebuild(store.scan()).equals(rebuilt)
    assert vector.rebuild(store.scan(), engine="streaming").equals(rebuilt)
    assert vector.view(fold_in_chunks(vector, store, cuts, with_stream_number=True)).equals(rebuilt)
    state = vector.initial()
    for lo, hi in _chunks(store, cuts):
        state = vector.run(state, store.scan(from_position=lo, to_position=hi), engine="streaming")
    assert vector.view(state).equals(rebuilt)
    # The handler form applied in the same chunks, restarting from its frame each time.
    p = OrderSummary()
    state = p.initial()
    for lo, hi in _chunks(store, cuts):
        state = p.from_frame(p.to_frame(p.apply_all(store.read_all(from_position=lo, to_position=hi), state)))
    assert p.view(p.to_frame(state)).equals(rebuilt)


@PROPERTY
@given(order_histories())
def test_order_summary_matches_the_history(history):
    """Each row's numbers follow from its own events: items net of removals, total at the
    prices added, amount paid equals the total for paid orders, the latest status wins."""
    frame = OrderSummaryFrame().rebuild(new_store(history).scan())
    for row in frame.iter_rows(named=True):
        mine = [(t, d) for _, t, d in history if d["order_id"] == row["order_id"]]
        added = sum(d["quantity"] for t, d in mine if t == "ItemAdded")
        removed = sum(d["quantity"] for t, d in mine if t == "ItemRemoved")
        assert row["item_count"] == added - removed
        paid = [d["amount"] for t, d in mine if t == "PaymentReceived"]
        assert row["amount_paid"] == sum(paid)
        if paid:
            assert paid[0] == row["total"]
        last_status = [t for t, _ in mine if t not in ("ItemAdded", "ItemRemoved")][-1]
        assert row["status"] == {"OrderPlaced": "placed", "PaymentFailed": "payment_failed",
                                 "PaymentReceived": "paid", "OrderShipped": "shipped",
                                 "OrderCancelled": "cancelled"}[last_status]  # fmt: skip
    assert sorted(frame["order_id"]) == sorted({d["order_id"] for _, _, d in history})


@PROPERTY
@given(order_histories(), st.lists(st.integers(1, 60), max_size=4))
def test_revenue_by_day_sku_incremental_equals_rebuild_and_sums_to_payments(history, cuts):
    """Revenue per day and SKU: batches equal one fold, and all revenue equals all payments."""
    store = new_store(history, hours_per_event=3)
    p = RevenueByDaySku()
    whole = p.run(p.initial(), store.scan())
    assert fold_in_chunks(p, store, cuts).equals(whole)
    paid = sum(d["amount"] for _, t, d in history if t == "PaymentReceived")
    assert p.report(whole)["revenue"].sum() == paid


@PROPERTY
@given(order_histories(), st.lists(st.integers(1, 60), max_size=4))
def test_customer_value_incremental_equals_rebuild_and_sums_payments(history, cuts):
    """Customer lifetime value: batches equal one fold; each customer's value is what their
    orders paid, and orders counts every order placed."""
    store = new_store(history)
    p = CustomerValue()
    whole = p.run(p.initial(), store.scan())
    assert fold_in_chunks(p, store, cuts).equals(whole)
    report = p.report(whole)
    owner = {d["order_id"]: d["customer"] for _, t, d in history if t == "OrderPlaced"}
    for row in report.iter_rows(named=True):
        paid = [d["amount"] for _, t, d in history
                if t == "PaymentReceived" and owner[d["order_id"]] == row["customer"]]  # fmt: skip
        assert row["lifetime_value"] == sum(paid)
        assert row["paid_orders"] == len(paid)
        assert row["orders"] == sum(1 for c in owner.values() if c == row["customer"])


def test_revenue_is_booked_on_the_payment_day_at_the_added_prices():
    """Lines count on the UTC day of PaymentReceived; a removal is valued at its SKU's price."""
    store = es.InMemoryEventStore(clock=Tick(datetime(2026, 3, 1, 23, 58, tzinfo=timezone.utc)))
    fill_store(store, [
        ("order-1", "OrderPlaced", {"order_id": "1", "customer": "ada"}),
        ("order-1", "ItemAdded", {"order_id": "1", "sku": "tea", "quantity": 3, "price": 200}),
        ("order-1", "ItemRemoved", {"order_id": "1", "sku": "tea", "quantity": 1}),
        ("order-1", "PaymentReceived", {"order_id": "1", "amount": 400}),
    ])  # fmt: skip
    p = RevenueByDaySku()
    report = p.report(p.rebuild(store.scan()))
    assert report.rows() == [(datetime(2026, 3, 2).date(), "tea", 2, 400, 1)]


def test_order_summary_refuses_events_of_an_order_never_placed():
    """Both forms raise ProjectionError naming the order when its first event is not OrderPlaced."""
    store = es.InMemoryEventStore()
    fill_store(store, [("order-9", "ItemAdded", {"order_id": "9", "sku": "tea", "quantity": 1, "price": 5})])
    import pytest

    from esnotebook.projections import ProjectionError

    with pytest.raises(ProjectionError, match="'9'.*never placed"):
        OrderSummary().rebuild(store.read_all())
    with pytest.raises(ProjectionError, match="never placed.*'9'"):
        OrderSummaryFrame().rebuild(store.scan())
    with pytest.raises(ProjectionError, match="never placed.*'9'"):
        OrderSummaryFrame().rebuild(store.scan(), engine="streaming")


def test_order_summary_refuses_an_order_placed_twice():
    """A second OrderPlaced for one order is a bad history: both forms raise, naming it."""
    import pytest

    from esnotebook.projections import ProjectionError

    store = new_store([
        ("order-7", "OrderPlaced", {"order_id": "7", "customer": "ada"}),
        ("order-7", "OrderPlaced", {"order_id": "7", "customer": "bob"}),
    ])  # fmt: skip
    with pytest.raises(ProjectionError, match="'7' was already placed"):
        OrderSummary().rebuild(store.read_all())
    with pytest.raises(ProjectionError, match="'7' was placed more than once"):
        OrderSummaryFrame().rebuild(store.scan(with_stream_number=True))


def test_order_summary_rows_are_in_the_order_the_orders_were_placed():
    store = new_store([
        ("order-b", "OrderPlaced", {"order_id": "b", "customer": "ada"}),
        ("order-a", "OrderPlaced", {"order_id": "a", "customer": "bob"}),
        ("order-b", "OrderShipped", {"order_id": "b"}),
    ])  # fmt: skip
    for frame in (OrderSummary().rebuild(store.read_all()), OrderSummaryFrame().rebuild(store.scan())):
        assert frame["order_id"].to_list() == ["b", "a"]
        assert frame["first_position"].to_list() == [1, 2]


def test_the_vectorised_paths_agree_on_a_payment_without_an_amount():
    """A missing number counts as 0 in the array fold, as it does in the lazy fold's sums."""
    store = new_store([
        ("order-2", "OrderPlaced", {"order_id": "2", "customer": "bob"}),
        ("order-2", "PaymentReceived", {"order_id": "2"}),
    ])  # fmt: skip
    p = OrderSummaryFrame()
    arrays = p.rebuild(store.scan(with_stream_number=True))
    assert arrays.equals(p.rebuild(store.scan(), engine="streaming"))
    assert arrays.select("status", "amount_paid").row(0) == ("paid", 0)
