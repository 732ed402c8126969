"""Atomic file writes: write to a temporary name beside the target, fsync, rename.

Everything esnotebook persists beside the events (snapshots, checkpoints, projection
state, dead letters, idempotency keys) goes through here, so a crash at any instant leaves
either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["fsync_path", "write_bytes", "write_json", "write_parquet"]


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's or a folder's data and metadata to disk (a folder: its entries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")


def _publish(tmp: Path, target: Path, durable: bool) -> None:
    try:
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
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
