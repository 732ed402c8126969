"""Saga throughput on the in-memory store, beside a bare command loop and eventsourcing.

The same work for each of N orders (two skus each, 20 skus in all): reserve both skus,
charge the payment, record it on the order, ship. Rows:

- ``esnotebook saga``: :class:`OrderFulfillment` run by a :class:`SagaRunner` reading the
  store (idempotency keys on / off; and with a 10 % transient-fault plan, retried).
- ``bare bus loop``: the same commands dispatched by a hand-written loop on the same
  command bus, no saga, no keys - what the saga engine itself costs is the difference.
- ``eventsourcing ProcessApplication``: the peer, a process application (in-memory "POPO"
  recorder, ``SingleThreadedRunner``) whose policy reacts to each order placed by reserving
  stock, charging and recording the shipment on its own aggregates, one atomic processing
  event per order (it does not cross back to the order aggregate, so it does a little less).
- ``trace``: :func:`esnotebook.tracing.trace` of one order in the store afterwards.

Run: ``python benchmarks/bench_sagas.py [--orders 500] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import esnotebook as es
from esnotebook.examples import (
    AddItem,
    AddStock,
    ChargePayment,
    PayOrder,
    PlaceOrder,
    ReserveInventory,
    ShipOrder,
    order_domain_bus,
)  # fmt: skip
from esnotebook.examples.fulfillment import OrderFulfillment
from esnotebook.faults import FaultPlan
from esnotebook.sagas import SagaRunner
from esnotebook.tracing import trace

SKUS = 20


def orders(n: int) -> list[tuple[str, list[tuple[str, int]]]]:
    return [(f"o-{i}", [(f"sku-{i % SKUS}", 1), (f"sku-{(i + 7) % SKUS}", 2)]) for i in range(n)]


def shop(n: int) -> Any:
    store = es.InMemoryEventStore()
    bus = order_domain_bus(store)
    for k in range(SKUS):
        bus.dispatch(AddStock(f"sku-{k}", 10**6))
    for oid, items in orders(n):
        bus.dispatch(PlaceOrder(oid, "c-1"))
        for sku, q in items:
            bus.dispatch(AddItem(oid, sku, q, 100))
    return store


def run_saga(n: int, **options: Any) -> float:
    store = shop(n)
    runner = SagaRunner(OrderFulfillment(), store, **options)
    t = time.perf_counter()
    runner.catch_up()
    dt = time.perf_counter() - t
    done = runner.summary()
    assert done["completed"] + done["compensated"] == n, done  # faults may make a few give up
    return dt


def run_bare(n: int) -> float:
    store = shop(n)
    bus = order_domain_bus(store)
    t = time.perf_counter()
    for oid, items in orders(n):
        for sku, q in items:
            bus.dispatch(ReserveInventory(sku, oid, q))
        total = sum(q * 100 for _, q in items)
        bus.dispatch(ChargePayment(oid, total))
        bus.dispatch(PayOrder(oid, total))
        bus.dispatch(ShipOrder(oid))
    return time.perf_counter() - t


@functools.cache
def _eventsourcing() -> tuple[Any, Any, Any, Any]:
    """The peer's classes, defined once (eventsourcing registers each class by its topic)."""
    from uuid import NAMESPACE_URL, uuid5

    from eventsourcing.application import Application
    from eventsourcing.dispatch import singledispatchmethod
    from eventsourcing.domain import Aggregate, event
    from eventsourcing.system import ProcessApplication

    class EsOrder(Aggregate):
        @event("Placed")
        def __init__(self, order_id: str, items: list[list[Any]]) -> None:
            self.order_id = order_id
            self.items = items

    class EsStock(Aggregate):
        @staticmethod
        def create_id(sku: str) -> Any:
            return uuid5(NAMESPACE_URL, f"/stock/{sku}")

        @event("Added")
        def __init__(self, sku: str, quantity: int) -> None:
            self.sku, self.on_hand, self.reserved = sku, quantity, 0

        @event("Reserved")
        def reserve(self, order_id: str, quantity: int) -> None:
            self.reserved += quantity

    class EsPayment(Aggregate):
        @event("Charged")
        def __init__(self, order_id: str, amount: int) -> None:
            self.amount = amount

    class EsShipment(Aggregate):
        @event("Shipped")
        def __init__(self, order_id: str) -> None:
            self.order_id = order_id

    class Orders(Application):
        def place(self, order_id: str, items: list[list[Any]]) -> None:
            self.save(EsOrder(order_id, items))

    class Fulfillment(ProcessApplication):
        def add_stock(self, sku: str, quantity: int) -> None:
            self.save(EsStock(sku, quantity))

        @singledispatchmethod
        def policy(self, domain_event: Any, processing_event: Any) -> None:
            pass

        @policy.register(EsOrder.Placed)
        def _(self, domain_event: Any, processing_event: Any) -> None:
            total = 0
            for sku, q in domain_event.items:
                stock = self.repository.get(EsStock.create_id(sku))
                stock.reserve(domain_event.order_id, q)
                processing_event.collect_events(stock)
                total += q * 100
            processing_event.collect_events(EsPayment(domain_event.order_id, total))
            processing_event.collect_events(EsShipment(domain_event.order_id))

    return Orders, Fulfillment, EsOrder, Application


