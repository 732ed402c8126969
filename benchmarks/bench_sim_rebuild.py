"""The rebuild-cost model against real rebuilds and loads, and aggregate loads beside eventsourcing.

One store of long order streams (``--streams`` orders of 20-400 events, a few SKUs each),
in memory and as a Parquet folder. Rows printed (one run, same machine, same data):

- ``model vs measured``: :func:`esnotebook.sim.calibrate` on a sample (wall clock), then
  :func:`esnotebook.sim.rebuild_cost` predicts the full ``OrderSummary`` rebuild and the
  mean ``Order`` load with snapshots every ``--interval`` events and without; beside it
  the measured median and the ratio measured / predicted.
- ``aggregate load``: our :class:`~esnotebook.repository.Repository` and the eventsourcing
  library (POPO recorder, ``snapshotting_intervals``) loading the same aggregates (same
  event counts, same snapshot interval): microseconds per load and the ratio.

Run: ``python benchmarks/bench_sim_rebuild.py [--streams 200] [--interval 50] [--repeats 5]
[--timer wall|cpu]`` (``cpu`` counts the process's CPU seconds only: on a machine shared with
other busy processes the wall clock mostly measures them; it ignores disk waits).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

import esnotebook as es
from esnotebook.examples import Order
from esnotebook.readmodels import OrderSummary
from esnotebook.repository import Repository
from esnotebook.runner import ProjectionRunner
from esnotebook.sim import calibrate, rebuild_cost
from esnotebook.snapshots import InMemorySnapshotStore, ParquetSnapshotStore, Snapshot


def histories(streams: int, seed: int = 3) -> list[list[es.NewEvent]]:
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(rng.integers(20, 400, size=streams)):
        oid = f"o{i}"
        events = [es.NewEvent("OrderPlaced", {"order_id": oid, "customer": "c"})]
        events += [
            es.NewEvent("ItemAdded", {"order_id": oid, "sku": f"s{j % 5}", "quantity": 1, "price": 100})
            for j in range(n - 1)
        ]
        out.append(events)
    return out


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
TIMER = "wall"


def median(fn: Any, repeats: int) -> float:
    clock = CLOCK[TIMER]
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def with_snapshots(store: Any, snaps: Any, lengths: list[int], k: int) -> Repository:
    repo = Repository(store, Order, snapshots=snaps)
    plain = Repository(store, Order)
    for i, n in enumerate(lengths):
        v = n // k * k
        if v:
            agg = plain.load(f"o{i}", version=v)
            last = store.read_stream(f"order-o{i}", from_version=v, to_version=v)[0]
            snaps.save(Snapshot(repo.aggregate_type, agg.id, v, Order.schema_version, last.event_id,
                                datetime.now(UTC), json.dumps(agg.get_state())))  # fmt: skip
    return repo


def model_rows(name: str, store: Any, snaps: Any, lengths: list[int], k: int, repeats: int) -> list[tuple]:
    costs = calibrate(store, sample_events=len(store) // 4, sample_streams=30, repeats=3, timer=TIMER)
    at_k, none = rebuild_cost(costs, interval=k), rebuild_cost(costs)
    repo, plain = with_snapshots(store, snaps, lengths, k), Repository(store, Order)

    def load_all(r: Repository) -> None:
        for i in range(len(lengths)):
            r.load(f"o{i}")

    measured = [
        ("rebuild OrderSummary (s)", at_k["rebuild_time_s"],
         median(lambda: ProjectionRunner(store, OrderSummary()).rebuild(), repeats)),
        (f"load, snapshots every {k} (µs)", at_k["load_time_s"] * 1e6,
         median(lambda: load_all(repo), repeats) / len(lengths) * 1e6),
        ("load, no snapshots (µs)", none["load_time_s"] * 1e6,
         median(lambda: load_all(plain), repeats) / len(lengths) * 1e6),
    ]  # fmt: skip
    print(f"  calibrated on {name}: best interval {at_k.best_interval}, "
          f"k* = {at_k['optimal_interval']:.1f}")  # fmt: skip
    return [(name, what, p, m) for what, p, m in measured]


def peer_loads(events: list[list[es.NewEvent]], k: int, repeats: int) -> tuple[float, float]:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Cart(Aggregate):
        @event("Placed")
        def __init__(self, customer: str) -> None:
            self.customer, self.lines = customer, {}

        @event("ItemAdded")
        def add(self, sku: str, quantity: int, price: int) -> None:
            line = self.lines.setdefault(sku, {"quantity": 0, "price": price})
            line["quantity"] += quantity

    class Snapshotting(Application):
        snapshotting_intervals = {Cart: k}  # noqa: RUF012 - the library's own convention

    out = []
    for app in (Snapshotting(env={"IS_SNAPSHOTTING_ENABLED": "y"}), Application()):
        ids = []
        for history in events:
            cart = Cart("c")
            for e in history[1:]:
                cart.add(e.data["sku"], e.data["quantity"], e.data["price"])
                app.save(cart)  # one save per event, so snapshots land every k events
            ids.append(cart.id)

        def load_all(app: Any = app, ids: list = ids) -> None:
            for i in ids:
                app.repository.get(i)

        out.append(median(load_all, repeats) / len(ids) * 1e6)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--interval", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timer", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU seconds, for a busy shared machine")  # fmt: skip
    args = ap.parse_args()
    global TIMER
    TIMER = args.timer
    events = histories(args.streams)
    lengths = [len(h) for h in events]
    k = args.interval
    memory = es.InMemoryEventStore()
    with tempfile.TemporaryDirectory() as tmp:
        parquet = es.ParquetEventStore(Path(tmp) / "store")
        for i, h in enumerate(events):
            memory.append(f"order-o{i}", h)
            parquet.append(f"order-o{i}", h)
        print(f"{len(memory):,} events in {args.streams} order streams (20-400 events); "
              f"medians of {args.repeats}, {TIMER} clock")  # fmt: skip
        rows = model_rows("memory", memory, InMemorySnapshotStore(), lengths, k, args.repeats)
        rows += model_rows("parquet", parquet, ParquetSnapshotStore(Path(tmp) / "snaps"), lengths, k,
                           args.repeats)  # fmt: skip
        print(f"\n{'store':8} {'quantity':34} {'predicted':>11} {'measured':>11} {'measured/pred':>14}")
        for store, what, p, m in rows:
            print(f"{store:8} {what:34} {p:11.4g} {m:11.4g} {m / p:14.2f}")

        repo = with_snapshots(memory, InMemorySnapshotStore(), lengths, k)
        plain = Repository(memory, Order)
        ours = [
            median(lambda r=r: [r.load(f"o{i}") for i in range(len(lengths))], args.repeats) / len(lengths) * 1e6
            for r in (repo, plain)
        ]
    peer = peer_loads(events, k, args.repeats)
    print(f"\n{'aggregate load (µs per load)':34} {'esnotebook':>11} {'eventsourcing':>14} {'peer/ours':>10}")
    for label, o, p in ((f"snapshots every {k}", ours[0], peer[0]), ("no snapshots", ours[1], peer[1])):
        print(f"{label:34} {o:11.1f} {p:14.1f} {p / o:10.1f}")


if __name__ == "__main__":
    main()
