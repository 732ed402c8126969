"""Publishing one file of a Parquet store, and what an error on the way means.

The sequence: write a temporary file, fsync it, give it its final name without ever
replacing a file (a hard link, or ``renameat2(RENAME_NOREPLACE)`` where hard links are not
supported), remove the temporary name, fsync the folder. Until the final name exists
nothing is stored: an error raises :class:`StoreIOError` and the temporary file is removed.
From then on the commit is visible to every reader, so an error after it raises
:class:`CommitUnconfirmedError`: committed, durability not confirmed. A final name that
already exists means another writer is at work (:class:`StoreLockedError`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl

from .._atomic import fsync_path
from ..errors import CommitUnconfirmedError, StoreIOError, StoreLockedError

__all__ = ["commit_file", "publish"]

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
#: The errors of ``link`` on a file system without hard links.
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP)
#: polars reports an I/O error of its writer inside a ComputeError's message.
_POLARS_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def commit_file(
    write: Callable[[Path], Path],
    tmp: Path,
    *,
    durable: bool,
    check: Callable[[], None],
    store: Path,
    positions: range,
) -> Path:
    """Write ``tmp`` with ``write``, which returns the final path (it may depend on the bytes
    written: a checksum), then publish it there; ``check`` runs just before. Returns the
    final path. ``store`` and ``positions`` name the commit in error messages.
    """
    what = f"positions {positions.start}..{positions.stop - 1}"
    try:
        try:
            final = write(tmp)
        except pl.exceptions.PolarsError as exc:
            found = _POLARS_OS_ERROR.search(str(exc))
            if found is None:
                raise
            code = int(found.group(1))
            raise OSError(code, os.strerror(code), str(tmp)) from exc
        if durable:
            fsync_path(tmp)
        check()
        publish(tmp, final)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            raise StoreLockedError(
                f"{final} already exists: another writer is writing to {store} (a deleted LOCK, "
                f"or a second machine on a network file system); {what} were not stored, nothing "
                "was overwritten, and this store object stopped writing. Open the store again"
            ) from exc
        if isinstance(exc, OSError):
            raise _not_stored(exc, store, what) from exc
        raise
    try:
        tmp.unlink(missing_ok=True)  # still there after a hard link
        if durable:
            fsync_path(final.parent)
    except OSError as exc:
        raise CommitUnconfirmedError(
            f"{store}: {what} ARE committed and visible, but an I/O error followed ({exc}), so "
            "their durability is not confirmed. Do not repeat the append blindly: a retry with "
            "expected_version is safe (ConcurrencyError if the events are there). This store "
            "object stopped writing: open the store again once the disk is healthy",
            errno=exc.errno, positions=positions,
        ) from exc  # fmt: skip
    return final


def _not_stored(exc: OSError, store: Path, what: str) -> StoreIOError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreIOError(
            f"{store}: the disk is full ({exc}); {what} were not stored. Free some space and "
            "append again",
            errno=exc.errno,
        )
    return StoreIOError(
        f"{store}: I/O error while writing {what} ({exc}); they were not stored, and this store "
        "object stopped writing. Open the store again once the disk is healthy and retry",
        errno=exc.errno,
    )


def publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final`` unless ``final`` exists (then :class:`FileExistsError`)."""
    try:
        os.link(tmp, final)
        return
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
    if _renameat2(bytes(tmp), bytes(final)):
        return
    # Neither hard links nor RENAME_NOREPLACE: check, then rename (the writer holds the lock).
    if os.path.lexists(final):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(final))
    os.rename(tmp, final)


def _renameat2(tmp: bytes, final: bytes) -> bool:
    """``renameat2(RENAME_NOREPLACE)``; ``False`` where the system or file system lacks it."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, tmp, _AT_FDCWD, final, _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS):
        return False
    raise OSError(code, os.strerror(code), final.decode())
