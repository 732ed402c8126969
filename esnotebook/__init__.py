"""esnotebook: event sourcing you can see, measure and plan for, in Jupyter.

>>> import esnotebook as es
>>> store = es.InMemoryEventStore()
"""

from __future__ import annotations

from . import datasets, examples, live, plot, sim, widgets
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
from .deadletter import DeadLetterQueue
from .errors import (
    CommitUnconfirmedError,
    ConcurrencyError,
    DomainException,
    EventDataError,
    EventStoreError,
    StoreChangedError,
    StoreCorruptedError,
    StoreIOError,
    StoreLockedError,
)
from .events import CANONICAL_COLUMNS, NewEvent, RecordedEvent, new_id
from .faults import (
    CommandTimeout,
    Fault,
    FaultInjector,
    FaultKind,
    FaultPlan,
    PermanentFault,
    TransientFault,
)
from .idempotency import DurableIdempotency, KeyRecord, duplicate_side_effects
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
from .monitoring import LagStatus, lag_status
from .projections import EventRow, Projection, ProjectionError, VectorisedProjection
from .readmodels import CustomerValue, OrderSummary, OrderSummaryFrame, RevenueByDaySku
from .repository import AggregateNotFoundError, Repository
from .runner import ProjectionRunner
from .runner_targets import MemoryTarget, ParquetTarget
from .sagas import Retry, Saga, SagaInstance, SagaRunner, SimulatedClock, Step, WallClock
from .snapshots import InMemorySnapshotStore, ParquetSnapshotStore, Snapshot, SnapshotStore
from .store import EventStore, InMemoryEventStore, ParquetEventStore
from .tracing import Trace, trace

__version__ = "0.1.0"

__all__ = [
    "Aggregate",
    "AggregateExistsError",
    "AggregateNotFoundError",
    "CANONICAL_COLUMNS",
    "Command",
    "CommandBus",
    "CommandResult",
    "CommandTimeout",
    "CommitUnconfirmedError",
    "ConcurrencyError",
    "CustomerValue",
    "DeadLetterQueue",
    "DomainException",
    "DurableIdempotency",
    "EventDataError",
    "EventRow",
    "EventStore",
    "EventStoreError",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "FaultPlan",
    "ImportRefusedError",
    "ImportReport",
    "InMemoryEventStore",
    "InMemoryIdempotency",
    "InMemorySnapshotStore",
    "KeyRecord",
    "LagStatus",
    "MemoryTarget",
    "Middleware",
    "NewEvent",
    "OrderSummary",
    "OrderSummaryFrame",
    "ParquetEventStore",
    "ParquetSnapshotStore",
    "ParquetTarget",
    "PendingEvent",
    "PermanentFault",
    "Projection",
    "ProjectionError",
    "ProjectionRunner",
    "RecordedEvent",
    "Repository",
    "Retry",
    "RevenueByDaySku",
    "Saga",
    "SagaInstance",
    "SagaRunner",
    "SimulatedClock",
    "Snapshot",
    "SnapshotStore",
    "Step",
    "StoreChangedError",
    "StoreCorruptedError",
    "StoreIOError",
    "StoreLockedError",
    "Trace",
    "TransientFault",
    "UnitOfWork",
    "UnknownEventError",
    "VectorisedProjection",
    "WallClock",
    "__version__",
    "applies",
    "command",
    "datasets",
    "duplicate_side_effects",
    "examples",
    "export_jsonl",
    "import_csv",
    "import_eventsourcing_postgres",
    "import_eventsourcing_sqlite",
    "import_jsonl",
    "lag_status",
    "live",
    "new_id",
    "plot",
    "read_eventsourcing_postgres",
    "read_eventsourcing_sqlite",
    "rule",
    "sim",
    "trace",
    "widgets",
]
