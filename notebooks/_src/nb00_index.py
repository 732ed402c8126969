"""00_index: the whole workflow in a few cells, then the table of contents."""

CELLS = [
    ("md", r'''
# Event sourcing you can see, measure and plan for

**Event sourcing** stores every change to the system as an immutable *event* in an
append-only log, instead of overwriting the current state. The current state is whatever
you get by replaying the events. Everything else follows from that one decision:

* the **write side** turns *commands* ("place this order") into new events, after checking
  the business rules against state rebuilt from earlier events (an *aggregate*);
* the **read side** folds the log into query-friendly tables (*projections*), which can be
  thrown away and rebuilt at any time;
* long-running work across aggregates is a **saga** that reacts to events with commands, and
  undoes completed steps (*compensation*) when a later one fails;
* and because events arrive faster or slower than consumers apply them, you plan for
  **lag** and **rebuild time** before production finds out for you.

This notebook runs that whole workflow once, end to end, on a small shop. The other
notebooks take each step apart. The parameters below are small so the notebook runs in
seconds; raise them to see how things scale.
'''),
    ("params", r'''
EVENTS = 10_000   # size of the generated order workload
SEED = 1          # the generator's seed: the same seed gives the same events
'''),
    ("code", r'''
import tempfile
from pathlib import Path

import polars as pl

import esnotebook as es

work = Path(tempfile.mkdtemp(prefix="esnotebook-00-"))
'''),
    ("md", r'''
## 1. An event store full of orders

`es.datasets.generate` writes a synthetic, seeded order workload into a Parquet event store:
a folder of ordinary Parquet files that polars, pyarrow and DuckDB can read as it is. Each
row of the canonical event frame is one event: its global `position`, the `stream_id` of the
order it belongs to, its `version` within that stream, its type, and its payload as typed
columns.
'''),
    ("code", r'''
store = es.datasets.generate("orders-small", events=EVENTS, seed=SEED, folder=work / "shop")
store
'''),
    ("code", r'''
store.to_polars().group_by("event_type").len().sort("len", descending=True)
'''),
    ("md", r'''
## 2. The write side: a command becomes events

The order domain ships with the package (`es.examples`). A command bus loads the order
aggregate from its events, lets it check its rules, and appends the new events atomically.
A command that breaks a rule is *rejected* and stores nothing.
'''),
    ("code", r'''
ex = es.examples
bus = ex.order_domain_bus(store)
bus.dispatch(ex.PlaceOrder("workshop-1", "ada"))
bus.dispatch(ex.AddItem("workshop-1", "sku-tea", 2, 350))
paid = bus.dispatch(ex.PayOrder("workshop-1", 700))
refused = bus.dispatch(ex.AddItem("workshop-1", "sku-cake", 1, 400), on_reject="return")
paid.status, refused.status, str(refused.error)
'''),
    ("code", r'''
store.read_stream("order-workshop-1")
'''),
    ("md", r'''
## 3. The read side: a projection, rebuilt from scratch

A projection folds the events into a table. The runner remembers how far it got (its
*checkpoint*), so it can be stopped, resumed, or rebuilt from position 0 at any time.
'''),
    ("code", r'''
orders = es.ProjectionRunner(store, es.OrderSummaryFrame())
orders.catch_up()
orders.state.group_by("status").agg(pl.len().alias("orders"), pl.col("total").sum().alias("cents"))
'''),
    ("md", r'''
## 4. A saga that fails, and compensates

The fulfilment saga reserves stock, charges the payment and ships. Here the payment is
declined, so the saga cancels the order and releases the stock it reserved. The causal
trace follows every event the first command led to.
'''),
    ("code", r'''
shop = es.InMemoryEventStore()
shop_bus = ex.order_domain_bus(shop)
for command in (ex.AddStock("sku-tea", 5), ex.PlaceOrder("o-1", "ada"), ex.AddItem("o-1", "sku-tea", 2, 350)):
    shop_bus.dispatch(command)
declined = es.FaultPlan().permanent("ChargePayment", reason="card declined")
sagas = ex.OrderFulfillment().run(shop, faults=declined)
sagas.instances()
'''),
    ("code", r'''
placed = next(shop.read_all(event_types=["OrderPlaced"]))
chain = es.trace(shop, placed.correlation_id)
chain.plot();
'''),
    ("md", r'''
## 5. A capacity question

Orders arrive at about 80 events/s in bursts. How fast must one projection consumer be so
that 99 % of events are applied within two seconds, in at least 90 % of simulated runs?
'''),
    ("code", r'''
answer = es.sim.required_capacity(
    80, target_p99_time_lag=2.0, arrivals="onoff", burst=(2.0, 6.0),
    duration=300, replications=8, seed=SEED, progress=False,
)
answer
'''),
    ("md", r'''
## The workshop

| notebook | what you do there |
|---|---|
| [01 Event store basics](01_event_store_basics.ipynb) | append, read, optimistic concurrency, the Parquet folder, lazy queries |
| [02 Aggregates and commands](02_aggregates_and_commands.ipynb) | rules, the command bus, idempotency, time travel |
| [03 Projections and rebuilds](03_projections_and_rebuilds.ipynb) | write projections two ways, rebuild and time them |
| [04 Snapshots and rebuild cost](04_snapshots_and_rebuild_cost.ipynb) | measure loads with and without snapshots beside the calibrated model |
| [05 Sagas and compensation](05_sagas_and_compensation.ipynb) | the fulfilment saga into a payment failure; trace and swimlane |
| [06 Observability](06_observability_lag_dead_letters_tracing.ipynb) | a poison event, a lagging consumer, dead letters, lag status |
| [07 Capacity planning](07_capacity_planning.ipynb) | size consumers for a bursty daily profile |
| [08 Scaling out](08_scaling_out.ipynb) | a large Parquet store, DuckDB, Dask rebuilds and sweeps |
| [09 Your own events](09_your_own_events.ipynb) | import an `eventsourcing` application's database and analyse it |
| [10 Forecast vs reality](10_forecast_vs_reality.ipynb) | calibrate a real consumer, run a live pipeline, check the forecast against it |
'''),
    ("md", r'''
## Exercise

How many orders in the store are **shipped**? Answer from the projection above (the
reference answer is filled in; change it and see the check react), then run the check,
which counts the `OrderShipped` events in the raw log instead.
'''),
    ("code", r'''
shipped_orders = orders.state.filter(pl.col("status") == "shipped").height
shipped_orders
'''),
    ("code", r'''
# Check: every shipped order has exactly one OrderShipped event in the log.
from_log = store.scan(event_types=["OrderShipped"]).select(pl.col("stream_id").n_unique()).collect().item()
assert shipped_orders == from_log, f"expected {from_log} shipped orders (got {shipped_orders})"
print(f"correct: {shipped_orders} orders shipped")
'''),
]
