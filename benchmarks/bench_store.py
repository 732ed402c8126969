"""Append and read throughput of both event stores, beside the ``eventsourcing`` library.

Workload: orders of 1 OrderPlaced + 8 ItemAdded + 1 PaymentReceived (10 events each).
Every row is the median of ``--repeats`` runs, printed in events/s beside its peer on the
same work in this same run, with the ratio::

    python benchmarks/bench_store.py                  # about a minute
    python benchmarks/bench_store.py --events 10000000 --repeats 3   # the issue's read target

Targets (issue 2, 2-core machine): append_frame >= 1 M events/s into either store; a loop of
single-order appends into memory >= 5x eventsourcing's in-memory save rate; reading a 10 M
event Parquet store into the canonical frame >= 10 M events/s. Issue 13: what the CRC32C
check of every file costs a freshly opened store (one pass over the file's bytes, once per
store object), beside the same files unchecked (named as layout 3 named them), for a full
read and for a rebuild. Issue 14: a live consumer's read of the newest batch costs the
same in a store made of many small commits as in one made of a single bulk commit.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from esnotebook.events import NewEvent
from esnotebook.readmodels import OrderSummaryFrame
from esnotebook.store import InMemoryEventStore, ParquetEventStore

ITEMS = 8
PER_ORDER = ITEMS + 2


def order_frame(n_orders: int, *, seed: int = 0) -> pl.DataFrame:
    """The benchmark workload as one frame, built with numpy (no per-event Python loop)."""
    rng = np.random.default_rng(seed)
    order = np.repeat(np.arange(n_orders), PER_ORDER)
    slot = np.tile(np.arange(PER_ORDER), n_orders)
    kind = np.where(slot == 0, 0, np.where(slot == PER_ORDER - 1, 2, 1))
    quantity = rng.integers(1, 5, size=(n_orders, ITEMS))
    price = rng.integers(100, 10_000, size=(n_orders, ITEMS))
    total = (quantity * price).sum(axis=1)
    item_q = np.zeros((n_orders, PER_ORDER), dtype=np.int64)
    item_p = np.zeros((n_orders, PER_ORDER), dtype=np.int64)
    item_q[:, 1:-1], item_p[:, 1:-1] = quantity, price
    base = pl.DataFrame({
        "order": order, "slot": slot, "kind": kind, "q": item_q.ravel(), "p": item_p.ravel(),
        "total": np.repeat(total, PER_ORDER),
    })  # fmt: skip
    oid = pl.col("order").cast(pl.String)
    kinds = pl.col("kind")
    return base.select(
        stream_id=pl.lit("order-") + oid,
        event_type=pl.col("kind").replace_strict([0, 1, 2], ["OrderPlaced", "ItemAdded", "PaymentReceived"]),
        order_id=oid,
        customer=pl.when(kinds == 0).then(pl.lit("c-") + (pl.col("order") % 997).cast(pl.String)),
        sku=pl.when(kinds == 1).then(pl.lit("sku-") + pl.col("slot").cast(pl.String)),
        quantity=pl.when(kinds == 1).then(pl.col("q")),
        price=pl.when(kinds == 1).then(pl.col("p")),
        amount=pl.when(kinds == 2).then(pl.col("total")),
    )


def orders_as_dicts(n_orders: int, *, seed: int = 0) -> list[tuple[str, str, list[tuple[str, int, int]], int]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_orders):
        q = rng.integers(1, 5, size=ITEMS).tolist()
        p = rng.integers(100, 10_000, size=ITEMS).tolist()
        out.append((str(i), f"c-{i % 997}", [(f"sku-{j + 1}", q[j], p[j]) for j in range(ITEMS)],
                    sum(a * b for a, b in zip(q, p))))  # fmt: skip
    return out


def ours_append_loop(store, orders) -> None:
    for oid, customer, items, total in orders:
        events = [NewEvent("OrderPlaced", {"order_id": oid, "customer": customer})]
        events += [NewEvent("ItemAdded", {"order_id": oid, "sku": s, "quantity": q, "price": p}) for s, q, p in items]
        events.append(NewEvent("PaymentReceived", {"order_id": oid, "amount": total}))
        store.append(f"order-{oid}", events, expected_version=0)


@functools.cache
def _eventsourcing_order():
    """The peer's Order aggregate, defined once: eventsourcing registers each class by topic."""
    from eventsourcing.domain import Aggregate, event

    class Order(Aggregate):
        @event("OrderPlaced")
        def __init__(self, order_id: str, customer: str) -> None:
            self.items: list[tuple[str, int, int]] = []

        @event("ItemAdded")
        def add_item(self, sku: str, quantity: int, price: int) -> None:
            self.items.append((sku, quantity, price))

        @event("PaymentReceived")
        def pay(self, amount: int) -> None:
            self.amount = amount

    return Order


