"""Aggregate load time against history length, with and without snapshots, beside eventsourcing.

One Inventory stream of 100, 1 k, 10 k and 100 k events (stock added, reserved, released in
turn) is loaded by ``Repository.load`` from the in-memory and the Parquet store, replaying
in full and from a snapshot, and by the ``eventsourcing`` library (its in-memory "POPO"
recorder) on the same aggregate written with its own API, replaying in full and from its
snapshot. Both snapshots sit where ``snapshot_every=100`` leaves them after the last save:
at the stream's last version, so the load reads the snapshot and an empty tail.

A second table times the write side: a plain loop of order-domain commands on the
in-memory store (per order: place it, add an item, reserve the stock, pay, ship - five
commands, each loading its aggregate, running the command and saving the new event),
dispatched by :class:`~esnotebook.commands.CommandBus` beside the same commands written
for ``eventsourcing`` (``repository.get``, call the command method, ``save``).

Run: ``python benchmarks/bench_aggregates.py [--sizes 100,1000,10000,100000] [--repeats 5]
[--orders 2000]``

Targets (issue 3): with snapshots, loading the 100 k-event aggregate takes at most 2x the
100-event one; without snapshots, full replay runs at >= 3x eventsourcing's replay rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import esnotebook as es  # noqa: E402
from esnotebook.examples import Inventory  # noqa: E402
from esnotebook.repository import Repository  # noqa: E402
from esnotebook.snapshots import InMemorySnapshotStore, ParquetSnapshotStore  # noqa: E402

SKU = "sku-1"


def history(n: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` valid Inventory events: add 2, reserve 1 for an order, release it, repeat."""
    out = []
    for i in range(n):
        step = i % 3
        if step == 0:
            out.append(("InventoryAdded", {"sku": SKU, "quantity": 2}))
        elif step == 1:
            out.append(("InventoryReserved", {"sku": SKU, "order_id": f"o-{i}", "quantity": 1}))
        else:
            out.append(("InventoryReleased", {"sku": SKU, "order_id": f"o-{i - 1}", "quantity": 1}))
    return out


def timed(fn: Any, repeats: int) -> float:
    """Median seconds of ``repeats`` calls (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


# ---------------------------------------------------------------------- esnotebook
def ours(kind: str, n: int, repeats: int, folder: Path) -> dict[str, float]:
    if kind == "memory":
        store = es.InMemoryEventStore()
        snapshots: Any = InMemorySnapshotStore()
    else:
        store = es.ParquetEventStore(folder / f"store-{n}", durable=False)
        snapshots = ParquetSnapshotStore(store)
    store.append(Inventory.stream_id_for(SKU), [es.NewEvent(t, d) for t, d in history(n)])
    plain = Repository(store, Inventory)
    snapped = Repository(store, Inventory, snapshots=snapshots, snapshot_every=100)
    snapped.take_snapshot(SKU)
    full = plain.load(SKU)
    assert full == snapped.load(SKU) and full.version == n
    reps = repeats if n <= 10_000 else max(3, repeats // 2)
    return {
        "replay": timed(lambda: plain.load(SKU), reps),
        "snapshot": timed(lambda: snapped.load(SKU), repeats),
    }


# ---------------------------------------------------------------------- eventsourcing
_PEER: dict[str, Any] = {}


def peer_classes() -> dict[str, Any] | None:
    """eventsourcing's version of the Inventory aggregate, defined once (its topics are global)."""
    if _PEER:
        return _PEER
    try:
        from eventsourcing.application import Application, project_aggregate
        from eventsourcing.domain import Aggregate, event
    except ImportError:
        print("eventsourcing is not installed: pip install eventsourcing", file=sys.stderr)
        return None

    class EsInventory(Aggregate):
        @event("Created")
        def __init__(self, sku: str) -> None:
            self.sku = sku
            self.on_hand = 0
            self.reserved = 0
            self.reservations: dict[str, int] = {}

        @event("InventoryAdded")
        def add_stock(self, quantity: int) -> None:
            self.on_hand += quantity

        @event("InventoryReserved")
        def reserve(self, order_id: str, quantity: int) -> None:
            self.reserved += quantity
            self.reservations[order_id] = self.reservations.get(order_id, 0) + quantity

        @event("InventoryReleased")
        def release(self, order_id: str, quantity: int) -> None:
            self.reserved -= quantity
            left = self.reservations[order_id] - quantity
            if left:
                self.reservations[order_id] = left
            else:
                del self.reservations[order_id]

    class Shop(Application):  # type: ignore[type-arg]
        is_snapshotting_enabled = True

    _PEER.update(EsInventory=EsInventory, Shop=Shop, project_aggregate=project_aggregate)
    return _PEER


