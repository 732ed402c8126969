"""08: a large Parquet store, the streaming engine, DuckDB over the same files, Dask."""

CELLS = [
    ("md", r'''
# 08 · Scaling out

Event stores grow without end, and the read side must keep up: rebuilding a projection over
ten million events has to take seconds to minutes, not hours. Three things help:

* **columnar files**: a `ParquetEventStore` keeps each payload field as a typed column, so a
  rebuild reads only the columns it needs and never parses JSON;
* **streaming execution**: polars' streaming engine processes the files in chunks, so the
  store may be larger than memory;
* **partition parallelism**: a projection whose rows each depend on one key (one order) can
  be rebuilt in independent pieces, one per hash bucket of the key, on many cores or
  machines with Dask, and give exactly the same table.

And because the store is plain Parquet, other engines such as **DuckDB** query it as it is.

> The test run uses a small store. For the real thing set `EVENTS = 10_000_000` (about a
> minute to generate and roughly 1 GB on disk; a 2-core laptop rebuilds it in well under a
> minute).
'''),
    ("params", r'''
EVENTS = 200_000   # set to 10_000_000 for the full-size exercise
SEED = 8
WORKERS = 2        # Dask worker processes on this machine
'''),
    ("code", r'''
import tempfile
import time
from functools import partial
from pathlib import Path

import duckdb
import polars as pl

import esnotebook as es

work = Path(tempfile.mkdtemp(prefix="esnotebook-08-"))
started = time.perf_counter()
store = es.datasets.generate("orders-small", events=EVENTS, seed=SEED, folder=work / "big")
print(f"{len(store):,} events in {len(store.streams()):,} streams, generated in {time.perf_counter() - started:.1f} s")
'''),
    ("code", r'''
size = sum(p.stat().st_size for p in (work / "big").rglob("*.parquet"))
print(f"{size / 1e6:.1f} MB on disk, {size / len(store):.0f} bytes per event")
'''),
    ("md", r'''
## The streaming engine

`store.scan()` is a lazy polars query over the files. With `engine="streaming"` polars
runs it in chunks; the same call works on a store a hundred times larger than memory.

A rebuild bounds its memory another way too. Each `OrderSummary` row belongs to one stream
(one order), and the store numbers its streams as they are created, so the runner rebuilds it
one range of stream numbers at a time: memory holds one range's events and the rows made so
far, however large the store.
'''),
    ("code", r'''
started = time.perf_counter()
daily = (store.scan(event_types=["PaymentReceived"])
              .group_by(day=pl.col("recorded_at").dt.date())
              .agg(payments=pl.len(), revenue=pl.col("amount").sum())
              .sort("day")
              .collect(engine="streaming"))
print(f"{time.perf_counter() - started:.2f} s")
daily.head()
'''),
    ("code", r'''
runner = es.ProjectionRunner(store, es.OrderSummaryFrame(), engine="streaming")
started = time.perf_counter()
runner.rebuild()
single = time.perf_counter() - started
print(f"rebuilt {runner.state.height:,} orders from {len(store):,} events in {single:.2f} s "
      f"({len(store) / single:,.0f} events/s)")
'''),
    ("md", r'''
## DuckDB over the same files

No export, no copy: DuckDB reads the store's folder. `union_by_name` lines up the columns of
the files (each file holds the fields of the event types appended in it).
'''),
    ("code", r'''
files = str(work / "big" / "events" / "*.parquet")   # one file per append
duckdb.sql(f"""
    SELECT event_type, count(*) AS events, count(DISTINCT stream_id) AS streams
    FROM read_parquet('{files}', union_by_name = true)
    GROUP BY event_type ORDER BY events DESC
""").pl()
'''),
    ("code", r'''
# The same revenue per day as above, in SQL: the two engines must agree. Days are UTC days
# in both (DuckDB would otherwise cut days at the machine's time zone).
by_sql = duckdb.sql(f"""
    SELECT CAST(recorded_at AT TIME ZONE 'UTC' AS DATE) AS day, count(*) AS payments, sum(amount) AS revenue
    FROM read_parquet('{files}', union_by_name = true)
    WHERE event_type = 'PaymentReceived' GROUP BY 1 ORDER BY 1
""").pl()
assert by_sql["revenue"].cast(pl.Int64).to_list() == daily["revenue"].to_list()
by_sql.head()
'''),
    ("md", r'''
## A Dask rebuild

`es.OrderSummaryFrame` keys each row by `order_id`, so the orders can be split into hash
buckets and folded independently. With a Dask client the runner plans one task per bucket;
each worker reads its bucket straight from the Parquet files. Here a `LocalCluster` with
`WORKERS` processes stands in for a real cluster: the code is the same.
'''),
    ("code", r'''
from distributed import Client, LocalCluster

cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None)
client = Client(cluster)
client
'''),
    ("code", r'''
distributed_runner = es.ProjectionRunner(store, es.OrderSummaryFrame())
started = time.perf_counter()
distributed_runner.rebuild(client=client)
on_dask = time.perf_counter() - started
same = distributed_runner.state.sort("order_id").equals(runner.state.sort("order_id"))
print(f"Dask rebuild: {on_dask:.2f} s (single process: {single:.2f} s); identical table: {same}")
'''),
    ("md", r'''
At this small size the Dask rebuild is slower: starting tasks and shipping results costs
more than the fold itself. Partitioning pays off when one machine's cores or memory are not
enough, which is why the notebook lets you raise `EVENTS`.

## A Dask sweep

Simulations parallelise even better: every point of a parameter grid and every seed is
independent. `es.sim.run_sweep` sends them to any executor, here the same Dask client, and
returns one tidy frame.
'''),
    ("code", r'''
sweep = es.sim.run_sweep(
    partial(es.sim.simulate_lag, duration=120, progress=False),
    {"arrival_rate": [60, 80, 95], "service_rate": [100]},
    seeds=4, executor=client, progress=False,
)
(sweep.group_by("arrival_rate")
      .agg(pl.col("p99_time_lag").mean().alias("mean p99 time lag (s)"), pl.len().alias("runs"))
      .sort("arrival_rate"))
'''),
    ("md", r'''
## Exercise

Which day had the **most orders placed**? Answer with DuckDB, polars, or a projection; the
reference answer uses DuckDB. The check recomputes it with a Dask rebuild of the order
summary (its `placed_at` column) on the cluster.
'''),
    ("code", r'''
busiest_day = duckdb.sql(f"""
    SELECT CAST(recorded_at AT TIME ZONE 'UTC' AS DATE) AS day, count(*) AS n
    FROM read_parquet('{files}', union_by_name = true)
    WHERE event_type = 'OrderPlaced' GROUP BY 1 ORDER BY n DESC, day LIMIT 1
""").fetchall()[0][0]
busiest_day
'''),
    ("code", r'''
# Check: the order summary, rebuilt on Dask, counts orders per day of placement.
per_day = (distributed_runner.state.group_by(day=pl.col("placed_at").dt.date()).len()
           .sort(["len", "day"], descending=[True, False]))
expected = per_day["day"][0]
client.close(); cluster.close()
assert busiest_day == expected, f"expected {expected} (got {busiest_day})"
print("correct:", busiest_day, "with", per_day["len"][0], "orders placed")
'''),
]
