"""The rebuild-cost model against real rebuilds and loads, and aggregate loads beside eventsourcing.

``model vs measured``: notebook 04's store (40 orders of about 250 events, in memory) and,
with ``--parquet``, the shipped sample ``orders-small`` (5 000 orders of about 5 events, a
Parquet folder). ``--rounds`` times: :func:`esnotebook.sim.calibrate` with the notebook's
settings and a new seed, then :func:`esnotebook.sim.rebuild_cost` predicts the full
``OrderSummary`` rebuild, the mean ``Order`` load by full replay, from a snapshot at the
head (notebook 04's measurement) and from snapshots every ``--interval`` events plus the
tail (the demo's), each beside the median of ``--repeats`` measured passes before the
calibration and as many after (the speed of a shared machine drifts over seconds), and the
cheapest interval. The summary gives, per quantity, the medians over the rounds and the
spread of predicted / measured.

``aggregate load``: our :class:`~esnotebook.repository.Repository` and the eventsourcing
library (POPO recorder, ``snapshotting_intervals``) loading the same aggregates (same
event counts, same snapshot interval): microseconds per load and the ratio.

Run: ``python benchmarks/bench_sim_rebuild.py [--rounds 5] [--interval 50] [--repeats 3]
[--timer cpu|wall] [--parquet] [--no-peer]`` (``cpu``, the default as in ``calibrate``,
counts the process's CPU seconds: on a machine shared with other busy processes the wall
clock mostly measures them).
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

import esnotebook as es
from esnotebook.examples import Order
from esnotebook.readmodels import OrderSummary
from esnotebook.repository import Repository
from esnotebook.runner import ProjectionRunner
from esnotebook.sim import calibrate, rebuild_cost
from esnotebook.snapshots import InMemorySnapshotStore, ParquetSnapshotStore, Snapshot

CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
TIMER = "cpu"


def median(fn: Any, repeats: int) -> float:
    clock = CLOCK[TIMER]
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def snapshot_store(store: Any) -> Any:
    """Snapshots kept as calibrate keeps them: in memory, or as Parquet files for a Parquet store."""
    return ParquetSnapshotStore(tempfile.mkdtemp(prefix="bench-")) if hasattr(store, "path") else InMemorySnapshotStore()


def snapshots_every(store: Any, ids: list[str], k: int) -> Repository:
    """Snapshots where ``snapshot_every=k`` puts them as the streams grow: at multiples of k."""
    snaps = snapshot_store(store)
    repo, plain = Repository(store, Order, snapshots=snaps), Repository(store, Order)
    for i in ids:
        v = store.stream_version(f"order-{i}") // k * k
        if v:
            agg = plain.load(i, version=v)
            last = store.read_stream(f"order-{i}", from_version=v, to_version=v)[0]
            snaps.save(Snapshot(repo.aggregate_type, agg.id, v, Order.schema_version, last.event_id,
                                datetime.now(UTC), json.dumps(agg.get_state())))  # fmt: skip
    return repo


def compare(name: str, store: Any, ids: list[str], k: int, rounds: int, repeats: int) -> None:
    """Calibrate ``rounds`` times; after each, measure and print predicted beside measured."""
    plain = Repository(store, Order)
    at_head = Repository(store, Order, snapshots=snapshot_store(store))
    for i in ids:
        at_head.take_snapshot(i)
    every = snapshots_every(store, ids, k)

    def measure(times: list[list[float]]) -> None:
        """Add ``repeats`` passes of each quantity to ``times``: the loads take turns, so that
        a busy spell on the machine lands on each alike; the rebuilds apart, as notebook 04
        times them."""
        clock = CLOCK[TIMER]
        loads = [lambda r=r: [r.load(i) for i in ids] for r in (plain, at_head, every)]
        for _ in range(repeats):
            for slot, job in zip(times[1:], loads):
                t = clock()
                job()
                slot.append((clock() - t) / len(ids) * 1e3)
        for _ in range(repeats):
            t = clock()
            ProjectionRunner(store, OrderSummary()).rebuild()
            times[0].append(clock() - t)

    quantities = ("rebuild (s)", "load, full replay (ms)", "load, snapshot at head (ms)",
                  f"load, snapshots every {k} (ms)")  # fmt: skip
    rows: dict[str, list[tuple[float, float]]] = {q: [] for q in quantities}
    best = []
    print(f"\n{name}: {len(store):,} events, {len(ids)} orders loaded; {rounds} calibrations, each "
          f"between {repeats} passes before and {repeats} after (medians), {TIMER} clock")  # fmt: skip
    for r in range(rounds):
        times: list[list[float]] = [[] for _ in quantities]
        measure(times)  # before and after: the speed of a shared machine drifts over seconds
        began = time.perf_counter()
        costs = calibrate(store, projection=OrderSummary(), sample_events=min(len(store), 6_000),
                          sample_streams=20, seed=r, timer=TIMER)  # fmt: skip
        took = time.perf_counter() - began
        none, head, at_k = rebuild_cost(costs), rebuild_cost(costs, interval=1), rebuild_cost(costs, interval=k)
        measure(times)
        measured = [statistics.median(t) for t in times]
        predicted = (none["rebuild_time_s"], none["load_time_s"] * 1e3, head["load_time_s"] * 1e3,
                     at_k["load_time_s"] * 1e3)  # fmt: skip
        for q, p, m in zip(quantities, predicted, measured):
            rows[q].append((p, m))
        best.append(at_k.best_interval)
        print(f"  round {r}: calibrate {took:.1f} s; predicted/measured "
              + ", ".join(f"{p / m:.2f}" for p, m in zip(predicted, measured))
              + f"; cheapest interval {best[-1] or 'none'}")  # fmt: skip
    print(f"\n{'quantity':32} {'predicted':>10} {'measured':>10} {'pred/meas':>10} {'spread':>12}")
    for q, pm in rows.items():
        ratios = [p / m for p, m in pm]
        print(f"{q:32} {statistics.median(p for p, _ in pm):10.4g} "
              f"{statistics.median(m for _, m in pm):10.4g} {statistics.median(ratios):10.2f} "
              f"{min(ratios):5.2f}-{max(ratios):.2f}")  # fmt: skip
    ks = [b for b in best if b is not None]
    spread = f"max/min {max(ks) / min(ks):.2f}" if len(ks) == len(best) else "some: no snapshots"
    print(f"{'cheapest interval':32} {', '.join(str(b or 'none') for b in best)} ({spread})")


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


def peer(store: Any, ids: list[str], k: int, repeats: int) -> None:
    histories = [[es.NewEvent(e.event_type, e.data) for e in store.read_stream(f"order-{i}")
                  if e.event_type in ("OrderPlaced", "ItemAdded")] for i in ids]  # fmt: skip
    copy = es.InMemoryEventStore()
    for i, h in zip(ids, histories):
        copy.append(f"order-{i}", h)
    ours = [median(lambda r=r: [r.load(i) for i in ids], repeats) / len(ids) * 1e6
            for r in (snapshots_every(copy, ids, k), Repository(copy, Order))]  # fmt: skip
    theirs = peer_loads(histories, k, repeats)
    print(f"\n{'aggregate load (µs per load)':34} {'esnotebook':>11} {'eventsourcing':>14} {'peer/ours':>10}")
    for label, o, p in ((f"snapshots every {k}", ours[0], theirs[0]), ("no snapshots", ours[1], theirs[1])):
        print(f"{label:34} {o:11.1f} {p:14.1f} {p / o:10.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interval", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timer", choices=["wall", "cpu"], default="cpu",
                    help="wall: elapsed seconds, on a machine of one's own")  # fmt: skip
    ap.add_argument("--parquet", action="store_true", help="also the shipped sample orders-small")
    ap.add_argument("--no-peer", action="store_true", help="skip the eventsourcing comparison")
    args = ap.parse_args()
    global TIMER
    TIMER = args.timer
    # Notebook 04's store, with its parameters.
    store = es.InMemoryEventStore()
    store.append_frame(es.datasets.generate_orders(40, items_per_order=250, p_abandon=0, seed=4, progress=False))
    ids = [s.removeprefix("order-") for s in store.streams()]
    compare("notebook 04's store (memory)", store, ids, args.interval, args.rounds, args.repeats)
    if args.parquet:
        sample = es.datasets.load("orders-small")
        orders = [s.removeprefix("order-") for s in sample.streams() if s.startswith("order-")]
        compare("orders-small (parquet)", sample, orders[::25], args.interval, args.rounds, args.repeats)
    if not args.no_peer:
        peer(store, ids, args.interval, args.repeats)


if __name__ == "__main__":
    main()
