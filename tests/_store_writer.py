"""A writer process for the Parquet store's multi-process tests (run as a script).

    python _store_writer.py append  STORE ACKS SEED [COMMITS]   append orders, log each ack
    python _store_writer.py contend STORE GO SEED COMMITS HOLD LOCK_TIMEOUT
    python _store_writer.py compact STORE MAX_EVENTS[,MAX_EVENTS...]   one compaction per size

Every order stream ``order-<tag>-<i>`` is written whole by one commit: an ``OrderPlaced``
carrying ``items=k`` and then ``k`` ``ItemAdded``; so a reader that sees any stream with
fewer than ``k + 1`` events has seen a partial commit. ``append`` writes one JSON line to
ACKS after each append returns (``os.write`` of one short line on an O_APPEND file: whole
or absent, even under SIGKILL). Prints ``ready`` once the store is open (or sets an Event when started through :func:`run`
from a ``multiprocessing`` forkserver, which starts a writer in milliseconds).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from esnotebook.errors import StoreLockedError
from esnotebook.events import NewEvent
from esnotebook.store import ParquetEventStore


def order_events(order: str, k: int) -> list[NewEvent]:
    return [NewEvent("OrderPlaced", {"order_id": order, "customer": "c", "items": k})] + [
        NewEvent("ItemAdded", {"order_id": order, "sku": f"sku-{j}", "quantity": 1 + j, "price": 100})
        for j in range(k)
    ]


def orders_frame(orders: list[tuple[str, int]]) -> pl.DataFrame:
    rows = []
    for order, k in orders:
        rows.append({"stream_id": f"order-{order}", "event_type": "OrderPlaced", "order_id": order,
                     "customer": "c", "items": k, "sku": None, "quantity": None, "price": None})  # fmt: skip
        rows += [
            {"stream_id": f"order-{order}", "event_type": "ItemAdded", "order_id": order,
             "customer": None, "items": None, "sku": f"sku-{j}", "quantity": 1 + j, "price": 100}  # fmt: skip
            for j in range(k)
        ]
    return pl.DataFrame(rows)


def commit(store: ParquetEventStore, rng: np.random.Generator, tag: str, i: int) -> list[dict]:
    """One commit: a single order by ``append``, or a few orders by ``append_frame``."""
    if rng.random() < 0.75:
        order = f"{tag}-{i}"
        k = int(rng.integers(0, 9))
        got = store.append(f"order-{order}", order_events(order, k), expected_version=0)
        return [{"stream": f"order-{order}", "first": got[0].position, "last": got[-1].position, "n": k + 1}]
    orders = [(f"{tag}-{i}.{j}", int(rng.integers(0, 5))) for j in range(int(rng.integers(1, 4)))]
    positions = store.append_frame(orders_frame(orders))
    out, at = [], positions.start
    for order, k in orders:
        out.append({"stream": f"order-{order}", "first": at, "last": at + k, "n": k + 1})
        at += k + 1
    return out


def _print_ready() -> None:
    print("ready", flush=True)


def run(argv: list[str], ready: Any) -> int:
    """Entry point for a ``multiprocessing`` child: ``ready`` is an Event set once open."""
    return main(argv, ready=ready.set)


def main(argv: list[str], *, ready: Callable[[], None] = _print_ready) -> int:
    mode, path = argv[0], argv[1]
    if mode == "append":
        acks_path, seed = argv[2], int(argv[3])
        commits = int(argv[4]) if len(argv) > 4 else 10**9
        rng = np.random.default_rng(seed)
        store = ParquetEventStore(path)
        acks = os.open(acks_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        ready()
        for i in range(commits):
            for ack in commit(store, rng, f"{seed}", i):
                os.write(acks, (json.dumps(ack) + "\n").encode())
        store.close()
        return 0
    if mode == "contend":
        go, seed, commits, hold, timeout = argv[2], int(argv[3]), int(argv[4]), float(argv[5]), float(argv[6])
        rng = np.random.default_rng(seed)
        store = ParquetEventStore(path, lock_timeout=timeout)
        ready()
        while not os.path.exists(go):
            time.sleep(0.001)
        try:
            for i in range(commits):
                commit(store, rng, f"{seed}", i)
                # A shared stream both writers extend: versions must never collide.
                store.append("shared", [NewEvent("Touched", {"by": seed})])
            time.sleep(hold)
        except StoreLockedError as exc:
            print(f"locked: {exc}", file=sys.stderr, flush=True)
            return 3
        finally:
            store.close()
        return 0
    if mode == "compact":
        store = ParquetEventStore(path)
        ready()
        for size in argv[2].split(","):  # several passes: a longer window of churn
            store.compact(max_events=int(size))
        print("done", flush=True)
        return 0
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