def run_eventsourcing(n: int) -> float:
    from eventsourcing.system import SingleThreadedRunner, System

    orders_app, fulfillment, _, _ = _eventsourcing()
    runner = SingleThreadedRunner(System(pipes=[[orders_app, fulfillment]]))
    runner.start()
    try:
        app, proc = runner.get(orders_app), runner.get(fulfillment)
        for k in range(SKUS):
            proc.add_stock(f"sku-{k}", 10**6)
        t = time.perf_counter()
        for oid, items in orders(n):
            app.place(oid, [list(x) for x in items])
        return time.perf_counter() - t
    finally:
        runner.stop()


def run_placing_only_eventsourcing(n: int) -> float:
    """The peer's cost of placing the orders alone, subtracted from its total."""
    _, _, es_order, application = _eventsourcing()
    app: Any = application()
    t = time.perf_counter()
    for oid, items in orders(n):
        app.save(es_order(oid, [list(x) for x in items]))
    return time.perf_counter() - t


def median(fn: Any, repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, r = args.orders, args.repeats

    peer = median(lambda: run_eventsourcing(n), r) - median(lambda: run_placing_only_eventsourcing(n), r)
    rows = [
        ("esnotebook saga, keys on", median(lambda: run_saga(n), r)),
        ("esnotebook saga, keys off", median(lambda: run_saga(n, idempotency="off"), r)),
        ("esnotebook saga, keys on, 10% transient faults",
         median(lambda: run_saga(n, faults=FaultPlan.random(seed=1, transient=0.1)), r)),
        ("bare bus loop (same commands, no saga)", median(lambda: run_bare(n), r)),
        ("eventsourcing ProcessApplication (peer)", peer),
    ]  # fmt: skip
    print(f"{n} orders, median of {r} runs, in-memory stores")
    print(f"{'':48s} {'orders/s':>10s} {'peer/ours':>10s}")
    for name, seconds in rows:
        print(f"{name:48s} {n / seconds:10.0f} {peer / seconds:10.2f}")

    store = shop(n)
    runner = SagaRunner(OrderFulfillment(), store)
    runner.catch_up()
    corr = next(store.read_all(event_types=["OrderPlaced"])).correlation_id
    t = median(lambda: _trace_time(store, corr), r)
    print(f"trace of one order in a store of {len(store)} events: {t * 1000:.1f} ms")


def _trace_time(store: Any, corr: str) -> float:
    t = time.perf_counter()
    trace(store, corr)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
