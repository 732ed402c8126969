"""esnotebook: event sourcing you can see, measure and plan for, in Jupyter.

>>> import esnotebook as es
>>> store = es.InMemoryEventStore()
"""

from __future__ import annotations

from . import datasets, examples
from .aggregates import Aggregate, PendingEvent, UnknownEventError, applies, command, rule
from .commands import (
    AggregateExistsError,
    Command,
    CommandBus,
    CommandResult,
    InMemoryIdempotency,
    Middleware,
    UnitOfWork,
)
from .errors import (
    ConcurrencyError,
    DomainException,
    EventDataError,
    EventStoreError,
    StoreCorruptedError,
    StoreLockedError,
)
from .events import CANONICAL_COLUMNS, NewEvent, RecordedEvent, new_id
from .importers import (
    ImportRefusedError,
    ImportReport,
    export_jsonl,
    import_csv,
    import_eventsourcing_postgres,
    import_eventsourcing_sqlite,
    import_jsonl,
    read_eventsourcing_postgres,
    read_eventsourcing_sqlite,
)
from .repository import AggregateNotFoundError, Repository
from .snapshots import InMemorySnapshotStore, ParquetSnapshotStore, Snapshot, SnapshotStore
from .store import EventStore, InMemoryEventStore, ParquetEventStore

__version__ = "0.1.0"

__all__ = [
    "Aggregate",
    "AggregateExistsError",
    "AggregateNotFoundError",
    "CANONICAL_COLUMNS",
    "Command",
    "CommandBus",
    "CommandResult",
    "ConcurrencyError",
    "DomainException",
    "EventDataError",
    "EventStore",
    "EventStoreError",
    "ImportRefusedError",
    "ImportReport",
    "InMemoryEventStore",
    "InMemoryIdempotency",
    "InMemorySnapshotStore",
    "Middleware",
    "NewEvent",
    "ParquetEventStore",
    "ParquetSnapshotStore",
    "PendingEvent",
    "RecordedEvent",
    "Repository",
    "Snapshot",
    "SnapshotStore",
    "StoreCorruptedError",
    "StoreLockedError",
    "UnitOfWork",
    "UnknownEventError",
    "__version__",
    "applies",
    "command",
    "datasets",
    "examples",
    "export_jsonl",
    "import_csv",
    "import_eventsourcing_postgres",
    "import_eventsourcing_sqlite",
    "import_jsonl",
    "new_id",
    "read_eventsourcing_postgres",
    "read_eventsourcing_sqlite",
    "rule",
]
