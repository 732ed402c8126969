"""Generating the synthetic order workload, beside the bare cost of building a frame that size.

Rows printed side by side, for the same number of events in one run:

- ``bare numpy/polars: random frame``: the floor. A frame of the same 11 columns and dtypes
  filled with independent random values (ids gathered from the same name tables, nulls where
  a real frame has them, time column sorted): what any generator must at least spend to put
  that many rows into memory, with none of the history's logic.
- ``generate_orders, checkout shape``: the benchmark workload of the other benchmarks
  (1 placed, 8 items, 1 payment per order: exactly 10 events per order).
- ``generate_orders, default knobs``: the realistic mix (removals, failures, retries,
  cancellations, shipping), sized to about the same number of events.

Each row is the median of ``--repeats`` runs after a warm-up; the ratio is the row's time
per event over the floor's. The target (issue 2): 10 M events in a few seconds.

Run: ``python benchmarks/bench_generate.py [--events 10000000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esnotebook.datasets import (  # noqa: E402
    ORDER_EVENT_TYPES,
    expected_events_per_order,
    generate_orders,
)

CHECKOUT = dict(
    items_per_order=8, p_remove=0, p_abandon=0, p_cancel=0, p_payment_failed=0, p_ship=0
)


def random_frame(n_events: int, n_orders: int, seed: int) -> pl.DataFrame:
    """The floor: ``n_events`` random rows with the generator's columns and dtypes."""
    rng = np.random.default_rng(seed)

    def idx(n: int) -> pl.Series:
        return pl.Series(rng.integers(0, n, n_events, dtype=np.uint32))

    def ids(prefix: str, n: int) -> pl.Series:
        return prefix + pl.int_range(n, dtype=pl.Int64, eager=True).cast(pl.String).str.zfill(7)

    half = rng.random(n_events) < 0.5
    order_ids = ids("", n_orders)
    frame = pl.DataFrame(
        [
            ("order-" + order_ids).gather(idx(n_orders)).alias("stream_id"),
            pl.Series("version", rng.integers(1, 11, n_events)),
            pl.Series(ORDER_EVENT_TYPES).gather(idx(len(ORDER_EVENT_TYPES))).alias("event_type"),
            pl.Series("recorded_at", np.sort(rng.integers(0, 30 * 86_400_000_000, n_events))).cast(
                pl.Datetime("us", "UTC")
            ),
            order_ids.gather(idx(n_orders)).alias("order_id"),
            ids("c-", n_orders // 3).gather(idx(n_orders // 3)).alias("customer"),
            ids("sku-", 500).gather(idx(500)).alias("sku"),
            pl.Series("quantity", rng.integers(1, 10, n_events)),
            pl.Series("price", rng.integers(99, 10_000, n_events)),
            pl.Series("amount", rng.integers(99, 100_000, n_events)),
            pl.Series(["card declined", "changed mind"]).gather(idx(2)).alias("reason"),
        ]
    )
    # Payload columns are mostly null in a real event frame; the floor pays for that too.
    nulls = pl.Series(half)
    return frame.with_columns(
        pl.when(nulls).then(pl.col(c)).alias(c)
        for c in ("customer", "sku", "quantity", "price", "amount", "reason")
    )


def timed(fn, repeats: int) -> tuple[float, int]:
    """Median seconds of ``repeats`` calls after a warm-up, and the rows the call made."""
    rows = fn().height
    samples = []
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        frame = fn()
        samples.append(time.perf_counter() - t)
        del frame
    return statistics.median(samples), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    checkout_orders = args.events // 10
    default_orders = round(args.events / expected_events_per_order())
    rows = [
        ("bare numpy/polars: random frame", lambda: random_frame(args.events, checkout_orders, 1)),
        (
            "generate_orders, checkout shape",
            lambda: generate_orders(checkout_orders, seed=1, **CHECKOUT),
        ),
        ("generate_orders, default knobs", lambda: generate_orders(default_orders, seed=1)),
    ]
    print(
        f"{'workload':<34}{'events':>12}{'seconds':>10}{'M events/s':>12}"
        f"{'time/event vs floor':>21}"
    )
    floor = None
    for name, fn in rows:
        seconds, n = timed(fn, args.repeats)
        rate = n / seconds
        floor = floor or rate
        print(f"{name:<34}{n:>12,}{seconds:>10.2f}{rate / 1e6:>12.2f}{floor / rate:>20.2f}x")


if __name__ == "__main__":
    main()
