"""Where a projection runner keeps its state, checkpoint and dead letters - together.

A target commits the three as one unit, so a crash between two batches leaves either the
old unit or the new one: the runner restarts from a checkpoint that matches its state and
neither skips nor re-applies an event.

- :class:`MemoryTarget`: in this process (lost when it ends); pass the same object to a new
  runner to continue where the last one stopped.
- :class:`ParquetTarget`: a folder, by default ``<store>/projections/<name>/`` of a Parquet
  store. The state and the dead letters are Parquet files with unique names; a small
  ``manifest.json`` names the current ones and the checkpoint, and is replaced atomically
  last. Files the manifest does not name are leftovers of a crash and are removed.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from . import _atomic
from .errors import StoreCorruptedError

__all__ = ["Committed", "MemoryTarget", "ParquetTarget"]

MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class Committed:
    """One committed unit: the state (a frame, or a handler form's dict of rows), the
    checkpoint (last position applied), the dead letters and when it was committed."""

    state: Any
    checkpoint: int
    dead_letters: pl.DataFrame | None
    committed_at: datetime


class MemoryTarget:
    """Keeps the last committed unit in memory.

    Examples
    --------
    >>> t = MemoryTarget()
    >>> t.load() is None
    True
    """

    persistent = False

    def __init__(self) -> None:
        self._unit: Committed | None = None

    def load(self) -> Committed | None:
        return self._unit

    def commit(self, unit: Committed) -> None:
        self._unit = unit  # one reference swap: readers see the old unit or the new one

    def clear(self) -> None:
        self._unit = None

    def __repr__(self) -> str:
        return "MemoryTarget()"


class ParquetTarget:
    """Keeps the committed unit in a folder of Parquet files and a manifest.

    Parameters
    ----------
    path
        The folder (created when missing). Other tools read the state with e.g.
        ``pl.read_parquet(ParquetTarget(path).state_file)``.

    Examples
    --------
    >>> import tempfile
    >>> t = ParquetTarget(tempfile.mkdtemp())
    >>> t.load() is None
    True
    """

    persistent = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"ParquetTarget needs a folder; {self.path} is a file")
        self.path.mkdir(parents=True, exist_ok=True)
        self._dlq_file: str | None = None
        self._dlq_frame: pl.DataFrame | None = None

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The current manifest, or ``None`` before the first commit."""
        file = self.path / MANIFEST
        if not file.exists():
            return None
        try:
            return json.loads(file.read_text())
        except ValueError as exc:
            raise StoreCorruptedError(f"{file}: unreadable projection manifest ({exc})") from None

    @property
    def state_file(self) -> Path | None:
        """The Parquet file holding the committed state (``None`` before the first commit)."""
        m = self.manifest
        return None if m is None else self.path / m["state"]

    def load(self) -> Committed | None:
        m = self.manifest
        if m is None:
            return None
        try:
            state = pl.read_parquet(self.path / m["state"])
            dlq = pl.read_parquet(self.path / m["dead_letters"]) if m.get("dead_letters") else None
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise StoreCorruptedError(
                f"{self.path}: the manifest names a file that cannot be read ({exc})"
            ) from None
        self._dlq_file, self._dlq_frame = m.get("dead_letters"), dlq
        self._tidy(m)
        at = datetime.fromisoformat(m["committed_at"])
        return Committed(state, int(m["checkpoint"]), dlq, at)

    def commit(self, unit: Committed, *, durable: bool = True) -> None:
        """Write the state (and dead letters if changed), then swap the manifest in."""
        if not isinstance(unit.state, pl.DataFrame):
            raise TypeError(f"ParquetTarget commits a polars DataFrame (got {type(unit.state).__name__})")
        tag = f"{unit.checkpoint:012d}-{uuid.uuid4().hex[:12]}"
        state_name = f"state-{tag}.parquet"
        _atomic.write_parquet(self.path / state_name, unit.state, durable=durable, compression="lz4")
        dlq_name = self._dlq_file
        dlq = unit.dead_letters
        if dlq is None or dlq.height == 0:
            dlq_name = None
        elif self._dlq_frame is None or dlq_name is None or not dlq.equals(self._dlq_frame):
            dlq_name = f"dead-letters-{tag}.parquet"
            _atomic.write_parquet(self.path / dlq_name, dlq, durable=durable)
        manifest = {
            "checkpoint": unit.checkpoint,
            "state": state_name,
            "dead_letters": dlq_name,
            "rows": unit.state.height,
            "committed_at": unit.committed_at.astimezone(timezone.utc).isoformat(),
        }
        _atomic.write_json(self.path / MANIFEST, manifest, durable=durable)
        self._dlq_file, self._dlq_frame = dlq_name, dlq
        self._tidy(manifest)

    def clear(self) -> None:
        """Forget everything committed (the next load finds nothing)."""
        (self.path / MANIFEST).unlink(missing_ok=True)
        self._dlq_file = self._dlq_frame = None
        self._tidy({})

    def _tidy(self, manifest: dict[str, Any]) -> None:
        keep = {manifest.get("state"), manifest.get("dead_letters"), MANIFEST}
        for entry in os.scandir(self.path):
            if entry.name not in keep and entry.name.endswith(".parquet") and entry.is_file():
                Path(entry.path).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"ParquetTarget({str(self.path)!r})"
