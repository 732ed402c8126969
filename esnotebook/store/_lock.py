"""The one-writer lock of a Parquet store: an ``flock`` on ``<store>/LOCK``, which holds the
writer's pid so that the error another writer gets can name it. The kernel releases the lock
when the process dies, however it dies, so a crashed writer never leaves the store locked.

Two holes of a bare ``flock`` are closed here. A child forked by the writer shares the
lock's open file description, so the lock would outlive the writer: the child closes its
copy at once (without unlocking, which would free the writer's lock too). And ``flock``
locks an inode, not a path: if ``LOCK`` is deleted or the store folder re-created, a second
writer gets a lock of its own; :meth:`WriterLock.check` notices and stops the first one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
import weakref
from pathlib import Path

from ..errors import StoreLockedError

__all__ = ["WriterLock"]

#: Locks held in this process, released in a forked child without unlocking.
_HELD: weakref.WeakSet[WriterLock] = weakref.WeakSet()


class WriterLock:
    """The write lock of the store at ``folder``; :meth:`take` it, :meth:`release` it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "LOCK"
        self._folder_id = _identity(folder)
        self._fd: int | None = None
        self._lock_id: tuple[int, int] | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def take(self, timeout: float) -> bool:
        """Take the lock, waiting up to ``timeout`` seconds; ``False`` if another holds it."""
        if self._fd is not None:
            return True
        self._check_folder()
        deadline = time.monotonic() + timeout
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
                continue
            locked = _identity(fd)
            if locked == _identity(self.path):
                break
            os.close(fd)  # LOCK was replaced between our open and flock: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd, self._lock_id = fd, locked
        _HELD.add(self)
        return True

    def check(self) -> None:
        """Raise :class:`StoreLockedError` if the folder or ``LOCK`` is no longer the one locked."""
        self._check_folder()
        if self._fd is not None and _identity(self.path) != self._lock_id:
            raise StoreLockedError(
                f"{self.path} was deleted or replaced while this store object held the lock on it, "
                "so another writer may be writing now; this store object stopped writing and wrote "
                "nothing. Open the store again to write. (LOCK is not a stale pid file: the kernel "
                "frees it when its writer exits; do not delete it)"
            )

    def _check_folder(self) -> None:
        if _identity(self.folder) != self._folder_id:
            raise StoreLockedError(
                f"{self.folder} was deleted or re-created after this store object opened it; this "
                "store object stopped writing and wrote nothing. Open the store again to write"
            )

    def holder(self) -> str:
        """Who holds the lock: the pid the holder wrote, and whether it still runs."""
        try:
            pid = int(self.path.read_text())
        except (OSError, ValueError):
            return "pid unknown"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return (
                f"pid {pid}, which has exited: a process it started without exec (a raw fork) "
                "still holds the lock; stop that process"
            )
        except PermissionError:
            pass  # alive, another user's
        return f"pid {pid}"

    def release(self) -> None:
        fd, self._fd = self._fd, None
        _HELD.discard(self)
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _forget(self) -> None:
        """In a forked child: drop our copy of the lock's descriptor, leaving the parent's lock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _identity(where: Path | int) -> tuple[int, int] | None:
    """(device, inode) of a path or an open descriptor; ``None`` if the path is gone."""
    try:
        st = os.fstat(where) if isinstance(where, int) else os.stat(where)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _forget_all_in_child() -> None:
    for lock in list(_HELD):
        lock._forget()
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_all_in_child)
