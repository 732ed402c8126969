"""Where a saga runner keeps its checkpoint, instances and history between runs.

On a Parquet store: ``<store.path>/sagas/<name>/``. The instances are one Parquet file
rewritten per commit, the history grows by one Parquet segment per commit, and a small
``manifest.json`` naming the current files and the checkpoint is replaced atomically last,
so a crash leaves the previous commit or the new one. Files the manifest does not name are
leftovers of a crash and are removed on load.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from .. import _atomic
from ..errors import StoreCorruptedError

MANIFEST = "manifest.json"
#: Merge the history segments into one when there are more than this many.
MERGE_AFTER = 64

INSTANCE_SCHEMA: dict[str, pl.DataType] = {
    "instance_id": pl.String(),
    "status": pl.String(),
    "step": pl.Int64(),
    "done": pl.String(),
    "undo": pl.Int64(),
    "state": pl.String(),
    "failure": pl.String(),
    "correlation_id": pl.String(),
    "cause_id": pl.String(),
    "started_at": pl.Float64(),
    "ended_at": pl.Float64(),
    "waiting_since": pl.Float64(),
    "dead": pl.String(),
}

HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "instance_id": pl.String(),
    "phase": pl.String(),
    "step": pl.String(),
    "command_type": pl.String(),
    "idempotency_key": pl.String(),
    "attempt": pl.Int64(),
    "outcome": pl.String(),
    "at": pl.Float64(),
    "error": pl.String(),
}


class SagaFolder:
    """The on-disk home of one saga's runner state."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"saga state needs a folder; {self.path} is a file")
        self.path.mkdir(parents=True, exist_ok=True)
        self._history: list[str] = []

    def load(self) -> tuple[dict[str, Any], pl.DataFrame, pl.DataFrame] | None:
        """``(manifest, instances, history)`` of the last commit, or ``None``."""
        file = self.path / MANIFEST
        if not file.exists():
            return None
        try:
            manifest = json.loads(file.read_text())
            instances = pl.read_parquet(self.path / manifest["instances"])
            parts = [pl.read_parquet(self.path / name) for name in manifest["history"]]
        except (OSError, ValueError, KeyError, pl.exceptions.PolarsError) as exc:
            raise StoreCorruptedError(f"{self.path}: unreadable saga state ({exc})") from None
        self._history = list(manifest["history"])
        self._tidy(manifest)
        history = pl.concat(parts) if parts else pl.DataFrame(schema=HISTORY_SCHEMA)
        return manifest, instances, history

    def commit(self, *, checkpoint: int, clock: float, instances: pl.DataFrame, history: pl.DataFrame) -> None:
        """Write the instances and the new history rows, then swap the manifest in."""
        tag = f"{checkpoint:012d}-{uuid.uuid4().hex[:12]}"
        names = list(self._history)
        if history.height:
            name = f"history-{tag}.parquet"
            _atomic.write_parquet(self.path / name, history)
            names.append(name)
        if len(names) > MERGE_AFTER:
            merged = pl.concat([pl.read_parquet(self.path / n) for n in names])
            name = f"history-{tag}-all.parquet"
            _atomic.write_parquet(self.path / name, merged)
            names = [name]
        inst_name = f"instances-{tag}.parquet"
        _atomic.write_parquet(self.path / inst_name, instances)
        manifest = {
            "checkpoint": checkpoint,
            "clock": clock,
            "instances": inst_name,
            "history": names,
            "committed_at": datetime.now(UTC).isoformat(),
        }
        _atomic.write_json(self.path / MANIFEST, manifest)
        self._history = names
        self._tidy(manifest)

    def _tidy(self, manifest: dict[str, Any]) -> None:
        keep = {manifest.get("instances"), *manifest.get("history", ())}
        for entry in os.scandir(self.path):
            if entry.name.endswith(".parquet") and entry.name not in keep and entry.is_file():
                Path(entry.path).unlink(missing_ok=True)