def peer(n: int, repeats: int) -> dict[str, float] | None:
    classes = peer_classes()
    if classes is None:
        return None
    EsInventory, Shop, project_aggregate = (
        classes["EsInventory"], classes["Shop"], classes["project_aggregate"]
    )
    app = Shop()
    agg = EsInventory(SKU)  # its "Created" event is version 1: n - 1 more make n events
    for kind, data in history(n - 1):
        if kind == "InventoryAdded":
            agg.add_stock(data["quantity"])
        elif kind == "InventoryReserved":
            agg.reserve(data["order_id"], data["quantity"])
        else:
            agg.release(data["order_id"], data["quantity"])
    app.save(agg)
    app.take_snapshot(agg.id)
    assert app.repository.get(agg.id).version == n

    # Full replay: what its repository does when it has no snapshot store (project the
    # stored events onto nothing), called directly because this app does have one.
    def full() -> Any:
        return project_aggregate(None, app.repository.event_store.get(agg.id))

    assert full().version == n
    reps = repeats if n <= 10_000 else max(3, repeats // 2)
    return {
        "replay": timed(full, reps),
        "snapshot": timed(lambda: app.repository.get(agg.id), repeats),
    }


# ---------------------------------------------------------------------- command loop
COMMAND_SKUS = 20
COMMANDS_PER_ORDER = 5


def our_commands(orders: int) -> float:
    """Seconds to dispatch ``orders`` x 5 commands on a fresh in-memory store."""
    from esnotebook.examples import (
        AddItem,
        AddStock,
        PayOrder,
        PlaceOrder,
        ReserveInventory,
        ShipOrder,
        order_domain_bus,
    )  # fmt: skip

    store = es.InMemoryEventStore()
    bus = order_domain_bus(store)
    for k in range(COMMAND_SKUS):
        bus.dispatch(AddStock(f"sku-{k}", 10**9))
    t = time.perf_counter()
    for i in range(orders):
        oid, sku = f"o-{i}", f"sku-{i % COMMAND_SKUS}"
        bus.dispatch(PlaceOrder(oid, "c-1"))
        bus.dispatch(AddItem(oid, sku, 1, 100))
        bus.dispatch(ReserveInventory(sku, oid, 1))
        bus.dispatch(PayOrder(oid, 100))
        bus.dispatch(ShipOrder(oid))
    dt = time.perf_counter() - t
    assert len(store) == COMMAND_SKUS + COMMANDS_PER_ORDER * orders
    return dt


def peer_commands(orders: int) -> float | None:
    """The same commands with eventsourcing: get the aggregate, call the command, save."""
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
    except ImportError:
        return None
    if "EsOrder" not in _PEER:
        classes = peer_classes()
        assert classes is not None

        class EsOrder(Aggregate):
            @event("OrderPlaced")
            def __init__(self, customer: str) -> None:
                self.customer, self.status, self.items = customer, "placed", {}

            @event("ItemAdded")
            def add_item(self, sku: str, quantity: int, price: int) -> None:
                self.items[sku] = {"quantity": quantity, "price": price}

            @event("PaymentReceived")
            def pay(self, amount: int) -> None:
                self.status = "paid"

            @event("OrderShipped")
            def ship(self) -> None:
                self.status = "shipped"

        class Orders(Application):  # type: ignore[type-arg]
            pass

        _PEER.update(EsOrder=EsOrder, Orders=Orders)
    EsOrder, EsInventory, Orders = _PEER["EsOrder"], _PEER["EsInventory"], _PEER["Orders"]
    app = Orders()
    stock_ids = []
    for k in range(COMMAND_SKUS):
        stock = EsInventory(f"sku-{k}")
        stock.add_stock(10**9)
        app.save(stock)
        stock_ids.append(stock.id)
    t = time.perf_counter()
    for i in range(orders):
        # The same rules as ours, checked before each event (eventsourcing leaves that to us).
        order = EsOrder("c-1")
        app.save(order)
        order = app.repository.get(order.id)
        assert order.status == "placed"
        order.add_item(f"sku-{i % COMMAND_SKUS}", 1, 100)
        app.save(order)
        stock = app.repository.get(stock_ids[i % COMMAND_SKUS])
        assert stock.on_hand - stock.reserved >= 1
        stock.reserve(f"o-{i}", 1)
        app.save(stock)
        order = app.repository.get(order.id)
        assert order.status == "placed" and sum(x["quantity"] * x["price"] for x in order.items.values()) == 100
        order.pay(100)
        app.save(order)
        order = app.repository.get(order.id)
        assert order.status == "paid"
        order.ship()
        app.save(order)
    return time.perf_counter() - t


def command_rows(orders: int, repeats: int) -> None:
    ours_s = statistics.median(our_commands(orders) for _ in range(repeats))
    peer_runs = [peer_commands(orders) for _ in range(repeats)]
    n = orders * COMMANDS_PER_ORDER
    print(f"\nCommand loop: {n} commands ({orders} orders x {COMMANDS_PER_ORDER}), in memory, median of {repeats}")
    print(f"{'':40s} {'commands/s':>11s} {'us/command':>11s} {'speed-up':>9s}")
    peer_s = statistics.median(peer_runs) if None not in peer_runs else float("nan")
    print(f"{'esnotebook CommandBus':40s} {n / ours_s:>11,.0f} {ours_s / n * 1e6:>11.1f} {peer_s / ours_s:>8.1f}x")
    print(f"{'eventsourcing Application (peer)':40s} {n / peer_s:>11,.0f} {peer_s / n * 1e6:>11.1f} {1.0:>8.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--orders", type=int, default=2000, help="orders in the command loop (0: skip it)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    os.environ.setdefault("TQDM_DISABLE", "1")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            theirs = peer(n, args.repeats)
            for kind in ("memory", "parquet"):
                mine = ours(kind, n, args.repeats, Path(tmp))
                rows.append((n, kind, mine, theirs))

    print(f"{'events':>8} {'store':>8} {'mode':>9} {'esnotebook ms':>14} {'ev/s':>11} "
          f"{'eventsourcing ms':>17} {'ev/s':>11} {'speed-up':>9}")  # fmt: skip
    for n, kind, mine, theirs in rows:
        for mode in ("replay", "snapshot"):
            t = mine[mode]
            p = theirs[mode] if theirs else float("nan")
            print(
                f"{n:>8} {kind:>8} {mode:>9} {t * 1e3:>14.2f} {n / t:>11,.0f} "
                f"{p * 1e3:>17.2f} {n / p:>11,.0f} {p / t:>8.1f}x"
            )

    print("\nTargets")
    small, large = min(sizes), max(sizes)
    for kind in ("memory", "parquet"):
        by = {n: m for n, k, m, _ in rows if k == kind}
        ratio = by[large]["snapshot"] / by[small]["snapshot"]
        print(f"  {kind:>8}: snapshot load {large} vs {small} events: {ratio:.2f}x  (target <= 2x)")
    for kind in ("memory", "parquet"):
        mine_rate = large / next(m for n, k, m, _ in rows if k == kind and n == large)["replay"]
        theirs_rate = large / next(t for n, k, _, t in rows if k == kind and n == large)["replay"]
        print(
            f"  {kind:>8}: full replay of {large} events: {mine_rate:,.0f} ev/s vs eventsourcing "
            f"{theirs_rate:,.0f} ev/s = {mine_rate / theirs_rate:.1f}x  (target >= 3x)"
        )
    if args.orders:
        command_rows(args.orders, args.repeats)


if __name__ == "__main__":
    main()
