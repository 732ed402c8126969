"""09: an eventsourcing application's SQLite database imported and analysed."""

CELLS = [
    ("md", r'''
# 09 · Your own events

You already run an event-sourced system and want to look at *its* events: projections,
funnels, rebuild estimates, lag for your real rates. esnotebook imports the stored events of
the Python [`eventsourcing`](https://eventsourcing.readthedocs.io) library (SQLite and
PostgreSQL, read only), JSON Lines and CSV into its canonical event frame, and exports any
store back to JSON Lines.

Here a small shop built with the `eventsourcing` library stands in for your production
database. The import maps its stored events so:

| eventsourcing | esnotebook |
|---|---|
| notification id order | `position` |
| originator id | `stream_id` (`order-<uuid>`) |
| originator version | `version` |
| topic `…:Order.ItemAdded` | `event_type` (`ItemAdded` with `event_types="name"`) |
| the event's attributes | typed payload columns |
'''),
    ("params", r'''
ORDERS = 200
SEED = 7
'''),
    ("code", r'''
import os
import tempfile
import time

import numpy as np
import polars as pl
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

import esnotebook as es
'''),
    ("md", r'''
## 1. An `eventsourcing` application writing to SQLite

Your real one already exists; this one uses the order domain's event names and fields.
'''),
    ("code", r'''
class Order(Aggregate):
    @event("OrderPlaced")
    def __init__(self, order_id: str, customer: str):
        self.order_id, self.total = order_id, 0
        self.paid = self.shipped = False

    @event("ItemAdded")
    def add_item(self, order_id: str, sku: str, quantity: int, price: int):
        self.total += quantity * price

    @event("PaymentReceived")
    def pay(self, order_id: str, amount: int):
        self.paid = True

    @event("OrderShipped")
    def ship(self, order_id: str):
        self.shipped = True


class Shop(Application):
    pass


db = os.path.join(tempfile.mkdtemp(prefix="esnotebook-09-"), "shop.sqlite")
app = Shop(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": db})
rng = np.random.default_rng(SEED)
order_ids = []
for i in range(ORDERS):
    order = Order(order_id=f"o-{i}", customer=f"c-{rng.integers(20)}")
    for _ in range(rng.integers(1, 5)):
        order.add_item(order_id=f"o-{i}", sku=f"sku-{rng.integers(10)}",
                       quantity=int(rng.integers(1, 4)), price=int(rng.integers(100, 2000)))
    if rng.random() < 0.8:
        order.pay(order_id=f"o-{i}", amount=order.total)
        if rng.random() < 0.7:
            order.ship(order_id=f"o-{i}")
    app.save(order)
    order_ids.append(order.id)
print(f"{os.path.getsize(db) / 1e3:.0f} kB of SQLite")
'''),
    ("md", r'''
## 2. Import

The import checks every row first and then commits once: it happens whole or not at all.
`event_types="name"` keeps the bare event names, the order domain's names, so the
package's order projections apply as they are.
'''),
    ("code", r'''
report = es.import_eventsourcing_sqlite(db, event_types="name")
store = report.store
report
'''),
    ("md", r'''
## 3. What is in there
'''),
    ("code", r'''
events = store.to_polars()
events.group_by("event_type").len().sort("len", descending=True)
'''),
    ("code", r'''
events.select("position", "stream_id", "version", "event_type", "recorded_at", "sku", "quantity", "price").head()
'''),
    ("md", r'''
## 4. Analyses by hand: revenue per SKU, the funnel, a consistency check
'''),
    ("code", r'''
(events.filter(pl.col("event_type") == "ItemAdded")
       .group_by("sku")
       .agg(revenue=(pl.col("quantity") * pl.col("price")).sum(), orders=pl.col("stream_id").n_unique())
       .sort("revenue", descending=True)
       .head())
'''),
    ("code", r'''
stage = {"OrderPlaced": 1, "ItemAdded": 1, "PaymentReceived": 2, "OrderShipped": 3}
(events.with_columns(stage=pl.col("event_type").replace_strict(stage))
       .group_by("stream_id").agg(pl.col("stage").max())
       .group_by("stage").len().sort("stage"))
'''),
    ("code", r'''
# Every payment must equal the total the order's items imply.
totals = (events.filter(pl.col("event_type") == "ItemAdded")
                .group_by("stream_id").agg(total=(pl.col("quantity") * pl.col("price")).sum()))
paid = events.filter(pl.col("event_type") == "PaymentReceived").select("stream_id", "amount")
mismatches = paid.join(totals, on="stream_id").filter(pl.col("amount") != pl.col("total"))
mismatches.height
'''),
    ("md", r'''
## 5. The package's projections over your events

The shipped order summary runs on the imported store unchanged, and its rebuild rate tells
you how long a rebuild of your full history would take.
'''),
    ("code", r'''
summary = es.ProjectionRunner(store, es.OrderSummaryFrame())
started = time.perf_counter()
summary.rebuild()
rate = len(store) / (time.perf_counter() - started)
print(f"{len(store):,} events at {rate:,.0f} events/s")
summary.state.group_by("status").agg(pl.len().alias("orders"), pl.col("total").sum().alias("cents"))
'''),
    ("md", r'''
## 6. Take it elsewhere

JSON Lines for other tools (and `es.import_jsonl` reads it back to the identical frame).
'''),
    ("code", r'''
jsonl = os.path.join(tempfile.mkdtemp(), "shop.jsonl")
es.export_jsonl(store, to=jsonl)
back = es.import_jsonl(jsonl).store
back.to_polars().equals(events)
'''),
    ("md", r'''
## Exercise

What share of the **paid** orders was shipped? The reference answer uses the order summary
projection; compute it your own way (for example from `events`) and run the check, which
asks the application itself, aggregate by aggregate, through the `eventsourcing` library.
'''),
    ("code", r'''
paid_orders = summary.state.filter(pl.col("status").is_in(["paid", "shipped"]))
shipped_share = paid_orders.filter(pl.col("status") == "shipped").height / paid_orders.height
round(shipped_share, 3)
'''),
    ("code", r'''
# Check: ask the eventsourcing application, aggregate by aggregate.
aggregates = [app.repository.get(i) for i in order_ids]
paid_count = sum(o.paid for o in aggregates)
expected = sum(o.shipped for o in aggregates) / paid_count
assert abs(shipped_share - expected) < 1e-12, f"expected {expected:.3f} (got {shipped_share:.3f})"
print(f"correct: {shipped_share:.1%} of {paid_count} paid orders shipped")
'''),
]
