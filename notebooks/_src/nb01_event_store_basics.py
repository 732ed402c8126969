"""01: the event store: append, read, optimistic concurrency, Parquet on disk, lazy queries."""

CELLS = [
    ("md", r'''
# 01 · Event store basics

An **event store** is an append-only log of facts. Events are grouped into **streams**, one
per thing that changes (here: one per order, `order-<id>`). Every event gets two numbers:

* its **version** within its stream (1, 2, 3, … with no gaps): it orders one order's history;
* its global **position** in the whole store (1, 2, 3, … with no gaps): it orders everything,
  and it is what a consumer remembers as "how far I got".

Nothing is ever updated or deleted. To change something you append a new event.
'''),
    ("params", r'''
SEED = 7          # seeds the little workload of the exercise
CUSTOMERS = 5     # how many customers place orders in the exercise
'''),
    ("code", r'''
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

import esnotebook as es
'''),
    ("md", r'''
## Appending events

`es.NewEvent(type, data)` is an event that is not stored yet. `append` stores a list of them
on one stream **atomically**: all of them or none.
'''),
    ("code", r'''
store = es.InMemoryEventStore()
recorded = store.append("order-1", [
    es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "ada"}),
    es.NewEvent("ItemAdded", {"order_id": "1", "sku": "tea", "quantity": 2, "price": 350}),
])
[(e.position, e.stream_id, e.version, e.event_type) for e in recorded]
'''),
    ("md", r'''
## Optimistic concurrency

Two people edit the same order at once. Each read it at version 2 and wants to append on
top. `expected_version=2` says "only if the stream is still at version 2": the first append
succeeds, the second gets a `ConcurrencyError` that names the stream and both versions,
and **nothing** of it is written. The loser reloads and retries; no lock was held.
`expected_version=0` means "this stream must not exist yet".
'''),
    ("code", r'''
store.append("order-1", [es.NewEvent("ItemAdded", {"order_id": "1", "sku": "cake", "quantity": 1, "price": 400})],
             expected_version=2)
try:
    store.append("order-1", [es.NewEvent("ItemRemoved", {"order_id": "1", "sku": "tea", "quantity": 1})],
                 expected_version=2)
except es.ConcurrencyError as e:
    print(e)
store.stream_version("order-1"), len(store)
'''),
    ("md", r'''
## Reading back

`read_stream` returns one stream's events in version order (that is how an aggregate is
loaded); `read_all` returns every event after a position (that is how a projection
consumer follows the store). Both give `RecordedEvent`s: frozen values with the position,
version, time, ids and payload.
'''),
    ("code", r'''
store.append("order-2", [es.NewEvent("OrderPlaced", {"order_id": "2", "customer": "bob"})], expected_version=0)
for event in store.read_all(from_position=1):
    print(event.position, event.stream_id, event.version, event.event_type, event.data)
'''),
    ("md", r'''
## The canonical event frame

For analysis the whole store is one polars DataFrame: the fixed columns first, then one
**typed** column per payload field (null where an event type lacks it). `scan()` gives the
same thing lazily, so filters and aggregations run inside polars' engine.
'''),
    ("code", r'''
store.to_polars()
'''),
    ("md", r'''
A payload field keeps one type: sending `quantity` as a string later is refused with an
`EventDataError` that names the field and both types, and the store is unchanged.
'''),
    ("code", r'''
try:
    store.append("order-2", [es.NewEvent("ItemAdded", {"order_id": "2", "sku": "tea", "quantity": "two", "price": 350})])
except es.EventDataError as e:
    print(e)
len(store)
'''),
    ("md", r'''
## A store on disk

`es.ParquetEventStore(folder)` keeps the same promises on disk. Each append becomes one new
Parquet file under `events/`, named by its first and last position, written aside and
renamed into place in one atomic step, so a crash never leaves half an append. Any Arrow tool can read the folder directly (the
project's `docs/parquet-layout.md` describes the files).
'''),
    ("code", r'''
folder = Path(tempfile.mkdtemp(prefix="esnotebook-01-")) / "shop"
disk = es.ParquetEventStore(folder)
for event in store.read_all():
    disk.append(event.stream_id, [es.NewEvent(event.event_type, event.data)])
files = sorted(folder.rglob("*.parquet"))
[str(f.relative_to(folder)) for f in files]
'''),
    ("code", r'''
# The files are plain Parquet: polars reads them without esnotebook. Each file holds only
# the payload columns of its own events, so the frames are lined up by column name; sorted
# by name, the files are already in position order.
raw = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
assert raw["position"].is_sorted()
raw.filter(pl.col("event_type") == "ItemAdded").select("position", "stream_id", "sku", "quantity")
'''),
    ("md", r'''
## A real sample: about 25 000 order events

`es.datasets.load("orders-small")` opens the shipped sample store (a working copy, so you
can append to it freely). Lazy queries over it read only the columns they need.
'''),
    ("code", r'''
sample = es.datasets.load("orders-small")
(sample.scan(event_types=["ItemAdded"])
       .group_by("sku")
       .agg(units=pl.col("quantity").sum(), revenue=(pl.col("quantity") * pl.col("price")).sum())
       .sort("revenue", descending=True)
       .head(5)
       .collect())
'''),
    ("md", r'''
Every event carries the time it was recorded, so the store is also a record of the
traffic: events per hour, by type. Notebook 07 sizes consumers for exactly this kind of
daily profile.
'''),
    ("code", r'''
es.plot.plot_event_rate(sample, every="1h", by_type=True);
'''),
    ("md", r'''
To look around without writing queries, the store browser pages through the events with
filters for stream, type and time.
'''),
    ("code", r'''
es.widgets.store_browser(sample, page_size=10)
'''),
    ("md", r'''
## Exercise

Write a small workload into a fresh in-memory store: `CUSTOMERS` customers each place one
order (`order-<n>`, created with `expected_version=0`) and add a random number of items.
Then compute, **with a lazy query over `scan()`**, the total value of the items added
(quantity × price, in cents). The reference answer below works; change it and rerun.
'''),
    ("code", r'''
rng = np.random.default_rng(SEED)
mine = es.InMemoryEventStore()
for n in range(CUSTOMERS):
    items = [es.NewEvent("ItemAdded", {"order_id": str(n), "sku": f"sku-{rng.integers(3)}",
                                       "quantity": int(rng.integers(1, 4)), "price": int(rng.integers(100, 900))})
             for _ in range(rng.integers(1, 4))]
    mine.append(f"order-{n}", [es.NewEvent("OrderPlaced", {"order_id": str(n), "customer": f"c-{n}"}), *items],
                expected_version=0)

total_value = (mine.scan(event_types=["ItemAdded"])
                   .select((pl.col("quantity") * pl.col("price")).sum())
                   .collect().item())
total_value
'''),
    ("code", r'''
# Check: replay the log event by event and compare; every stream starts at version 1.
replayed = sum(e.data["quantity"] * e.data["price"] for e in mine.read_all() if e.event_type == "ItemAdded")
assert len(mine.streams()) == CUSTOMERS, f"expected {CUSTOMERS} streams (got {len(mine.streams())})"
assert all(next(iter(mine.read_stream(s))).version == 1 for s in mine.streams())
assert total_value == replayed, f"expected {replayed} cents (got {total_value})"
print(f"correct: {total_value} cents over {len(mine)} events")
'''),
]
