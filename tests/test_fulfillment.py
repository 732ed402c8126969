"""The shipped OrderFulfillment saga: the happy path, the failed payment (the canonical
scenario), compensation after a late failure, restarts and a SIGKILL mid-run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import esnotebook as es
from esnotebook.examples import (
    AddItem,
    AddStock,
    Inventory,
    Order,
    Payment,
    PlaceOrder,
    order_domain_bus,
)
from esnotebook.examples.fulfillment import OrderFulfillment
from esnotebook.faults import FaultPlan
from esnotebook.idempotency import duplicate_side_effects
from esnotebook.sagas import SagaRunner

WORKER = Path(__file__).with_name("_saga_worker.py")


def shop(store, orders=(("o-1", {"sku-1": 2, "sku-2": 1}),), stock=10):
    bus = order_domain_bus(store)
    for sku in ("sku-1", "sku-2"):
        bus.dispatch(AddStock(sku, stock))
    for oid, items in orders:
        bus.dispatch(PlaceOrder(oid, "c-1"))
        for sku, q in items.items():
            bus.dispatch(AddItem(oid, sku, q, 250))
    return bus


def types_after(store, position):
    return [e.event_type for e in store.read_all(from_position=position)]


def test_happy_path_reserves_charges_and_ships_once(store):
    bus = shop(store)
    before = store.head_position
    runner = OrderFulfillment().run(store)
    assert types_after(store, before) == [
        "InventoryReserved", "InventoryReserved", "PaymentCharged", "PaymentReceived", "OrderShipped",
    ]  # fmt: skip
    assert runner.instance("o-1").status == "completed"
    assert bus.repository(Inventory).load("sku-1").available == 8
    assert bus.repository(Payment).load("o-1").charged == 750
    assert bus.repository(Order).load("o-1").status == "shipped"


def test_failed_payment_cancels_the_order_then_releases_the_stock(store):
    """The canonical scenario: OrderCancelled, then InventoryReleased; stock back where it
    was; nothing shipped or charged."""
    bus = shop(store)
    available = {s: bus.repository(Inventory).load(s).available for s in ("sku-1", "sku-2")}
    before = store.head_position
    plan = FaultPlan().permanent("ChargePayment", reason="card declined")
    runner = OrderFulfillment().run(store, faults=plan)

    seen = types_after(store, before)
    assert seen == ["InventoryReserved", "InventoryReserved", "PaymentFailed", "OrderCancelled",
                    "InventoryReleased", "InventoryReleased"]  # fmt: skip
    assert seen.index("OrderCancelled") < seen.index("InventoryReleased")
    assert {s: bus.repository(Inventory).load(s).available for s in available} == available
    assert "OrderShipped" not in seen and "PaymentCharged" not in seen
    order = bus.repository(Order).load("o-1")
    assert order.status == "cancelled" and "card declined" in order.cancel_reason
    inst = runner.instance("o-1")
    assert inst.status == "compensated" and inst.step == "charge"
    # Compensations of the reserve step run newest first.
    undo = inst.history.filter(pl.col("phase") == "undo")["idempotency_key"].to_list()
    assert undo == ["OrderFulfillment:o-1:undo:reserve:1", "OrderFulfillment:o-1:undo:reserve:0"]


def test_a_failure_after_the_charge_refunds_it_too(store):
    """ShipOrder failing for good undoes every completed step, newest first: cancel, refund,
    release."""
    bus = shop(store)
    before = store.head_position
    OrderFulfillment().run(store, faults=FaultPlan().permanent("ShipOrder"))
    seen = types_after(store, before)
    tail = seen[seen.index("PaymentReceived") + 1:]
    assert tail == ["OrderCancelled", "PaymentRefunded", "InventoryReleased", "InventoryReleased"]
    assert bus.repository(Payment).load("o-1").status == "refunded"
    assert bus.repository(Inventory).load("sku-1").reserved == 0


def test_an_order_placed_without_items_is_cancelled_not_crashed(store):
    shop(store, orders=(("o-9", {}),))
    runner = OrderFulfillment().run(store)
    assert runner.instance("o-9").status == "compensated"
    assert "no items" in runner.instance("o-9").failure


def test_instances_and_checkpoint_survive_a_restart_on_the_parquet_store(tmp_path):
    """Per-instance state lives in <store>/sagas/<name>/; a new runner continues from it."""
    path = tmp_path / "shop"
    store = es.ParquetEventStore(path)
    shop(store, orders=[(f"o-{i}", {"sku-1": 1}) for i in range(4)], stock=3)
    first = SagaRunner(OrderFulfillment(), store)
    first.catch_up(max_events=4)  # the stock events and the first order
    assert first.summary()["completed"] == 1
    store.close()

    store = es.ParquetEventStore(path)
    second = SagaRunner(OrderFulfillment(), store)
    assert (path / "sagas" / "OrderFulfillment" / "manifest.json").exists()
    assert second.checkpoint == first.checkpoint
    assert second.instances().equals(first.instances())
    second.catch_up()
    # Stock 3 for 4 orders: the last is refused at the reservation and compensated.
    assert second.summary() == {**dict.fromkeys(second.summary(), 0), "completed": 3, "compensated": 1}
    assert duplicate_side_effects(store).height == 0
    store.close()


@pytest.mark.parametrize("kill_after", [2, 9])
def test_sigkill_between_a_command_and_the_checkpoint_leaves_no_duplicate_and_no_stuck_instance(tmp_path, kill_after):
    path = tmp_path / "shop"
    store = es.ParquetEventStore(path)
    shop(store, orders=[("o-1", {"sku-1": 1}), ("o-2", {"sku-1": 2, "sku-2": 1}), ("o-3", {"sku-2": 1})])
    store.close()
    before = es.ParquetEventStore(path).head_position

    killed = subprocess.run([sys.executable, str(WORKER), str(path), str(kill_after)], capture_output=True, timeout=120, check=False)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    store = es.ParquetEventStore(path)
    assert store.head_position > before  # it died after storing something

    sys.path.insert(0, str(WORKER.parent))
    try:
        from _saga_worker import PLAN
    finally:
        sys.path.remove(str(WORKER.parent))
    runner = SagaRunner(OrderFulfillment(), store, faults=PLAN)
    runner.catch_up()

    # The command that was stored but never acknowledged is sent again and absorbed.
    assert "duplicate" in runner.history()["outcome"].to_list()
    assert duplicate_side_effects(store).height == 0
    status = dict(runner.instances().select("instance_id", "status").iter_rows())
    assert status == {"o-1": "compensated", "o-2": "completed", "o-3": "completed"}
    frame = store.to_polars()
    assert frame.filter(pl.col("event_type") == "OrderShipped")["stream_id"].sort().to_list() == ["order-o-2", "order-o-3"]
    assert frame.filter(pl.col("event_type") == "PaymentCharged").height == 2
    bus = order_domain_bus(store)
    assert bus.repository(Inventory).load("sku-1").reserved == 2  # o-2 only; o-1 released
    assert bus.repository(Inventory).load("sku-2").reserved == 2
    assert runner.checkpoint == store.head_position
    store.close()
