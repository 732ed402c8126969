"""06: a poison event and a lagging consumer: dead letters, lag metrics and plots, lag status."""

CELLS = [
    ("md", r'''
# 06 · Observability: lag, dead letters, tracing

A projection consumer in production fails in two typical ways:

* a **poison event**: one event the projection cannot handle (a bug, bad data). Failing
  forever on it stops the whole projection; skipping it silently loses data. The runner
  retries it a few times, then puts it in a **dead-letter queue** with the error, and goes
  on. After the fix is deployed, the dead letters are retried.
* **lag**: the producer writes faster than the consumer applies. Lag is measured two ways:
  **offset lag** (events not applied yet: head − checkpoint) and **time lag** (age of the
  oldest unapplied event). A Burrow-style **status** judges the recent window of
  measurements: `OK`, `WARNING` (falling behind), `STALLED` (alive, not moving) or
  `STOPPED` (not stepping at all).
'''),
    ("params", r'''
PRODUCER_RATE = 120   # events appended per simulated second
CONSUMER_BATCH = 100  # events the consumer applies per simulated second
SECONDS = 30          # how long the producer runs
CRASH = (10, 20)      # the consumer is down from second 10 to second 20
SEED = 5
'''),
    ("code", r'''
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

import esnotebook as es

folder = Path(tempfile.mkdtemp(prefix="esnotebook-06-")) / "shop"
'''),
    ("md", r'''
## A poison event

A projection of units per SKU that refuses an item with a non-positive quantity: such an
event should never exist, and when it does the projection must not guess. A handler that
raises changes nothing (the row it got was its own copy), so the runner can retry the
event or set it aside as a *dead letter*.
'''),
    ("code", r'''
class UnitsPerSku(es.Projection):
    key = "sku"
    schema = {"sku": pl.String(), "units": pl.Int64()}

    def key_of(self, event):
        return event.data["sku"]

    def on_ItemAdded(self, row, event):
        if event.data["quantity"] <= 0:
            raise ValueError(f"quantity must be > 0 (got {event.data['quantity']})")
        return {"sku": event.data["sku"], "units": (row["units"] if row else 0) + event.data["quantity"]}


store = es.ParquetEventStore(folder)
item = lambda o, sku, q: es.NewEvent("ItemAdded", {"order_id": o, "sku": sku, "quantity": q, "price": 100})
store.append("order-1", [es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "ada"}), item("1", "tea", 2)])
store.append("order-2", [es.NewEvent("OrderPlaced", {"order_id": "2", "customer": "bob"}), item("2", "tea", 0)])  # the poison
store.append("order-3", [es.NewEvent("OrderPlaced", {"order_id": "3", "customer": "cy"}), item("3", "tea", 5)])

runner = es.ProjectionRunner(store, UnitsPerSku(), target="parquet", max_attempts=3)
runner.catch_up()
runner.dead_letters
'''),
    ("md", r'''
The runner went on past the poison event: the checkpoint is at the head and the good events
were applied. The dead letter records what failed, why, and how often it was tried.
'''),
    ("code", r'''
runner.checkpoint, runner.state
'''),
    ("md", r'''
### Fix, restart, retry

The fix: a zero quantity is an item that was never really added, so it counts as 0 units.
"Deploying" it means a new runner with the fixed projection; it resumes from the
checkpoint, state **and dead letters** committed in the store's folder, and retries them.
'''),
    ("code", r'''
class UnitsPerSkuFixed(UnitsPerSku):
    name = "UnitsPerSku"   # the same projection, fixed: it owns the same committed state

    def on_ItemAdded(self, row, event):
        quantity = max(event.data["quantity"], 0)
        return {"sku": event.data["sku"], "units": (row["units"] if row else 0) + quantity}


fixed = es.ProjectionRunner(store, UnitsPerSkuFixed(), target="parquet")
print("dead letters after restart:", len(fixed.dead_letters), "| retried OK:", fixed.retry_dead_letters())
fixed.state
'''),
    ("md", r'''
## A lagging consumer

Now a producer writes `PRODUCER_RATE` events per second and a consumer applies at most
`CONSUMER_BATCH` per second. A shared fake clock makes one loop iteration one second, so the
numbers are exact and the notebook is fast; the runner records one metrics row per step.
During `CRASH` the consumer process is down and does not step at all. After the producer
stops, the consumer catches up. We ask for the lag status at three moments.
'''),
    ("code", r'''
now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
clock = lambda: now[0]
live = es.InMemoryEventStore(clock=clock)
consumer = es.ProjectionRunner(live, UnitsPerSkuFixed(), batch_size=CONSUMER_BATCH, clock=clock)
rng = np.random.default_rng(SEED)
order = 0
for second in range(SECONDS + 60):
    if second < SECONDS:
        for _ in range(PRODUCER_RATE // 2):
            order += 1
            live.append(f"order-{order}", [es.NewEvent("OrderPlaced", {"order_id": str(order), "customer": "c"}),
                                           item(str(order), f"sku-{rng.integers(5)}", int(rng.integers(1, 4)))])
    now[0] += timedelta(seconds=1)
    if not CRASH[0] <= second < CRASH[1]:
        consumer.step()
    if second == CRASH[0] - 1:
        print(f"second {second:3}: producing, consumer too slow ->", consumer.status())
    if second == CRASH[1] - 1:
        print(f"second {second:3}: consumer down              ->", consumer.status())
print(f"second {second:3}: producer done, caught up   ->", consumer.status())
consumer.metrics.head()
'''),
    ("md", r'''
The lag plot from the runner's own metrics: offset lag (events, left) and time lag
(seconds, right) over time. With the producer at 120/s and the consumer at 100/s the
offset lag grows by about 20 events a second; while the consumer is down nothing is
measured (the flat stretch: the plot holds the last value), and when it comes back the lag
has jumped by 120 events for every second it was down; after the producer stops it drains
at 100/s, and the time lag falls to 0 once the consumer reaches the head.
'''),
    ("code", r'''
m = consumer.metrics
series = m.select(
    time=(pl.col("wall_time") - m["wall_time"][0]).dt.total_seconds().cast(pl.Float64),
    offset_lag="offset_lag",
    time_lag="time_lag_s",
)
ax = es.plot.plot_lag(series)
ax.set_title("projection consumer: measured lag");
'''),
    ("md", r'''
## The same question, simulated

The simulator answers "what would lag look like" without running the system, using the
same two lag measures: a Poisson producer at `PRODUCER_RATE`/s against one consumer at
`CONSUMER_BATCH`/s grows without bound (utilisation above 1); double the consumer and the
lag stays small.
'''),
    ("code", r'''
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for ax, rate in zip(axes, (CONSUMER_BATCH, 2 * CONSUMER_BATCH)):
    result = es.sim.simulate_lag(PRODUCER_RATE, service_rate=rate, duration=SECONDS, seed=SEED, progress=False)
    es.plot.plot_lag(result, ax=ax)
    ax.set_title(f"consumer at {rate}/s: grows without bound = {result.grows_without_bound}")
fig.tight_layout()
'''),
    ("md", r'''
## Tracing a poison event back to its cause

A dead letter gives you a position; the trace of its correlation id shows the command and
events around it.
'''),
    ("code", r'''
poison = next(e for e in store.read_all() if e.event_type == "ItemAdded" and e.data["quantity"] == 0)
es.trace(store, poison.correlation_id).to_polars().select("position", "stream_id", "event_type", "depth", "problem")
'''),
    ("md", r'''
## Exercise

Find the smallest consumer batch (events per simulated second) at which the consumer of
the lagging run above would have ended the producer's `SECONDS` **caught up** (offset lag 0
right after the last produced second). Reason it out from the rates; the reference answer
is filled in. The check reruns the loop with your number and with one less.
'''),
    ("code", r'''
per_second = 2 * (PRODUCER_RATE // 2)     # events the producer appends per second
smallest_batch = per_second
smallest_batch
'''),
    ("code", r'''
# Check: rerun the producer/consumer loop with your batch size and one less.
def lag_at_end(batch):
    t = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    s = es.InMemoryEventStore(clock=lambda: t[0])
    r = es.ProjectionRunner(s, UnitsPerSkuFixed(), batch_size=batch, clock=lambda: t[0])
    for n in range(SECONDS):
        for k in range(PRODUCER_RATE // 2):
            o = f"{n}-{k}"
            s.append(f"order-{o}", [es.NewEvent("OrderPlaced", {"order_id": o, "customer": "c"}), item(o, "tea", 1)])
        t[0] += timedelta(seconds=1)
        r.step()
    return r.lag

assert lag_at_end(smallest_batch) == 0, f"batch {smallest_batch} does not keep up"
assert lag_at_end(smallest_batch - 1) > 0, f"batch {smallest_batch - 1} also keeps up: yours is not the smallest"
print("correct: the consumer needs", smallest_batch, "events per second")
'''),
]
