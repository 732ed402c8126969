"""The exceptions esnotebook raises.

Everything the event store raises derives from :class:`EventStoreError`; a rejected
command raises :class:`DomainException`. Messages name what was wrong, what was
expected and what was found.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "CommitUnconfirmedError",
    "ConcurrencyError",
    "DomainException",
    "EventDataError",
    "EventStoreError",
    "StoreChangedError",
    "StoreCorruptedError",
    "StoreIOError",
    "StoreLockedError",
]


class EventStoreError(Exception):
    """Base class of every error raised by an event store."""


class ConcurrencyError(EventStoreError):
    """A stream was not at the version the caller expected; nothing was written."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        if expected == 0:
            wanted = "no stream yet (expected_version=0)"
        else:
            wanted = f"version {expected}"
        super().__init__(
            f"stream {stream_id!r}: expected {wanted}, but the stream is at version {actual}; "
            "nothing was written"
        )


class EventDataError(EventStoreError, ValueError):
    """An event or frame could not be stored as given (bad payload, bad field type, bad frame)."""


class StoreLockedError(EventStoreError):
    """Another writer holds the store's lock."""


class StoreCorruptedError(EventStoreError):
    """A file of the store is damaged or does not belong there."""


class StoreIOError(EventStoreError, OSError):
    """An I/O error (disk full, EIO) stopped a write: nothing of it was stored, a retry is safe.

    ``errno`` is the operating system's error number. After a full disk (``disk_full``) the
    store object keeps working once there is space again; after any other I/O error it
    refuses to write until the store is opened again.
    """

    def __init__(self, message: str, *, errno: int | None) -> None:
        super().__init__(message)
        self.errno = errno

    @property
    def disk_full(self) -> bool:
        return self.errno in (_errno.ENOSPC, _errno.EDQUOT)


class CommitUnconfirmedError(EventStoreError):
    """A commit IS stored and visible, but an I/O error after it leaves its durability unconfirmed.

    The events at ``positions`` are committed: do not repeat the append blindly (a retry
    with ``expected_version`` is safe: it raises :class:`ConcurrencyError` when the events
    are there). The store object refuses to write until the store is opened again.
    """

    def __init__(self, message: str, *, errno: int | None, positions: range) -> None:
        super().__init__(message)
        self.errno = errno
        self.positions = positions


class StoreChangedError(EventStoreError, FileNotFoundError):
    """A lazy scan was collected after a compaction replaced the files it was planned on;
    nothing is wrong with the store: call ``scan()`` again."""


class DomainException(Exception):
    """A command broke a business rule; no events were recorded.

    Subclass it to name the rule: ``class InsufficientStock(DomainException): ...``.
    """