def eventsourcing_save_loop(orders) -> float:
    """Seconds the peer takes to create and save ``orders`` (application set-up untimed)."""
    from eventsourcing.application import Application

    Order = _eventsourcing_order()
    app = Application()  # in-memory (POPO) persistence by default
    t0 = time.perf_counter()
    for oid, customer, items, total in orders:
        order = Order(order_id=oid, customer=customer)
        for s, q, p in items:
            order.add_item(sku=s, quantity=q, price=p)
        order.pay(amount=total)
        app.save(order)
    return time.perf_counter() - t0


def timed(fn: Callable[[], object], repeats: int, setup: Callable[[], object] | None = None) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs (``setup`` untimed, before each)."""
    times = []
    for _ in range(repeats):
        arg = setup() if setup else None
        t0 = time.perf_counter()
        got = fn(arg) if setup else fn()
        elapsed = time.perf_counter() - t0
        times.append(got if isinstance(got, float) else elapsed)
    return statistics.median(times)


def timed_pair(ours: Callable[..., object], peer: Callable[..., object], repeats: int, **kwargs: object) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``peer`` (both called with ``kwargs``), run in turn so
    both see the same machine load."""
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((ours, a), (peer, b)):
            t0 = time.perf_counter()
            fn(**kwargs)
            out.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def row(what: str, events: int, ours: float, peer_name: str, peer: float | None) -> None:
    rate = events / ours
    if peer is None:
        print(f"{what:<46} {rate:>14,.0f} {'':>14} {'':>8}  {peer_name}")
    else:
        peer_rate = events / peer
        print(f"{what:<46} {rate:>14,.0f} {peer_rate:>14,.0f} {rate / peer_rate:>7.1f}x  {peer_name}")


