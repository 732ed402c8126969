"""esnotebook: event sourcing you can see, measure and plan for, in Jupyter.

>>> import esnotebook as es
>>> store = es.InMemoryEventStore()
"""

from __future__ import annotations

from .errors import (
    ConcurrencyError,
    DomainException,
    EventDataError,
    EventStoreError,
    StoreCorruptedError,
    StoreLockedError,
)
from .events import NewEvent, RecordedEvent
from .store import EventStore, InMemoryEventStore, ParquetEventStore

__version__ = "0.1.0"

__all__ = [
    "ConcurrencyError",
    "DomainException",
    "EventDataError",
    "EventStore",
    "EventStoreError",
    "InMemoryEventStore",
    "NewEvent",
    "ParquetEventStore",
    "RecordedEvent",
    "StoreCorruptedError",
    "StoreLockedError",
    "__version__",
]
