"""Where a projection runner keeps its state, checkpoint and dead letters - together.

A target commits the three as one unit, so a crash between two batches leaves either the
old unit or the new one: the runner restarts from a checkpoint that matches its state and
neither skips nor re-applies an event.

- :class:`MemoryTarget`: in this process (lost when it ends); pass the same object to a new
  runner to continue where the last one stopped.
- :class:`ParquetTarget`: a folder, by default ``<store>/projections/<name>/`` of a Parquet
  store. The state and the dead letters are Parquet files with unique names; a small
  ``manifest.json`` names the current ones and the checkpoint, and is replaced atomically
  last. Readers never change the folder; the next commit removes the files its manifest
  does not name (superseded, or leftovers of a crash).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from . import _atomic
from .errors import StoreCorruptedError, StoreLockedError
from .store._lock import WriterLock

__all__ = ["Committed", "MemoryTarget", "ParquetTarget"]

MANIFEST = "manifest.json"
_UNREAD = object()  # a target object that has not loaded: its first commit checks nothing


def _checkpoint(manifest: dict[str, Any] | None) -> int:
    return 0 if manifest is None else int(manifest["checkpoint"])


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

    Reading never changes the folder, so any number of processes (a dashboard, a notebook)
    may :meth:`load` while a runner commits: :meth:`load` reads the manifest, then the files
    it names, and if a newer commit replaced them meanwhile, reads the newer one; it always
    returns a whole committed unit. Its ``state`` is the full state, hidden columns
    included; ``ProjectionRunner(store, P, target="parquet", read_only=True)`` gives the
    projection's view and lag. Reading :attr:`state_file` directly races the writer (the
    next commit removes that file).

    One runner commits at a time: each commit holds ``<folder>/LOCK``, and refuses with
    :class:`~esnotebook.StoreLockedError` when another runner holds it or has committed
    since this object last loaded or committed (a second writer, e.g. a forgotten runner in
    another notebook); nothing is written then. Only a commit removes files: the superseded
    state and the leftovers of crashed commits, known to be garbage because it holds the
    lock and has just swapped its own manifest in (a file newer than that manifest stays).

    Parameters
    ----------
    path
        The folder (created by the first commit).

    Examples
    --------
    Another process reads the current state with ``ParquetTarget(path).load().state``:

    >>> import tempfile
    >>> from datetime import datetime, timezone
    >>> t = ParquetTarget(tempfile.mkdtemp())
    >>> t.load() is None
    True
    >>> t.commit(Committed(pl.DataFrame({"n": [3]}), 3, None, datetime.now(timezone.utc)))
    >>> unit = ParquetTarget(t.path).load()
    >>> unit.checkpoint, unit.state["n"].to_list()
    (3, [3])
    """

    persistent = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"ParquetTarget needs a folder; {self.path} is a file")
        self._dlq_file: str | None = None
        self._dlq_frame: pl.DataFrame | None = None
        # The manifest this object last loaded, and the one it last tried to swap in: a
        # commit finding any other one refuses (another runner committed meanwhile).
        self._seen: Any = _UNREAD
        self._tried: Any = _UNREAD

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The current manifest, or ``None`` before the first commit."""
        file = self.path / MANIFEST
        try:
            return json.loads(file.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise StoreCorruptedError(f"{file}: unreadable projection manifest ({exc})") from None

    @property
    def state_file(self) -> Path | None:
        """The Parquet file holding the committed state (``None`` before the first commit).

        The next commit removes it: read the state through :meth:`load` instead."""
        m = self.manifest
        return None if m is None else self.path / m["state"]

    def load(self) -> Committed | None:
        """The last committed unit (``None`` before the first commit); changes nothing."""
        m = self.manifest
        while m is not None:
            try:
                state, dlq = self._read(m)
                break
            except FileNotFoundError as exc:
                newer = self.manifest
                if newer == m:
                    raise StoreCorruptedError(
                        f"{self.path}: the manifest names a file that is missing ({exc})"
                    ) from None
                m = newer  # a commit replaced the files after we read the manifest
        self._seen = self._tried = m
        if m is None:
            return None
        self._dlq_file, self._dlq_frame = m.get("dead_letters"), dlq
        at = datetime.fromisoformat(m["committed_at"])
        return Committed(state, int(m["checkpoint"]), dlq, at)

    def _read(self, m: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """The state and dead letters ``m`` names; FileNotFoundError if one is gone."""
        try:
            state = pl.read_parquet(self.path / m["state"])
            dlq = pl.read_parquet(self.path / m["dead_letters"]) if m.get("dead_letters") else None
        except FileNotFoundError:
            raise
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise StoreCorruptedError(
                f"{self.path}: the manifest names a file that cannot be read ({exc})"
            ) from None
        return state, dlq

    def commit(self, unit: Committed, *, durable: bool = True) -> None:
        """Write the state (and dead letters if changed), then swap the manifest in.

        Raises :class:`~esnotebook.StoreLockedError`, writing nothing, if another runner is
        committing or has committed since this object last loaded or committed."""
        if not isinstance(unit.state, pl.DataFrame):
            raise TypeError(f"ParquetTarget commits a polars DataFrame (got {type(unit.state).__name__})")
        with self._locked():
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
            self._tried = manifest
            _atomic.write_json(self.path / MANIFEST, manifest, durable=durable)
            self._seen = manifest
            self._dlq_file, self._dlq_frame = dlq_name, dlq
            self._tidy(manifest)

    def clear(self) -> None:
        """Forget everything committed (the next load finds nothing)."""
        with self._locked():
            self._tried = None
            (self.path / MANIFEST).unlink(missing_ok=True)
            self._seen = None
            self._dlq_file = self._dlq_frame = None
            self._tidy({})

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the folder's lock, after checking that no other runner committed since."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(self.path)
        if not lock.take(0):
            raise StoreLockedError(
                f"{self.path}: another runner ({lock.holder()}) is committing to this "
                "projection; only one runner may commit to a target. Stop that runner, or "
                "read the target with ProjectionRunner(..., read_only=True)"
            )
        try:
            found = self.manifest
            if self._seen is not _UNREAD and found not in (self._seen, self._tried):
                raise StoreLockedError(
                    f"{self.path}: another runner committed to this projection since this one "
                    f"last loaded or committed it (then at checkpoint {_checkpoint(self._seen)}, "
                    f"now {_checkpoint(found)}); nothing was written. Only one runner may "
                    "commit to a target: stop the other one, then open a new runner to resume"
                )
            yield
        finally:
            lock.release()

    def _tidy(self, manifest: dict[str, Any]) -> None:
        """Remove what ``manifest`` (just swapped in, under the lock) does not name: the
        superseded files and the leftovers of crashed commits, never a live writer's."""
        keep = {manifest.get("state"), manifest.get("dead_letters")}
        # A file newer than the manifest stays: only a writer that got past the lock (its
        # LOCK deleted under it) can have made it, and it may be about to name it.
        newest = (self.path / MANIFEST).stat().st_mtime_ns if manifest else None
        for entry in os.scandir(self.path):
            if entry.name in keep or not entry.name.endswith((".parquet", ".tmp")):
                continue
            if entry.is_file() and (newest is None or entry.stat().st_mtime_ns <= newest):
                Path(entry.path).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"ParquetTarget({str(self.path)!r})"
