"""Rebuild OrderSummary from a store larger than a laptop's comfort, with the streaming engine.

Builds (or reuses, with --dir) a Parquet store of ``--events`` order events, written in
4 M-event commits so that building it never holds the whole store, then runs in fresh
processes, one after the other:

- ``esnotebook rebuild``: ``ProjectionRunner(store, OrderSummaryFrame(),
  engine="streaming").rebuild()`` - OrderSummary is keyed by stream, so the runner rebuilds
  it one range of stream numbers at a time (memory: one range's events and the rows so far);
- ``bare polars streaming group-by``: the bare group-by of ``bench_rebuild.py`` over the same
  files with the streaming engine (the peer).

Each row: wall seconds, events/s and peak RSS (VmHWM) of its process.

    python benchmarks/bench_streaming.py --events 100000000 --dir /tmp/store100m

Target (2-core machine): a 100 M-event store rebuilds with the streaming engine in < 4 GB.
Measured (100 M events, 18.8 M orders, 9.9 GB on disk): esnotebook 16.1 s, 3.2 GB peak;
bare polars streaming group-by 23.3 s, 8.7 GB peak.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from bench_rebuild import order_frame, store_folder

import esnotebook as es

CHUNK = 4_000_000

_PEAK = "print('PEAK', [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
_RUNS = {
    "esnotebook rebuild": (
        "import esnotebook as es, time\n"
        "from esnotebook.readmodels import OrderSummaryFrame\n"
        "r = es.ProjectionRunner(es.ParquetEventStore({path!r}), OrderSummaryFrame(), engine='streaming')\n"
        "t = time.perf_counter(); r.rebuild(progress=False); print('SECONDS', time.perf_counter() - t)\n"
        "print('ROWS', r.state.height)\n"
    ),
    "bare polars streaming group-by": (
        "import sys, time; sys.path.insert(0, {bench!r})\n"
        "import esnotebook as es, polars as pl\n"
        "from bench_rebuild import bare_group_by\n"
        "store = es.ParquetEventStore({path!r})\n"
        "pl.Config.set_engine_affinity('streaming')\n"
        "t = time.perf_counter(); out = bare_group_by(store); print('SECONDS', time.perf_counter() - t)\n"
        "print('ROWS', out.height)\n"
    ),
}


def make_store(path: Path, n_events: int) -> es.ParquetEventStore:
    """A store of about ``n_events`` valid order events, built 4 M events at a time; each
    chunk's orders get their own ids, so streams never span chunks."""
    store = es.ParquetEventStore(path, durable=False)
    chunk = 0
    while len(store) < n_events:
        frame = order_frame(min(CHUNK, n_events - len(store)), seed=chunk)
        prefix = pl.lit(f"c{chunk}-")
        frame = frame.with_columns(
            pl.concat_str(pl.lit("order-"), prefix, pl.col("order_id")).alias("stream_id"),
            pl.concat_str(prefix, pl.col("order_id")).alias("order_id"),
        )
        store.append_frame(frame)
        chunk += 1
    return store


def run(name: str, path: Path) -> tuple[float, int, float]:
    code = _RUNS[name].format(path=str(path), bench=str(Path(__file__).parent)) + _PEAK
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    values = dict(line.split(" ", 1) for line in out.strip().splitlines() if " " in line)
    return float(values["SECONDS"]), int(values["ROWS"]), int(values["PEAK"]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--dir", default=None, help="keep the store here (reused when it exists)")
    args = ap.parse_args()
    with store_folder(args.dir, prefix="bench_streaming_") as path:
        t0 = time.perf_counter()
        store = make_store(path, args.events)
        n = len(store)
        print(f"store: {n:,} events, {len(store.files())} files, {store.size_on_disk() / 1e9:.1f} GB "
              f"(ready in {time.perf_counter() - t0:.0f} s)")  # fmt: skip
        store.close()
        print(f"\n{'row':34} {'wall s':>8} {'events/s':>12} {'rows':>12} {'peak RSS MB':>12}")
        results = {}
        for name in _RUNS:
            seconds, rows, peak = run(name, path)
            results[name] = (seconds, rows, peak)
            print(f"{name:34} {seconds:8.1f} {n / seconds:12,.0f} {rows:12,} {peak:12,.0f}")
        ours, bare = results["esnotebook rebuild"], results["bare polars streaming group-by"]
        assert ours[1] == bare[1], "the rebuild and the bare group-by found different order counts"
        print(f"\ntime ours / bare {ours[0] / bare[0]:.2f} x; peak RSS {ours[2]:,.0f} MB (target < 4096 MB at 100 M)")


if __name__ == "__main__":
    main()
