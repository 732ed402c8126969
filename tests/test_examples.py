"""The shipped order domain: Order, Inventory and Payment rules, and generated histories."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import esnotebook as es
from esnotebook.errors import DomainException
from esnotebook.examples import (
    AddItem,
    AddStock,
    CancelOrder,
    ChargePayment,
    FailOrderPayment,
    FailPayment,
    InsufficientStock,
    Inventory,
    InventoryRuleViolated,
    Order,
    OrderRuleViolated,
    PayOrder,
    Payment,
    PaymentRuleViolated,
    PlaceOrder,
    RefundPayment,
    ReleaseInventory,
    RemoveItem,
    ReserveInventory,
    ShipOrder,
    order_domain_bus,
)
from esnotebook.repository import Repository

# The fixed order-domain schema every part of the package relies on.
ORDER_SCHEMA = {
    "OrderPlaced": {"order_id": pl.String, "customer": pl.String},
    "ItemAdded": {"order_id": pl.String, "sku": pl.String, "quantity": pl.Int64, "price": pl.Int64},
    "ItemRemoved": {"order_id": pl.String, "sku": pl.String, "quantity": pl.Int64},
    "PaymentReceived": {"order_id": pl.String, "amount": pl.Int64},
    "PaymentFailed": {"order_id": pl.String, "amount": pl.Int64, "reason": pl.String},
    "OrderShipped": {"order_id": pl.String},
    "OrderCancelled": {"order_id": pl.String, "reason": pl.String},
}


def placed(*items):
    order = Order("o-1")
    order.place("c-1")
    for sku, qty, price in items:
        order.add_item(sku, qty, price)
    return order


# ---------------------------------------------------------------------- Order
def test_order_events_follow_the_fixed_schema(store):
    bus = order_domain_bus(store)
    for cmd in (PlaceOrder("o-1", "c-1"), AddItem("o-1", "a", 2, 100), RemoveItem("o-1", "a", 1)):
        bus.dispatch(cmd)
    bus.dispatch(FailOrderPayment("o-1", 100, "card declined"))
    bus.dispatch(PayOrder("o-1", 100))
    bus.dispatch(ShipOrder("o-1"))
    bus.dispatch(PlaceOrder("o-2", "c-1"))
    bus.dispatch(CancelOrder("o-2", "changed mind"))
    assert {t: store.schema(t) for t in store.event_types()} == ORDER_SCHEMA
    order = bus.repository(Order).load("o-1")
    assert (order.status, order.total, order.amount_paid, order.failed_payments) == ("shipped", 100, 100, 1)


@pytest.mark.parametrize(
    ("setup", "action", "message"),
    [
        (lambda o: None, lambda o: o.place("c-2"), "is already placed"),
        (lambda o: o.pay(200), lambda o: o.add_item("b", 1, 5), "items can change only before payment"),
        (lambda o: None, lambda o: o.add_item("a", 1, 999), "already in the order at unit price 100, not 999"),
        (lambda o: None, lambda o: o.remove_item("a", 3), "cannot remove 3 of sku 'a': the order holds 2"),
        (lambda o: None, lambda o: o.remove_item("zz", 1), "the order holds 0"),
        (lambda o: None, lambda o: o.pay(199), r"exact total 200 \(got 199\)"),
        (lambda o: o.pay(200), lambda o: o.pay(200), "it can be paid only once"),
        (lambda o: o.pay(200), lambda o: o.fail_payment(200, "x"), "no payment is pending"),
        (lambda o: None, lambda o: o.ship(), r"only a paid order can ship \(the order is placed\)"),
        (lambda o: (o.pay(200), o.ship()), lambda o: o.cancel("late"), "cannot cancel: the order is shipped"),
        (lambda o: o.cancel("x"), lambda o: o.pay(200), "cannot pay: the order is cancelled"),
        (lambda o: o.cancel("x"), lambda o: o.cancel("y"), "cannot cancel: the order is cancelled"),
    ],
)
def test_order_rules_reject_with_a_message_naming_the_rule(setup, action, message):
    order = placed(("a", 2, 100))
    setup(order)
    before = (order.get_state(), order.version)
    with pytest.raises(OrderRuleViolated, match=message):
        action(order)
    assert (order.get_state(), order.version) == before


def test_an_order_must_be_placed_first_and_cannot_pay_when_empty():
    with pytest.raises(OrderRuleViolated, match="cannot add items before the order is placed"):
        Order("o-1").add_item("a", 1, 1)
    with pytest.raises(OrderRuleViolated, match="no items cannot be paid"):
        placed().pay(0)
    paid_after_failure = placed(("a", 1, 50))
    paid_after_failure.fail_payment(50, "declined")
    paid_after_failure.pay(50)
    assert paid_after_failure.status == "paid"


def test_bad_arguments_are_not_business_rules():
    order = placed()
    with pytest.raises(ValueError, match=r"'quantity' must be > 0 \(got 0\)"):
        order.add_item("a", 0, 100)
    with pytest.raises(TypeError, match=r"'price' must be an int number of cents \(got float 1.5\)"):
        order.add_item("a", 1, 1.5)
    with pytest.raises(ValueError, match=r"'sku' must be a non-empty str \(got ''\)"):
        order.add_item("", 1, 1)
    assert order.version == 1


# ---------------------------------------------------------------------- Inventory
def test_inventory_never_reserves_beyond_stock_and_releases_only_what_is_held():
    stock = Inventory("sku-1")
    with pytest.raises(InsufficientStock, match="cannot reserve 1 for order 'o-1': only 0 available"):
        stock.reserve("o-1", 1)
    stock.add_stock(4)
    stock.reserve("o-1", 3)
    with pytest.raises(InventoryRuleViolated, match="order 'o-2' holds no reservation"):
        stock.release("o-2")
    with pytest.raises(InventoryRuleViolated, match="cannot release 5 for order 'o-1': it holds 3"):
        stock.release("o-1", 5)
    stock.release("o-1")
    assert (stock.available, stock.reservations) == (4, {})


@given(st.lists(st.tuples(st.sampled_from(["add", "reserve", "release"]), st.integers(0, 3), st.integers(1, 5)), max_size=40))
@settings(max_examples=60, deadline=None)
def test_inventory_availability_never_drops_below_zero(ops):
    stock = Inventory("sku-1")
    for name, who, qty in ops:
        try:
            if name == "add":
                stock.add_stock(qty)
            elif name == "reserve":
                stock.reserve(f"o-{who}", qty)
            else:
                stock.release(f"o-{who}", qty)
        except DomainException:
            pass
        assert stock.available >= 0
        assert stock.reserved == sum(stock.reservations.values())
        assert all(q > 0 for q in stock.reservations.values())


# ---------------------------------------------------------------------- Payment
def test_payment_charges_once_and_refunds_at_most_the_charge():
    p = Payment("o-1")
    with pytest.raises(PaymentRuleViolated, match=r"nothing was charged \(status new\)"):
        p.refund(1, "x")
    p.fail(500, "declined")
    p.charge(500)
    with pytest.raises(PaymentRuleViolated, match="already charged; an order is charged once"):
        p.charge(500)
    with pytest.raises(PaymentRuleViolated, match="already charged; nothing left to fail"):
        p.fail(500, "late")
    p.refund(300, "return")
    with pytest.raises(PaymentRuleViolated, match="cannot refund 201: only 200 of 500 is left"):
        p.refund(201, "greedy")
    p.refund(200, "rest")
    assert (p.status, p.refunded, p.attempts) == ("refunded", 500, 2)


def test_the_domain_bus_runs_the_fulfilment_steps_and_their_compensations(store):
    """Reserve, fail to charge, release: stock is back where it was."""
    bus = order_domain_bus(store)
    bus.dispatch(AddStock("sku-1", 5))
    bus.dispatch(PlaceOrder("o-1", "c-1"))
    bus.dispatch(AddItem("o-1", "sku-1", 2, 300))
    bus.dispatch(ReserveInventory("sku-1", "o-1", 2))
    bus.dispatch(FailPayment("o-1", 600, "card declined"))
    bus.dispatch(CancelOrder("o-1", "payment failed"))
    bus.dispatch(ReleaseInventory("sku-1", "o-1"))
    stock = bus.repository(Inventory).load("sku-1")
    assert (stock.on_hand, stock.available) == (5, 5)
    assert bus.repository(Payment).load("o-1").status == "failed"
    bus.dispatch(ChargePayment("o-2", 100))
    bus.dispatch(RefundPayment("o-2", 100, "goodwill"))
    assert bus.repository(Payment).load("o-2").status == "refunded"
    assert store.streams() == ["inventory-sku-1", "order-o-1", "payment-o-1", "payment-o-2"]
    assert store.schema("PaymentFailed") == ORDER_SCHEMA["PaymentFailed"]


# ---------------------------------------------------------------------- generated histories
def run_event(order: Order, event_type: str, row: dict) -> None:
    """Carry out the command that produced ``event_type``: its rules are checked again."""
    if event_type == "OrderPlaced":
        order.place(row["customer"])
    elif event_type == "ItemAdded":
        order.add_item(row["sku"], row["quantity"], row["price"])
    elif event_type == "ItemRemoved":
        order.remove_item(row["sku"], row["quantity"])
    elif event_type == "PaymentReceived":
        order.pay(row["amount"])
    elif event_type == "PaymentFailed":
        order.fail_payment(row["amount"], row["reason"])
    elif event_type == "OrderShipped":
        order.ship()
    elif event_type == "OrderCancelled":
        order.cancel(row["reason"])
    else:
        raise AssertionError(f"unexpected event type {event_type}")


@pytest.mark.parametrize("seed", [0, 7])
def test_generated_histories_are_valid_for_the_order_aggregate(seed):
    """Every generated order, re-run command by command, breaks no rule, and replaying the
    stored stream gives the same state."""
    datasets = pytest.importorskip("esnotebook.datasets")
    frame = datasets.generate_orders(400, seed=seed)
    store = es.InMemoryEventStore()
    store.append_frame(frame)
    orders = Repository(store, Order)
    rows = store.scan().sort("stream_id", "version").collect()
    live: dict[str, Order] = {}
    for row in rows.iter_rows(named=True):
        order = live.setdefault(row["stream_id"], Order(row["stream_id"].removeprefix("order-")))
        run_event(order, row["event_type"], row)
    assert len(live) == 400
    for stream_id in list(live)[:60]:
        order = live[stream_id]
        assert orders.load(order.id) == order
    statuses = {o.status for o in live.values()}
    assert {"placed", "paid", "shipped", "cancelled"} <= statuses
