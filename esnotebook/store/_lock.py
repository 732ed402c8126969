"""The one-writer lock of a Parquet store: an ``flock`` on ``<store>/LOCK``, which holds the
writer's pid so that the error another writer gets can name it. The kernel releases the lock
when the process dies, however it dies, so a crashed writer never leaves the store locked."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

__all__ = ["WriterLock"]


class WriterLock:
    """The write lock of the store at ``folder``; :meth:`take` it, :meth:`release` it."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "LOCK"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def take(self, timeout: float) -> bool:
        """Take the lock, waiting up to ``timeout`` seconds; ``False`` if another holds it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                busy = exc.errno in (errno.EAGAIN, errno.EACCES)
                if not busy or time.monotonic() >= deadline:
                    os.close(fd)
                    if not busy:
                        raise
                    return False
                time.sleep(0.01)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid written by the process that holds (or last held) the lock."""
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
