"""05: the fulfilment saga into a payment failure; compensation, trace and swimlane."""

CELLS = [
    ("md", r'''
# 05 · Sagas and compensation

Placing an order touches three aggregates: the order, the stock of each SKU, and the
payment. There is no transaction across them. A **saga** (process manager) coordinates
them instead: it reacts to events by sending commands, one step at a time, and when a step
fails it **compensates**: it sends commands that undo the steps already done, newest first.

The shipped `OrderFulfillment` saga runs on `OrderPlaced`:

1. `reserve`: reserve stock for each SKU (undone by releasing it),
2. `charge`: charge the payment (undone by a refund); a declined card records
   `PaymentFailed` on the order,
3. `ship`: record the payment on the order and ship it.

A failure cancels the order first (so nobody acts on it while it is being undone), then
releases what was reserved. Every command carries an **idempotency key** that is the same on
every retry, so a retried or duplicated delivery never reserves twice.
'''),
    ("params", r'''
ORDERS = 6          # orders placed in the shop
STOCK = 50          # units of each SKU in stock at the start
DECLINED = "o-2"    # the order whose card is declined
SEED = 11
'''),
    ("code", r'''
import numpy as np
import polars as pl

import esnotebook as es

ex = es.examples
'''),
    ("md", r'''
## A small shop

Stock for three SKUs, then `ORDERS` orders with a few items each. The saga has not run yet,
so nothing is reserved.
'''),
    ("code", r'''
rng = np.random.default_rng(SEED)
store = es.InMemoryEventStore()
bus = ex.order_domain_bus(store)
skus = ["tea", "cake", "jam"]
for sku in skus:
    bus.dispatch(ex.AddStock(sku, STOCK))
for n in range(1, ORDERS + 1):
    bus.dispatch(ex.PlaceOrder(f"o-{n}", f"c-{n}"))
    for sku in rng.choice(skus, size=2, replace=False):
        bus.dispatch(ex.AddItem(f"o-{n}", str(sku), int(rng.integers(1, 4)), int(rng.integers(200, 900))))
store.to_polars().group_by("event_type").len()
'''),
    ("md", r'''
## Run the saga into a declined card

A `FaultPlan` injects failures into the commands the saga sends: here a permanent refusal
of `ChargePayment` for one order, and a transient network error on the first two stock
reservations, which the saga simply retries (same idempotency key, so nothing doubles).
'''),
    ("code", r'''
faults = (es.FaultPlan(seed=SEED)
          .permanent("ChargePayment", reason="card declined", when=lambda c: c.order_id == DECLINED)
          .transient("ReserveInventory", times=2))
sagas = ex.OrderFulfillment().run(store, faults=faults)
sagas
'''),
    ("code", r'''
sagas.instances().select("instance_id", "status", "step", "steps_done", "failure", "attempts")
'''),
    ("md", r'''
Every command the failed instance sent, in order: the `do` phase, the `fail` phase
(recording the declined payment), the `abort` (cancel the order), and the `undo` phase
(release the stock).
'''),
    ("code", r'''
sagas.history(DECLINED).select("phase", "step", "command_type", "attempt", "outcome", "error")
'''),
    ("code", r'''
[e.event_type for e in store.read_stream(f"order-{DECLINED}")]
'''),
    ("md", r'''
## The causal trace

Each event records the command that caused it (`causation_id`) and the conversation it
belongs to (`correlation_id`). `es.trace` follows one conversation across every stream; the
swimlane draws one lane per aggregate. Every link must be sound: `chain.ok`.
'''),
    ("code", r'''
placed = next(e for e in store.read_stream(f"order-{DECLINED}") if e.event_type == "OrderPlaced")
chain = es.trace(store, placed.correlation_id)
print("sound links:", chain.ok, "| streams:", chain.streams)
chain.to_polars().select("position", "stream_id", "event_type", "via_command", "depth")
'''),
    ("code", r'''
chain.plot();
'''),
    ("md", r'''
## Exercise

After the saga, how many units of each SKU are still **available**? Work it out from the
saga's results: only the *completed* orders keep their reservation; the declined one gave
its stock back. The reference answer below loads the inventory aggregates; replace it with
your own reasoning (for example from the `ItemAdded` events of the completed orders) and run
the check.
'''),
    ("code", r'''
inventory = bus.repository(ex.Inventory)
available = {sku: inventory.load(sku).available for sku in skus}
available
'''),
    ("code", r'''
# Check: stock minus the items of the completed orders; the declined order reserved nothing in the end.
done = sagas.instances().filter(pl.col("status") == "completed")["instance_id"].to_list()
items = store.to_polars().filter(pl.col("event_type") == "ItemAdded", pl.col("order_id").is_in(done))
kept = dict(items.group_by("sku").agg(pl.col("quantity").sum()).iter_rows())
expected = {sku: STOCK - kept.get(sku, 0) for sku in skus}
assert DECLINED not in done and sagas.instance(DECLINED).status == "compensated"
assert available == expected, f"expected {expected} (got {available})"
print("correct:", available)
'''),
]
