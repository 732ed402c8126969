"""Importing 1 M events from an ``eventsourcing`` SQLite database.

Rows printed side by side, on the same database in one run:

- ``bare sqlite3 SELECT``: the floor, fetching the raw rows into Python (no decoding);
- ``eventsourcing: decode to domain events``: the library reading its own notifications and
  mapping them to event objects (what you would otherwise loop over);
- ``esnotebook read_eventsourcing_sqlite``: rows decoded into the typed frame;
- ``esnotebook import_eventsourcing_sqlite``: the same, committed into an in-memory store.

The database is written once in the library's own layout: a template order (placed, three
items, paid) is saved through the library's API, then its stored rows are copied for new
originator ids, so every state is exactly what the library wrote.

Run: ``python benchmarks/bench_import.py [--events 1000000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

from eventsourcing.application import Application  # noqa: E402
from eventsourcing.domain import Aggregate, event  # noqa: E402

from esnotebook.importers import import_eventsourcing_sqlite, read_eventsourcing_sqlite  # noqa: E402
from esnotebook.store.memory import InMemoryEventStore  # noqa: E402


class Order(Aggregate):
    @event("OrderPlaced")
    def __init__(self, order_id: str, customer: str) -> None:
        self.order_id = order_id

    @event("ItemAdded")
    def add_item(self, order_id: str, sku: str, quantity: int, price: int) -> None:
        pass

    @event("PaymentReceived")
    def pay(self, order_id: str, amount: int) -> None:
        pass


class Shop(Application):
    pass


def build(path: Path, events: int) -> Shop:
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    app = Shop(env=env)
    o = Order(order_id="o-0", customer="c-0")
    for i in range(3):
        o.add_item(order_id="o-0", sku=f"sku-{i}", quantity=i + 1, price=100)
    o.pay(order_id="o-0", amount=600)
    app.save(o)
    with sqlite3.connect(path) as conn:
        template = conn.execute(
            "SELECT originator_version, topic, state FROM stored_events ORDER BY rowid"
        ).fetchall()
        per = len(template)
        rows = []
        for _ in range(events // per - 1):
            oid = uuid.uuid4().hex
            rows.extend((oid, v, t, s) for v, t, s in template)
        conn.executemany("INSERT INTO stored_events VALUES (?,?,?,?)", rows)
    return app


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shop.sqlite"
        app = build(path, args.events)

        def bare():
            with sqlite3.connect(path) as conn:
                return conn.execute(
                    "SELECT rowid, originator_id, originator_version, topic, state "
                    "FROM stored_events ORDER BY rowid"
                ).fetchall()

        def library():
            out, start = [], 1
            while batch := app.recorder.select_notifications(start=start, limit=100_000):
                out.extend(app.mapper.to_domain_event(n) for n in batch)
                start = batch[-1].id + 1
            return out

        base, rows = timed(bare, args.repeats)
        n = len(rows)
        del rows
        results = [("bare sqlite3 SELECT (baseline)", base)]
        lib, _ = timed(library, 1)
        results.append(("eventsourcing: decode to domain events", lib))
        read, frame = timed(lambda: read_eventsourcing_sqlite(path), args.repeats)
        assert frame.height == n  # type: ignore[union-attr]
        results.append(("esnotebook read_eventsourcing_sqlite", read))
        imp, report = timed(
            lambda: import_eventsourcing_sqlite(path, into=InMemoryEventStore()), args.repeats
        )
        assert len(report.store) == n  # type: ignore[union-attr]
        results.append(("esnotebook import_eventsourcing_sqlite", imp))
        app.close()
    print(
        f"{n:,} events from an eventsourcing SQLite database "
        f"(median of {args.repeats}; library row once)"
    )
    print(f"{'':42} {'seconds':>8} {'events/s':>12} {'x baseline':>10}")
    for name, sec in results:
        print(f"{name:42} {sec:8.2f} {n / sec:12,.0f} {sec / base:10.2f}")


if __name__ == "__main__":
    main()
