"""Processes for the projection target's multi-process tests, started from a ``multiprocessing``
forkserver through :func:`run` (modules imported once, so a process starts in milliseconds).

- ``write``: steps a ``ProjectionRunner(store, Count(), target="parquet")`` with random batch
  sizes, and rebuilds in place whenever it is caught up (so it commits all along); after
  each commit it checks that the file its manifest names exists. It stops when refused
  (another writer committed).
- ``load``: reads the target with ``ParquetTarget(path).load()`` in a loop (the documented
  recipe).
- ``runner``: reads it with ``ProjectionRunner(..., read_only=True)``, opened anew or
  refreshed, in a loop (a dashboard).

Every event is a ``Tick`` and :class:`Count` counts them per stream, so any committed state
has ``sum(n) == checkpoint``: a read that breaks this saw something never committed. Each
process writes its counts as JSON to ``out`` when it stops.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from esnotebook.errors import StoreLockedError
from esnotebook.projections import Projection
from esnotebook.runner import ProjectionRunner
from esnotebook.runner_targets import ParquetTarget
from esnotebook.store import ParquetEventStore


class Count(Projection):
    """Events per stream."""

    schema = {"stream_id": pl.String(), "n": pl.Int64()}

    def on_Tick(self, row, event):
        return {"stream_id": event.stream_id, "n": (row["n"] if row else 0) + 1}


def folder(store: str) -> Path:
    return Path(store) / "projections" / Count.name


def consistent(state: pl.DataFrame, checkpoint: int) -> bool:
    return (state["n"].sum() if state.height else 0) == checkpoint


def write(store: ParquetEventStore, ready: Any, *, seed: int, commits: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    runner = ProjectionRunner(store, Count(), target="parquet")
    target, commit = runner.target, runner.target.commit
    counts = {"commits": 0, "missing": 0}

    def checked(unit: Any) -> None:
        commit(unit)
        counts["commits"] += 1
        counts["missing"] += not target.state_file.exists()

    target.commit = checked
    ready.set()
    try:
        while counts["commits"] < commits:
            if runner.lag:
                runner.step(int(rng.integers(1, 40)))
            else:
                runner.rebuild(chunk_size=int(rng.integers(20, 200)))
    except StoreLockedError as exc:  # another writer: this one stops, as it should
        counts["refused"] = str(exc)
    return counts


def read(store: ParquetEventStore, mode: str, ready: Any, *, stop: str) -> dict[str, Any]:
    reads, failures, wrong = 0, [], 0
    runner = None
    ready.set()
    while not os.path.exists(stop):
        try:
            if mode == "load":
                unit = ParquetTarget(folder(store.path)).load()
                state, checkpoint = (unit.state, unit.checkpoint) if unit else (pl.DataFrame(), 0)
            else:
                if runner is None or reads % 2:
                    runner = ProjectionRunner(store, Count(), target="parquet", read_only=True)
                else:
                    runner.refresh()
                state, checkpoint = runner.full_state, runner.checkpoint
        except Exception as exc:  # noqa: BLE001 - every failed read is counted and shown
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        finally:
            reads += 1
        wrong += not consistent(state, checkpoint)
        time.sleep(0.002)  # leave the writer some of the two cores: commits make the races
    return {"reads": reads, "failures": len(failures), "first": failures[:1], "wrong": wrong}


def run(mode: str, store: str, ready: Any, out: str, **kwargs: Any) -> None:
    """Entry point for a ``multiprocessing`` child: ``ready`` is an Event set once started;
    ``write`` takes ``seed`` and ``commits`` (it stops after that many), the readers take
    ``stop`` (they stop once that file exists)."""
    opened = ParquetEventStore(store)
    result = write(opened, ready, **kwargs) if mode == "write" else read(opened, mode, ready, **kwargs)
    Path(out).write_text(json.dumps(result))