def checked_vs_unchecked(path: Path, repeats: int) -> None:
    """A full read and a rebuild on a freshly opened store (each file checked against its
    CRC32C once per store object), beside a copy whose files carry layout 3 names (unchecked)."""
    plain = path.with_name(path.name + "-unchecked")
    shutil.copytree(path, plain)
    for f in (plain / "events").iterdir():
        f.rename(f.with_name(f.name.split(".")[0] + ".parquet"))
    n = len(ParquetEventStore(path))
    for what, run in (
        ("to_polars", lambda store: store.to_polars()),
        ("rebuild OrderSummaryFrame", lambda store: OrderSummaryFrame().rebuild(store.scan())),
    ):
        ours, peer = timed_pair(lambda: run(ParquetEventStore(path)), lambda: run(ParquetEventStore(plain)), repeats)
        row(f"{what}, fresh store, CRC32C-checked ({n:,} ev)", n, ours, "the same files, unchecked", peer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="events for the bulk rows (default 2 M)")
    parser.add_argument("--loop-orders", type=int, default=3_000, help="orders for the single-append loops")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n_orders = max(args.events // PER_ORDER, 1)
    frame = order_frame(n_orders)
    n = frame.height
    tmp = Path(tempfile.mkdtemp(prefix="esnb-bench-"))
    print(f"{'events/s (median of ' + str(args.repeats) + ')':<46} {'esnotebook':>14} {'peer':>14} {'ratio':>8}  peer")
    try:
        orders = orders_as_dicts(args.loop_orders)
        loop_events = args.loop_orders * PER_ORDER
        peer = timed(lambda: eventsourcing_save_loop(orders), args.repeats)
        ours = timed(lambda: ours_append_loop(InMemoryEventStore(), orders), args.repeats)
        row(f"append loop, 1 order/call, memory ({loop_events:,} ev)", loop_events, ours, "eventsourcing POPO save", peer)
        few = orders[: max(args.loop_orders // 10, 50)]
        folder = iter(range(10**6))
        ours = timed(lambda s: ours_append_loop(s, few), args.repeats,
                     setup=lambda: ParquetEventStore(tmp / f"loop{next(folder)}"))  # fmt: skip
        row(f"append loop, 1 order/call, parquet ({len(few) * PER_ORDER:,} ev)", len(few) * PER_ORDER, ours, "(fsync per commit)", None)

        ours = timed(lambda s: s.append_frame(frame), args.repeats, setup=InMemoryEventStore)
        row(f"append_frame, memory ({n:,} ev)", n, ours, "(target >= 1,000,000)", None)
        ours = timed(lambda s: s.append_frame(frame), args.repeats,
                     setup=lambda: ParquetEventStore(tmp / f"bulk{next(folder)}"))  # fmt: skip
        peer_path = tmp / "peer.parquet"
        peer = timed(lambda: frame.write_parquet(peer_path, compression="lz4"), args.repeats)
        row(f"append_frame, parquet ({n:,} ev)", n, ours, "bare write_parquet of the raw frame (no ids, 1 file)", peer)

        store = ParquetEventStore(tmp / "read")
        # Imported in commits of up to 1 M events: a store of several files, as in use.
        for lo in range(0, n, 1_000_000):
            store.append_frame(frame.slice(lo, 1_000_000))
        store.close()
        files = [str(f) for f in ParquetEventStore(tmp / "read").files()]
        ours, peer = timed_pair(
            lambda: ParquetEventStore(tmp / "read").to_polars(), lambda: pl.scan_parquet(files).collect(), args.repeats
        )
        row(f"read parquet -> canonical frame ({n:,} ev, {len(files)} files)", n, ours, "bare pl.scan_parquet(files).collect()", peer)
        checked_vs_unchecked(tmp / "read", args.repeats)
        mem = InMemoryEventStore()
        mem.append_frame(frame)
        ours = timed(lambda: mem.to_polars(), args.repeats)
        # The memory store already holds columnar frames in position order: this is
        # (nearly) zero-copy, so the rate only says that reading costs nothing extra.
        row(f"read memory -> canonical frame ({n:,} ev, zero-copy)", n, ours, "", None)
        k = min(n, 500_000)
        ours = timed(lambda: sum(1 for _ in store.read_all(to_position=k)), args.repeats)
        row(f"read_all -> RecordedEvent objects ({k:,} ev)", k, ours, "", None)
        newest_batch_of_many_commits(frame, tmp, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def newest_batch_of_many_commits(frame: pl.DataFrame, tmp: Path, repeats: int, commits: int = 200) -> None:
    """What a live consumer reads: the newest 1,000 events of a store of ``commits`` appends,
    beside the same events in a store of one commit (a range scan reads the commits in range)."""
    part = frame.head(200_000)
    n = part.height
    for kind, make in (("memory", lambda name: InMemoryEventStore()),
                       ("parquet", lambda name: ParquetEventStore(tmp / name, durable=False))):  # fmt: skip
        one, many = make(f"one-{kind}"), make(f"many-{kind}")
        one.append_frame(part)
        for lo in range(0, n, n // commits):
            many.append_frame(part.slice(lo, n // commits))
        ours, peer = timed_pair(many.to_polars, one.to_polars, repeats, from_position=n - 1_000)
        row(f"newest 1,000 of {commits} commits, {kind}", 1_000, ours, "the same events in 1 commit", peer)
    # A consumer one event behind a producer appending one event per command, in memory.
    one = InMemoryEventStore()
    one.append_frame(part.head(2_000))
    events = [NewEvent("PaymentReceived", {"order_id": str(i), "amount": i}) for i in range(2_000)]

    def append_and_read() -> None:
        many = InMemoryEventStore()
        for i, e in enumerate(events):
            many.append(f"order-{i % 500}", [e])
            many.to_polars(from_position=i)

    def read_only() -> None:
        for i in range(2_000):
            one.to_polars(from_position=i, to_position=i + 1)

    ours, peer = timed_pair(append_and_read, read_only, repeats)
    row("append 1 + read it, 2,000 times, memory", 2_000, ours, "the reads alone, 1 commit", peer)


if __name__ == "__main__":
    main()
