"""Atomic file writes: write to a temporary name beside the target, fsync, rename.

Everything esnotebook persists beside the events (snapshots, checkpoints, projection
state, dead letters, idempotency keys) goes through here, so a crash at any instant leaves
either the old file or the new one, never a torn one.

A killed writer leaves its temporary file (``.<name>.<32 hex>.tmp``) behind. The first
write into a folder in each process removes the temporaries there that nobody has touched
for :data:`STALE_AFTER` seconds: a live writer keeps its temporary's modification time
fresh, so only the leftovers of dead writes go (a writer stalled for longer than that would
see its rename fail, and raise, rather than publish anything wrong).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["fsync_path", "tidy_temporaries", "write_bytes", "write_json", "write_parquet"]

#: Seconds without a change after which a temporary file is taken for a dead write's.
STALE_AFTER = 3600.0
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{32}\.tmp")
_tidied: set[Path] = set()


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's or a folder's data and metadata to disk (a folder: its entries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tidy_temporaries(folder: str | os.PathLike[str], *, older_than: float = STALE_AFTER) -> int:
    """Remove the temporary files of dead writes in ``folder``; return how many went.

    Only files named as this module names its temporaries and unchanged for
    ``older_than`` seconds are removed.
    """
    cutoff = time.time() - older_than
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if _TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except OSError:
                    pass  # renamed meanwhile by its writer, or not ours to remove: leave it
    return removed


def _temporary(target: Path) -> Path:
    folder = target.parent
    if folder not in _tidied:
        _tidied.add(folder)
        tidy_temporaries(folder)
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")


def _publish(tmp: Path, target: Path, durable: bool) -> None:
    try:
        if durable:
            fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_path(target.parent)


def write_bytes(target: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> None:
    """Replace ``target`` with ``data`` atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(target)
    try:
        tmp.write_bytes(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _publish(tmp, target, durable)


def write_json(target: str | os.PathLike[str], obj: Any, *, durable: bool = True) -> None:
    """Replace ``target`` with ``obj`` as JSON, atomically."""
    write_bytes(target, (json.dumps(obj, indent=1, default=str) + "\n").encode(), durable=durable)


def write_parquet(
    target: str | os.PathLike[str], frame: pl.DataFrame, *, durable: bool = True, **kwargs: Any
) -> None:
    """Replace ``target`` with ``frame`` as a Parquet file, atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(target)
    try:
        frame.write_parquet(tmp, **kwargs)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _publish(tmp, target, durable)
