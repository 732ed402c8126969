"""Rebuild OrderSummary from a Parquet store, side by side with bare polars and eventsourcing.

Rows printed (one run, same machine, same data):

- ``esnotebook vectorised``: ``ProjectionRunner(store, OrderSummaryFrame()).rebuild()``
  (reads the store's Parquet files, folds, commits the state to the in-memory target).
- ``esnotebook vectorised (streaming)``: the same with polars' streaming engine.
- ``bare polars group-by``: one ``group_by("order_id").agg(...)`` over the same files,
  computing the same summary numbers (no status machine, no lines, no checkpoint) - the
  practical limit of this machine for a hash group-by.
- ``bare polars group-by (stream_number)``: the same group-by keyed by the store's integer
  stream number instead of the order id string.
- ``esnotebook handler form``: ``OrderSummary`` applied event by event, on a smaller slice.
- ``eventsourcing replay``: the eventsourcing library (POPO recorder, its fastest)
  replaying its notification log into the same summary, for a smaller store.

Each timing is the median of ``--repeats`` runs, wall time and CPU time of this process
side by side (the machine is shared); peak memory is the max RSS of a fresh subprocess
that opens the store and runs the vectorised rebuild once (its VmHWM).

Run the default (~1 minute)::

    python benchmarks/bench_rebuild.py

The 10 M-event case of the targets (a few minutes; ~0.5 GB on disk under --dir)::

    python benchmarks/bench_rebuild.py --events 10000000 --handler-events 1000000

Targets (2-core machine): vectorised >= 10 M events/s, >= 100x eventsourcing, within 2x of
the bare group-by; handler form >= 500 k events/s; 10 M-event rebuild peak RSS <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

os.environ.setdefault("TQDM_DISABLE", "1")

import esnotebook as es
from esnotebook.readmodels import OrderSummary, OrderSummaryFrame
from esnotebook.runner import ProjectionRunner

SKUS = 1_000


def order_frame(n_events: int, *, seed: int = 0) -> pl.DataFrame:
    """About ``n_events`` events of valid order histories, interleaved, as one frame.

    Each order: OrderPlaced, 1-4 ItemAdded, sometimes an ItemRemoved (one unit of its first
    SKU) and a PaymentFailed, then PaymentReceived of the exact total (85 %, then shipped
    80 % of the time) or OrderCancelled.
    """
    rng = np.random.default_rng(seed)
    n_orders = max(int(n_events / 5.33), 1)
    items = rng.integers(1, 5, n_orders)
    removed = rng.random(n_orders) < 0.10
    failed = rng.random(n_orders) < 0.05
    paid = rng.random(n_orders) < 0.85
    shipped = paid & (rng.random(n_orders) < 0.80)
    # Slots per order, in order: placed, items..., removed?, failed?, paid|cancelled, shipped?
    counts = 1 + items + removed + failed + 1 + shipped
    order = np.repeat(np.arange(n_orders), counts)
    starts = np.cumsum(counts) - counts
    slot = np.arange(order.size) - np.repeat(starts, counts)
    it = np.repeat(items, counts)
    rm = np.repeat(removed, counts)
    fl = np.repeat(failed, counts)
    pd_ = np.repeat(paid, counts)
    # event type codes: 0 placed 1 added 2 removed 3 failed 4 paid 5 cancelled 6 shipped
    kind = np.full(order.size, 6, dtype=np.int8)
    kind[slot == 0] = 0
    kind[(slot >= 1) & (slot <= it)] = 1
    after = slot - it  # 1.. for the slots after the items
    kind[rm & (after == 1)] = 2
    fpos = 1 + rm
    kind[fl & (after == fpos)] = 3
    endpos = 1 + rm + fl
    kind[after == endpos] = np.where(pd_[after == endpos], 4, 5)
    sku = rng.integers(0, SKUS, order.size)
    first_item = starts + 1
    sku[kind == 2] = sku[np.repeat(first_item, counts)][kind == 2]
    price_of = rng.integers(99, 10_000, SKUS)
    qty = np.where(kind == 1, rng.integers(1, 4, order.size), 0)
    qty = np.where(kind == 2, 1, qty)
    # The removal takes one unit of the first item, which always holds at least one.
    price = price_of[sku]
    value = np.where(kind == 1, qty * price, 0) - np.where(kind == 2, price, 0)
    total = np.bincount(order, weights=value, minlength=n_orders).astype(np.int64)
    amount = np.where((kind == 4) | (kind == 3), total[order], 0)
    # Interleave the orders: each starts at its own time, its events a few seconds apart.
    gaps = rng.uniform(1, 30, order.size)
    gaps[starts] = 0
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[starts], counts)  # seconds since the order was placed
    t = np.repeat(rng.uniform(0, n_orders / 50, n_orders), counts) + elapsed
    perm = np.argsort(t, kind="stable")
    types = np.array(["OrderPlaced", "ItemAdded", "ItemRemoved", "PaymentFailed",
                      "PaymentReceived", "OrderCancelled", "OrderShipped"])  # fmt: skip
    k = kind[perm]
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    frame = pl.DataFrame({
        "o": order[perm], "k": k, "sku_i": sku[perm], "quantity": qty[perm],
        "price": price[perm], "amount": amount[perm],
        "t_us": (np.sort(t) * 1e6).astype(np.int64),
    })  # fmt: skip
    ev = pl.col("k")
    oid = pl.format("o{}", pl.col("o"))
    return frame.select(
        pl.concat_str(pl.lit("order-"), oid).alias("stream_id"),
        pl.col("k").replace_strict(dict(enumerate(types.tolist())), return_dtype=pl.String).alias("event_type"),
        (pl.lit(base) + pl.duration(microseconds=pl.col("t_us"))).alias("recorded_at"),
        oid.alias("order_id"),
        pl.when(ev == 0).then(pl.format("c{}", pl.col("o") % 50_000)).alias("customer"),
        pl.when(ev.is_in([1, 2])).then(pl.format("sku-{}", pl.col("sku_i"))).alias("sku"),
        pl.when(ev.is_in([1, 2])).then(pl.col("quantity")).alias("quantity"),
        pl.when(ev == 1).then(pl.col("price")).alias("price"),
        pl.when(ev.is_in([3, 4])).then(pl.col("amount")).alias("amount"),
        pl.when(ev == 3).then(pl.lit("card declined")).when(ev == 5).then(pl.lit("changed mind")).alias("reason"),
    )  # fmt: skip


@contextlib.contextmanager
def store_folder(kept: str | None, *, prefix: str) -> Iterator[Path]:
    """Where a benchmark keeps its store: ``kept`` (reused when it exists), or a temporary
    folder removed afterwards."""
    if kept is not None:
        yield Path(kept)
        return
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield Path(tmp) / "store"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_store(path: Path, n_events: int) -> es.ParquetEventStore:
    store = es.ParquetEventStore(path, durable=False)
    if len(store) != 0:
        return store
    frame = order_frame(n_events)
    step = 4_000_000  # commits of this size keep the import's memory bounded
    for lo in range(0, frame.height, step):
        store.append_frame(frame.slice(lo, step))
    return store


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``repeats`` runs (CPU time too: the machine is shared,
    so wall time alone mixes in whoever else is running), and the last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def bare_group_by(store: es.ParquetEventStore, key: str = "order_id") -> pl.DataFrame:
    """The same summary numbers in one group-by, without the projection machinery."""
    e = pl.col("event_type")
    signed = pl.when(e == "ItemAdded").then(pl.col("quantity")).when(e == "ItemRemoved").then(-pl.col("quantity"))
    # Files of different commits may hold different payload columns: stack them diagonally.
    lf = pl.concat([pl.scan_parquet(f) for f in store.files()], how="diagonal_relaxed")
    return lf.group_by(key).agg(
        *([pl.col("order_id").first()] if key != "order_id" else []),
        pl.col("customer").drop_nulls().first(),
        signed.sum().alias("item_count"),
        (signed * pl.col("price")).sum().alias("total"),
        pl.col("amount").filter(e == "PaymentReceived").sum().alias("amount_paid"),
        (e == "PaymentFailed").sum().alias("failed_payments"),
        pl.col("recorded_at").min().alias("placed_at"),
        pl.col("recorded_at").max().alias("updated_at"),
        pl.col("position").max().alias("last_position"),
    ).collect()


def vectorised(store: es.ParquetEventStore, engine: str = "auto") -> pl.DataFrame:
    runner = ProjectionRunner(store, OrderSummaryFrame(), engine=engine)  # type: ignore[arg-type]
    runner.rebuild(progress=False)
    return runner.state


def handler(store: es.ParquetEventStore, n: int) -> int:
    runner = ProjectionRunner(store, OrderSummary(), batch_size=100_000)
    return runner.catch_up(n)


def eventsourcing_replay(n_events: int) -> tuple[int, float, float]:
    """Build an eventsourcing POPO application of ~n_events order events; time a replay of
    its notification log into an order summary. Returns (events replayed, wall s, CPU s)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Order(Aggregate):
        @event("Placed")
        def __init__(self, customer: str) -> None:
            self.customer = customer

        @event("ItemAdded")
        def add(self, sku: str, quantity: int, price: int) -> None:
            pass

        @event("PaymentReceived")
        def pay(self, amount: int) -> None:
            pass

        @event("Shipped")
        def ship(self) -> None:
            pass

    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    rng = np.random.default_rng(1)
    made = 0
    while made < n_events:
        o = Order(customer=f"c{made % 997}")
        total = 0
        for _ in range(int(rng.integers(1, 5))):
            q, p = int(rng.integers(1, 4)), int(rng.integers(99, 10_000))
            o.add(sku=f"sku-{int(rng.integers(SKUS))}", quantity=q, price=p)
            total += q * p
        o.pay(amount=total)
        o.ship()
        app.save(o)
        made = app.recorder.max_notification_id() or 0

    def replay() -> int:
        summary: dict = {}
        start, seen = 1, 0
        log = app.notification_log
        while True:
            batch = log.select(start=start, limit=log.section_size)
            if not batch:
                return seen
            for n in batch:
                ev = app.mapper.to_domain_event(n)
                name = type(ev).__name__
                row = summary.get(ev.originator_id)
                if name == "Placed":
                    summary[ev.originator_id] = {"customer": ev.customer, "items": 0, "total": 0, "paid": 0, "status": "placed"}
                elif name == "ItemAdded":
                    row["items"] += ev.quantity
                    row["total"] += ev.quantity * ev.price
                elif name == "PaymentReceived":
                    row["paid"] += ev.amount
                    row["status"] = "paid"
                else:
                    row["status"] = "shipped"
            seen += len(batch)
            start = batch[-1].id + 1

    seconds, cpu, seen = timed(replay, 3)
    return int(seen), seconds, cpu  # type: ignore[return-value]


