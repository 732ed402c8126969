"""The exceptions esnotebook raises.

Everything the event store raises derives from :class:`EventStoreError`; a rejected
command raises :class:`DomainException`. Messages name what was wrong, what was
expected and what was found.
"""

from __future__ import annotations

__all__ = [
    "ConcurrencyError",
    "DomainException",
    "EventDataError",
    "EventStoreError",
    "StoreChangedError",
    "StoreCorruptedError",
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


class StoreChangedError(EventStoreError, FileNotFoundError):
    """A lazy scan was collected after a compaction replaced the files it was planned on;
    nothing is wrong with the store: call ``scan()`` again."""


class DomainException(Exception):
    """A command broke a business rule; no events were recorded.

    Subclass it to name the rule: ``class InsufficientStock(DomainException): ...``.
    """
