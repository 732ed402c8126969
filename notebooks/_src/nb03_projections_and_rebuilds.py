"""03: projections in two forms, runners and checkpoints, rebuilds timed."""

CELLS = [
    ("md", r'''
# 03 · Projections and rebuilds

The read side of CQRS: a **projection** folds the event log into a table shaped for one
question ("orders per customer", "revenue per SKU"). It is *derived* data: throw it away,
replay the log from position 0, and you get it back. That is a **rebuild**, and it is how
you fix a bug in a projection or add a new one over years of history.

esnotebook offers two ways to write one:

* the **handler form** (`es.Projection`): one method per event type, called once per event with
  the current row. Easy to read; Python speed.
* the **vectorised form** (`es.VectorisedProjection`): one `fold(state, events)` over a whole
  batch as polars frames. Harder to write; runs at columnar speed.

A **runner** feeds a projection from a store, in batches, and remembers its *checkpoint*
(the last position applied) so it can resume after a restart.
'''),
    ("params", r'''
EVENTS = 20_000   # size of the workload to project; try 1_000_000
SEED = 3
'''),
    ("code", r'''
import tempfile
import time
from pathlib import Path

import polars as pl

import esnotebook as es

work = Path(tempfile.mkdtemp(prefix="esnotebook-03-"))
store = es.datasets.generate("orders-small", events=EVENTS, seed=SEED, folder=work / "shop")
len(store), len(store.streams())
'''),
    ("md", r'''
## The handler form

Orders per customer: the row key is the `customer` field of `OrderPlaced`. A handler gets
its own copy of the current row (or `None` if there is none yet), changes it or builds a
new one, and returns it. Only a returned row is stored, so a handler that raises halfway
leaves the state as it was. The copy is shallow: replace a list or dict inside a row
rather than changing it in place.
'''),
    ("code", r'''
class OrdersPerCustomer(es.Projection):
    key = "customer"
    schema = {"customer": pl.String(), "orders": pl.Int64()}

    def key_of(self, event):
        return event.data["customer"]

    def on_OrderPlaced(self, row, event):
        if row is None:
            return {"customer": event.data["customer"], "orders": 1}
        row["orders"] += 1   # this handler's own copy: changing it in place is safe
        return row


per_customer = es.ProjectionRunner(store, OrdersPerCustomer())
per_customer.catch_up()
per_customer.state.sort("orders", descending=True).head(5)
'''),
    ("md", r'''
## The vectorised form

Units sold per SKU. `fold` gets the state so far and a batch of events (both lazy polars
frames) and returns the new state. Folding two batches one after the other must equal
folding them together: that is what lets the runner work in batches and resume anywhere.
'''),
    ("code", r'''
class UnitsPerSku(es.VectorisedProjection):
    key = "sku"
    schema = {"sku": pl.String(), "units": pl.Int64()}
    event_types = ("ItemAdded", "ItemRemoved")
    fields = {"sku": pl.String(), "quantity": pl.Int64()}

    def fold(self, state, events):
        signed = pl.when(pl.col("event_type") == "ItemAdded").then(pl.col("quantity")).otherwise(-pl.col("quantity"))
        delta = events.group_by("sku").agg(units=signed.sum())
        return pl.concat([state, delta]).group_by("sku").agg(pl.col("units").sum()).sort("sku")


units = es.ProjectionRunner(store, UnitsPerSku(), batch_size=5_000)
units.catch_up()
units
'''),
    ("md", r'''
## Incremental = rebuild

New events arrive; the runner picks up from its checkpoint. The result must be exactly what
a rebuild from scratch gives: that is the central promise of a projection.
'''),
    ("code", r'''
bus = es.examples.order_domain_bus(store)
bus.dispatch(es.examples.PlaceOrder("late-1", "ada"))
bus.dispatch(es.examples.AddItem("late-1", "sku-0001", 7, 100))
print("behind by", units.lag, "events")
units.catch_up()
incremental = units.state
units.rebuild()
assert incremental.equals(units.state)
units.state.filter(pl.col("sku") == "sku-0001")
'''),
    ("md", r'''
## Rebuild and time it

The shipped order summary exists in both forms (`es.OrderSummary`, `es.OrderSummaryFrame`) and
both give the same table. Time a full rebuild of each: events per second is the number to
remember, because it is what decides how long a rebuild of *your* history takes.
(At the small default size fixed costs weigh heavily on the vectorised form; set
`EVENTS = 1_000_000` to see the gap between the two forms open up.)
'''),
    ("code", r'''
timings = []
for projection in (es.OrderSummary(), es.OrderSummaryFrame()):
    runner = es.ProjectionRunner(store, projection)
    started = time.perf_counter()
    events = runner.rebuild()
    seconds = time.perf_counter() - started
    timings.append({"form": projection.form, "events": events, "seconds": seconds, "events_per_s": events / seconds})
    if projection.form == "handler":
        by_handlers = runner.state
    else:
        by_frames = runner.state
timings = pl.DataFrame(timings)
timings
'''),
    ("code", r'''
assert by_handlers.sort("order_id").equals(by_frames.sort("order_id"))   # same table either way
rate = timings.filter(pl.col("form") == "vectorised")["events_per_s"].item()
for history in (1_000_000, 100_000_000):
    print(f"{history:>12,} events -> about {history / rate:,.0f} s to rebuild at this rate")
'''),
    ("md", r'''
## Zero-downtime rebuilds and durable checkpoints

`rebuild(mode="shadow")` builds the new table aside while the old one keeps answering
queries, then swaps it in with one atomic commit. With `target="parquet"` the state, the
checkpoint and any dead letters are committed together into the store's folder, so a new
runner (after a restart) resumes where the old one stopped.
'''),
    ("code", r'''
durable = es.ProjectionRunner(store, es.OrderSummaryFrame(), target="parquet")
durable.catch_up()
durable.rebuild(mode="shadow")
restarted = es.ProjectionRunner(store, es.OrderSummaryFrame(), target="parquet")
restarted.checkpoint == store.head_position, restarted.state.height
'''),
    ("md", r'''
## Exercise

Write a vectorised projection `RevenuePerCustomer` with one row per customer and the sum of
`PaymentReceived` amounts of their orders. Payments do not carry the customer, so the fold
has to remember which order belongs to whom: keep the `order_id → customer` pairs in a
hidden part of the state, or fold per order and join. The reference answer below keeps it
simple by keeping one row per *order*, and `view` adds up per customer; replace it with your
own and run the check.
'''),
    ("code", r'''
class RevenuePerOrder(es.VectorisedProjection):
    key = "order_id"
    schema = {"order_id": pl.String(), "customer": pl.String(), "paid": pl.Int64()}
    event_types = ("OrderPlaced", "PaymentReceived")
    fields = {"order_id": pl.String(), "customer": pl.String(), "amount": pl.Int64()}

    def fold(self, state, events):
        new = events.group_by("order_id").agg(
            customer=pl.col("customer").drop_nulls().first(), paid=pl.col("amount").fill_null(0).sum())
        return (pl.concat([state, new]).group_by("order_id")
                  .agg(pl.col("customer").drop_nulls().first(), pl.col("paid").sum()))


revenue = es.ProjectionRunner(store, RevenuePerOrder(), batch_size=4_000)
revenue.catch_up()
per_customer_revenue = revenue.state.group_by("customer").agg(pl.col("paid").sum()).filter(pl.col("paid") > 0)
per_customer_revenue.sort("paid", descending=True).head()
'''),
    ("code", r'''
# Check: the same numbers straight from the event frame, with a join done by hand.
events = store.to_polars()
owners = events.filter(pl.col("event_type") == "OrderPlaced").select("order_id", "customer")
expected = (events.filter(pl.col("event_type") == "PaymentReceived").select("order_id", "amount")
                  .join(owners, on="order_id").group_by("customer").agg(paid=pl.col("amount").sum()))
got = per_customer_revenue.select("customer", "paid").sort("customer")
assert got.equals(expected.sort("customer")), "revenue per customer differs from the log"
print(f"correct: {got.height} paying customers, {got['paid'].sum():,} cents in total")
'''),
]
