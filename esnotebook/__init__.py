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
from .events import CANONICAL_COLUMNS, NewEvent, RecordedEvent, new_id
from .store import EventStore, InMemoryEventStore, ParquetEventStore

__version__ = "0.1.0"

__all__ = [
    "CANONICAL_COLUMNS",
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
    "new_id",
]
