"""04: measured loads and rebuilds with and without snapshots, beside the calibrated model."""

CELLS = [
    ("md", r'''
# 04 · Snapshots and rebuild cost

Loading an aggregate replays its stream. For an order with five events that costs nothing;
for a stock item or an account with ten thousand events it costs every time a command
touches it. A **snapshot** stores the aggregate's state at some version, so a load reads the
snapshot and replays only the **tail** after it. With a snapshot every `k` events the tail
is `L mod k` events, on average about `(k − 1) / 2`.

Snapshots are not free: each one is written (time, bytes) and must be thrown away when the
aggregate's code changes. And they do **nothing** for a projection rebuild, which must
replay every event of the store anyway.

This notebook measures both on a real store, then puts the numbers beside the model in
`es.sim.rebuild_cost`, calibrated on the same store by `es.sim.calibrate`, so you can
predict the effect for a store a thousand times bigger.
'''),
    ("params", r'''
ORDERS = 40          # aggregates (orders) in the store
ITEMS = 250          # items added to each order: long streams, where snapshots matter
INTERVAL = 50        # snapshot every INTERVAL events
SEED = 4
'''),
    ("code", r'''
import statistics
import time

import polars as pl

import esnotebook as es

ex = es.examples
'''),
    ("md", r'''
## A store of long streams

`es.datasets.generate_orders` makes a seeded order workload as an event frame; with many
items per order the streams are long. `append_frame` imports it in one atomic commit.
'''),
    ("code", r'''
store = es.InMemoryEventStore()
store.append_frame(es.datasets.generate_orders(ORDERS, items_per_order=ITEMS, p_abandon=0, seed=SEED, progress=False))
lengths = pl.Series([store.stream_version(s) for s in store.streams()])
print(f"{len(store):,} events, {len(lengths)} streams, {lengths.mean():.0f} events per stream on average")
'''),
    ("md", r'''
## Measure: loading every order, without and with snapshots

Each timing is the median of five passes over all orders, the two kinds of load taking
turns, in **CPU seconds** (`time.process_time`): on a laptop running other things, or a
shared machine, the wall clock also counts whoever else had the cores. `rebuild_snapshots()`
takes a fresh snapshot of every order at its current version: the best case, where a load
replays no tail at all (in the model, a snapshot after every event: interval 1). In normal
running a repository with `snapshot_every=INTERVAL` snapshots as the streams grow, and a
load replays the tail since the last one.
'''),
    ("code", r'''
ids = [s.removeprefix("order-") for s in store.streams()]

plain = es.Repository(store, ex.Order)
snapshotted = es.Repository(store, ex.Order, snapshots=es.InMemorySnapshotStore(), snapshot_every=INTERVAL)
snapshotted.rebuild_snapshots()
assert all(plain.load(i).get_state() == snapshotted.load(i).get_state() for i in ids)   # same state either way

repositories = {"no snapshots": plain, "snapshot at the head": snapshotted}
runs = {name: [] for name in repositories}
for _ in range(5):
    for name, repository in repositories.items():
        started = time.process_time()
        for i in ids:
            repository.load(i)
        runs[name].append((time.process_time() - started) / len(ids))
measured = {name: statistics.median(r) for name, r in runs.items()}
{k: f"{v * 1e3:.2f} ms per load" for k, v in measured.items()}
'''),
    ("md", r'''
And a projection rebuild, which replays the whole store with or without snapshots:
'''),
    ("code", r'''
runner = es.ProjectionRunner(store, es.OrderSummary())
runs = []
for _ in range(5):
    started = time.process_time()
    runner.rebuild()
    runs.append(time.process_time() - started)
measured_rebuild = statistics.median(runs)
print(f"rebuild: {measured_rebuild:.3f} s for {len(store):,} events ({len(store) / measured_rebuild:,.0f} events/s)")
'''),
    ("md", r'''
## The model, calibrated on this store

`es.sim.calibrate` times the real runner and repository on samples of the store (CPU
seconds, medians of interleaved passes) and fits per-event and fixed costs: a projection
rebuild's per event and per run, an aggregate load's per event replayed and per load, and
what reading a snapshot adds to a load. `es.sim.rebuild_cost` turns those costs into predictions for any
snapshot interval: load time, replayed tail, snapshots written and kept, storage, and the
rebuild time (which no interval changes).
'''),
    ("code", r'''
costs = es.sim.calibrate(store, projection=es.OrderSummary(), sample_events=min(len(store), 6_000),
                         sample_streams=min(ORDERS, 20), seed=SEED)
model = es.sim.rebuild_cost(costs, interval=INTERVAL)
model
'''),
    ("code", r'''
table = model.to_polars()
none = table.filter(pl.col("interval").is_null())
at_head = es.sim.rebuild_cost(costs, interval=1)
comparison = pl.DataFrame({
    "what": ["load, no snapshots (ms)", "load, snapshot at the head (ms)", "projection rebuild (s)"],
    "measured": [measured["no snapshots"] * 1e3, measured["snapshot at the head"] * 1e3, measured_rebuild],
    "model": [none["load_time_s"].item() * 1e3, at_head["load_time_s"] * 1e3, model["rebuild_time_s"]],
}).with_columns(ratio=pl.col("measured") / pl.col("model"))
comparison
'''),
    ("md", r'''
A ratio near 1 says the model accounts for what the code does; the calibration was made on
samples, not the whole store, and CPU time on a busy machine still wanders by ten percent or
so between runs, so re-run the two cells above to see how much. A ratio far off means the
model is missing a cost: worth knowing before you trust a prediction a thousand times larger.
What this run shows:
'''),
    ("code", r'''
low, high = comparison["ratio"].min(), comparison["ratio"].max()
def faster(full, snap):
    return f"{full / snap:.1f}x faster" if snap < full else f"{snap / full:.1f}x slower"

best = model.best_interval
print(f"measured / model: {low:.2f} to {high:.2f}. "
      f"From a snapshot at the head a load was {faster(measured['no snapshots'], measured['snapshot at the head'])} "
      f"than a full replay (the model: {faster(none['load_time_s'].item(), at_head['load_time_s'])}). "
      f"Cheapest snapshot interval by the model: {'no snapshots' if best is None else f'every {best} events'}, "
      f"{1 - model['best_cost_per_event_s'] / none['cost_per_event_s'].item():.0%} cheaper per appended event than none.")
'''),
    ("md", r'''
The sweep over intervals shows the trade-off: short intervals make loads cheap and write
many snapshots. The model's `best_interval` minimises the steady-state cost per appended
event: the loads of a stream's life (one before each append, replaying `v mod k` events at
version `v`, about `(k − 1) / 2` on average) plus a snapshot written every `k` events. It
is not the interval that suits today's loads best: with every stream near 250 events, a
snapshot every 250 events would leave almost no tail today, and a long one as the streams
grow.
'''),
    ("code", r'''
model.plot();
'''),
    ("md", r'''
## Scale it up without building it

The same costs, for a store of 50 million events in 200 000 streams receiving 500 events/s
while a projection is rebuilt.
'''),
    ("code", r'''
big = es.sim.rebuild_cost(50_000_000, streams=200_000, interval=INTERVAL, live_rate=500,
                          apply_cost=costs.apply_cost, rebuild_overhead=costs.rebuild_overhead,
                          load_event_cost=costs.load_event_cost, load_overhead=costs.load_overhead,
                          snapshot_read_cost=costs.snapshot_read_cost, snapshot_write_cost=costs.snapshot_write_cost,
                          snapshot_bytes=costs.snapshot_bytes, event_bytes=costs.event_bytes)
print(f"rebuild under live traffic: {big['rebuild_time_s'] / 3600:.1f} h (catches up: {big.catches_up})")
big.summary()
'''),
    ("md", r'''
## Exercise

How many events does a load replay on average with a snapshot every `INTERVAL` events,
once the streams have grown to their current lengths? The last snapshot of a stream of
length `L` was taken at the last multiple of `INTERVAL`, so the tail is `L mod INTERVAL`
(a stream shorter than `INTERVAL` has no snapshot and replays whole, which is the same
number). The reference answer computes it from the stream lengths; the check compares it
with the model's `replayed_tail`, calibrated from the same store.
'''),
    ("code", r'''
mean_tail = (lengths % INTERVAL).mean()
mean_tail
'''),
    ("code", r'''
# Check: the model's replayed tail at INTERVAL, and how far it is from the rule of thumb (k - 1) / 2.
expected = model["replayed_tail"]
assert abs(mean_tail - expected) < 1e-9, f"expected {expected:.3f} events per load (got {mean_tail:.3f})"
print(f"correct: {mean_tail:.2f} events replayed per load (rule of thumb (k - 1) / 2 = {(INTERVAL - 1) / 2})")
'''),
]