def peak_memory(path: Path, engine: str) -> float:
    """Peak RSS (MB) of a fresh process that opens the store and rebuilds once."""
    code = (
        "import os; os.environ['TQDM_DISABLE']='1';"
        "import esnotebook as es;"
        "from esnotebook.readmodels import OrderSummaryFrame;"
        "from esnotebook.runner import ProjectionRunner;"
        f"r=ProjectionRunner(es.ParquetEventStore({str(path)!r}), OrderSummaryFrame(), engine={engine!r});"
        "r.rebuild(progress=False);"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=3_000_000, help="events in the Parquet store")
    ap.add_argument("--handler-events", type=int, default=300_000, help="events for the handler form")
    ap.add_argument("--es-events", type=int, default=30_000, help="events for eventsourcing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="keep the store here (reused when it exists)")
    args = ap.parse_args()

    with store_folder(args.dir, prefix="bench_rebuild_") as path:
        t0 = time.perf_counter()
        store = make_store(path, args.events)
        n = len(store)
        print(f"store: {n:,} events, {len(store.files())} files, "
              f"{store.size_on_disk() / 1e6:.0f} MB (made in {time.perf_counter() - t0:.1f} s)")  # fmt: skip
        rows = []
        w, c, frame = timed(lambda: vectorised(store), args.repeats)
        rows.append(("esnotebook vectorised", n, w, c))
        w, c, frame_s = timed(lambda: vectorised(store, "streaming"), args.repeats)
        assert frame_s.equals(frame), "streaming and in-memory rebuilds differ"
        rows.append(("esnotebook vectorised (streaming)", n, w, c))
        w, c, bare = timed(lambda: bare_group_by(store), args.repeats)
        rows.append(("bare polars group-by", n, w, c))
        w, c, bare_n = timed(lambda: bare_group_by(store, "stream_number"), args.repeats)
        rows.append(("bare polars group-by (stream_number)", n, w, c))
        columns = ["order_id", "item_count", "amount_paid", "failed_payments"]
        for check in (bare, bare_n):
            check = check.sort("order_id").select(columns)
            assert check.equals(frame.sort("order_id").select(columns)), "bare group-by and projection disagree"
        h = min(args.handler_events, n)
        w, c, _ = timed(lambda: handler(store, h), args.repeats)
        rows.append(("esnotebook handler form", h, w, c))
        es_n, w, c = eventsourcing_replay(args.es_events)
        rows.append(("eventsourcing replay (POPO)", es_n, w, c))
        rate = {name: k / w for name, k, w, _ in rows}
        cpu_rate = {name: k / c for name, k, _, c in rows}
        print(f"\n{'row':36} {'events':>12} {'wall s':>8} {'CPU s':>8} {'events/s':>14} {'events/CPU-s':>14}")
        for name, k, w, c in rows:
            print(f"{name:36} {k:>12,} {w:>8.3f} {c:>8.3f} {k / w:>14,.0f} {k / c:>14,.0f}")
        v, vc = rate["esnotebook vectorised"], cpu_rate["esnotebook vectorised"]
        es_row, bare_row = "eventsourcing replay (POPO)", "bare polars group-by"
        print("\nratios (wall; CPU)")
        print(f"  vectorised / eventsourcing       {v / rate[es_row]:8.1f} x  {vc / cpu_rate[es_row]:8.1f} x  (target >= 100)")
        print(f"  bare group-by / vectorised       {rate[bare_row] / v:8.2f} x  {cpu_rate[bare_row] / vc:8.2f} x  (target <= 2)")
        bare_int = "bare polars group-by (stream_number)"
        print(f"  bare int group-by / vectorised   {rate[bare_int] / v:8.2f} x  {cpu_rate[bare_int] / vc:8.2f} x")
        print(f"  streaming / in-memory engine     {rate['esnotebook vectorised (streaming)'] / v:8.2f} x")
        print(f"  vectorised                       {v:10,.0f} events/s (target >= 10 000 000)")
        print(f"  handler form                     {rate['esnotebook handler form']:10,.0f} events/s (target >= 500 000)")
        for engine in ("auto", "streaming"):
            mb = peak_memory(path, engine)
            print(f"  peak RSS, rebuild ({engine:9})    {mb:10.0f} MB for {n:,} events (target <= 1536 MB at 10 M)")
        store.close()


if __name__ == "__main__":
    main()
