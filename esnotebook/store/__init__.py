"""Event stores: one protocol, an in-memory backend and a Parquet-folder backend."""

from .base import EventStore
from .memory import InMemoryEventStore
from .parquet import ParquetEventStore

__all__ = ["EventStore", "InMemoryEventStore", "ParquetEventStore"]
