"""Commands and the command bus: the way requests reach aggregates.

A command is a small frozen dataclass naming an intention (``AddItem(order_id, sku, ...)``).
The :class:`CommandBus` routes it to the one handler registered for its type; the handler
loads aggregates through a :class:`UnitOfWork`, calls a command method, and returns. The bus
then saves the changed aggregate, stamping every new event with the command's
``correlation_id`` and ``causation_id = command.command_id``. When another writer got to the
stream first (:class:`~esnotebook.ConcurrencyError`), the bus reloads and runs the handler
again, a bounded number of times.

Cross-cutting behaviour (idempotency keys, fault injection, logging) plugs in as
*middleware*: a callable ``(command, next) -> CommandResult`` wrapped around the handling.

>>> import esnotebook as es
>>> from dataclasses import dataclass
>>> from esnotebook.commands import Command, CommandBus
>>> from esnotebook.examples import Order
>>> @dataclass(frozen=True, slots=True)
... class Place(Command):
...     order_id: str
...     customer: str
>>> bus = CommandBus(es.InMemoryEventStore())
>>> @bus.handles(Place)
... def place(cmd, uow):
...     uow.new(Order, cmd.order_id).place(cmd.customer)
>>> result = bus.dispatch(Place("o-1", "c-9"))
>>> result.status, [e.event_type for e in result.events]
('ok', ['OrderPlaced'])
>>> result.events[0].causation_id == result.command.command_id
True
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import polars as pl

from .aggregates import Aggregate
from .errors import ConcurrencyError, DomainException
from .events import RecordedEvent, new_id
from .repository import AggregateNotFoundError, Repository  # noqa: F401 - importable from here as before

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "AggregateExistsError",
    "Command",
    "CommandBus",
    "CommandResult",
    "InMemoryIdempotency",
    "Middleware",
    "UnitOfWork",
]

C = TypeVar("C", bound="Command")
A = TypeVar("A", bound=Aggregate)


class AggregateExistsError(DomainException):
    """A command tried to create an aggregate that already exists."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Base class of commands: subclass it as a frozen dataclass with the command's fields.

    Parameters
    ----------
    command_id
        Unique id of this command (a new UUID by default). Events it produces carry it as
        their ``causation_id``.
    correlation_id
        The causal chain this command belongs to (default: its own id, a new chain).
        Use :meth:`caused_by` to continue the chain of an event or command.
    causation_id
        The id of the event or command that caused this one, if any.
    idempotency_key
        Commands with the same key are one logical request: with an idempotency
        middleware, only the first is carried out.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True, slots=True)
    ... class ShipOrder(Command):
    ...     order_id: str
    >>> first = ShipOrder("o-1")
    >>> follow = ShipOrder("o-2").caused_by(first)
    >>> follow.correlation_id == first.correlation_id, follow.causation_id == first.command_id
    (True, True)
    """

    command_id: str = field(default_factory=new_id)
    correlation_id: str | None = None
    causation_id: str | None = None
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        # Unrolled: every command a saga sends is built here, so this runs very often.
        command_id, correlation_id = self.command_id, self.correlation_id
        causation_id, key = self.causation_id, self.idempotency_key
        if not (isinstance(command_id, str) and command_id):
            _bad_id(self, "command_id", command_id)
        if correlation_id is not None and not (isinstance(correlation_id, str) and correlation_id):
            _bad_id(self, "correlation_id", correlation_id)
        if causation_id is not None and not (isinstance(causation_id, str) and causation_id):
            _bad_id(self, "causation_id", causation_id)
        if key is not None and not (isinstance(key, str) and key):
            _bad_id(self, "idempotency_key", key)
        if correlation_id is None:
            object.__setattr__(self, "correlation_id", command_id)

    def caused_by(self: C, cause: RecordedEvent | Command) -> C:
        """This command as a consequence of ``cause`` (an event or a command).

        It joins the cause's correlation chain, and its ``causation_id`` is the cause's id.
        """
        if isinstance(cause, Command):
            cause_id = cause.command_id
        elif isinstance(cause, RecordedEvent):
            cause_id = cause.event_id
        else:
            raise TypeError(
                f"caused_by needs a RecordedEvent or a Command (got {type(cause).__name__})"
            )
        return dataclasses.replace(self, correlation_id=cause.correlation_id, causation_id=cause_id)

    @property
    def command_type(self) -> str:
        """The command's class name, e.g. ``"AddItem"``."""
        return type(self).__name__


def _bad_id(command: Command, name: str, value: object) -> None:
    raise TypeError(f"{type(command).__name__}: {name!r} must be a non-empty str or None (got {value!r})")


Status = Literal["ok", "rejected", "duplicate"]


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What happened to a dispatched command.

    Attributes
    ----------
    command
        The command as dispatched.
    status
        ``"ok"`` (handled; its events are stored), ``"rejected"`` (a business rule said
        no; nothing stored) or ``"duplicate"`` (its idempotency key was seen before; this
        is the first command's result, and nothing new was stored).
    events
        The events the command stored (for a duplicate: those the first one stored).
    attempts
        How many times the handler ran (more than 1 after concurrency conflicts).
    error
        The :class:`~esnotebook.DomainException` of a rejected command.
    value
        What the handler returned.
    """

    command: Command
    status: Status
    events: tuple[RecordedEvent, ...] = ()
    attempts: int = 1
    error: DomainException | None = None
    value: Any = None

    @property
    def ok(self) -> bool:
        """Whether the command was carried out (now, or the first time for a duplicate)."""
        return self.status != "rejected" and self.error is None

    def to_polars(self) -> pl.DataFrame:
        """The stored events, one row each."""
        return pl.DataFrame(
            {
                "position": [e.position for e in self.events],
                "stream_id": [e.stream_id for e in self.events],
                "version": [e.version for e in self.events],
                "event_type": [e.event_type for e in self.events],
                "correlation_id": [e.correlation_id for e in self.events],
                "causation_id": [e.causation_id for e in self.events],
            },
            schema={"position": pl.Int64, "stream_id": pl.String, "version": pl.Int64,
                    "event_type": pl.String, "correlation_id": pl.String, "causation_id": pl.String},
        )  # fmt: skip

    def to_pandas(self) -> pd.DataFrame:
        """:meth:`to_polars` as pandas."""
        return self.to_polars().to_pandas()

    def _repr_html_(self) -> str:
        lines = [
            f"<b>{html.escape(self.command.command_type)}</b>: {html.escape(self.status)}"
            f" after {self.attempts} attempt(s)"
        ]
        if self.error is not None:
            lines.append(f"<br>rejected: {html.escape(str(self.error))}")
        for e in self.events[:20]:
            lines.append(
                f"<br>{e.position}: {html.escape(e.stream_id)} v{e.version} {html.escape(e.event_type)}"
            )
        if len(self.events) > 20:
            lines.append(f"<br>... {len(self.events) - 20} more")
        return "".join(lines)


Handler = Callable[[Any, "UnitOfWork"], Any]
Next = Callable[[Command], CommandResult]
#: ``middleware(command, next)`` returns a result, usually ``next(command)``'s.
Middleware = Callable[[Command, Next], CommandResult]


class UnitOfWork:
    """What one run of a handler loaded: it hands out aggregates and tells the bus what changed.

    The aggregates it hands out belong to the bus for the length of the command: the bus
    may keep them (see ``cache_size`` of :class:`CommandBus`) and hand them to a later
    command once it has checked they are still at the stream's current version.
    """

    def __init__(self, bus: CommandBus) -> None:
        self._bus = bus
        self._loaded: list[tuple[Repository[Any], Aggregate]] = []

    def _repo(self, target: type[A] | Repository[A]) -> Repository[A]:
        return target if isinstance(target, Repository) else self._bus.repository(target)

    def _seen(self, repo: Repository[A], id: str) -> A | None:
        # Asking twice for one aggregate gives the same object, so its changes add up.
        for r, a in self._loaded:
            if r is repo and a.id == id:
                return a  # type: ignore[return-value]
        return None

    def load(self, target: type[A] | Repository[A], id: str) -> A:
        """Load an existing aggregate (:class:`AggregateNotFoundError` if there is none)."""
        return self._get(target, id, create=False)

    def new(self, target: type[A] | Repository[A], id: str) -> A:
        """A fresh aggregate; :class:`AggregateExistsError` if its stream already has events."""
        repo = self._repo(target)
        if repo.exists(id):
            raise AggregateExistsError(
                f"{repo.aggregate_class.__name__} {id!r} already exists "
                f"(stream {repo.aggregate_class.stream_id_for(id)!r} has events)"
            )
        aggregate = repo.aggregate_class(id)
        self._loaded.append((repo, aggregate))
        return aggregate

    def load_or_new(self, target: type[A] | Repository[A], id: str) -> A:
        """Load the aggregate if it exists, else start a fresh one."""
        return self._get(target, id, create=True)

    def _get(self, target: type[A] | Repository[A], id: str, *, create: bool) -> A:
        repo = self._repo(target)
        seen = self._seen(repo, id)
        if seen is not None:
            return seen
        aggregate = self._bus._checkout(repo, id)
        if aggregate is None:
            if create and not repo.exists(id):
                # No stream yet: start fresh without paying for a failed load. Should a rival
                # create it meanwhile, saving (expected version 0) raises ConcurrencyError.
                aggregate = repo.aggregate_class(id)
            else:
                aggregate = repo.load(id)
        self._loaded.append((repo, aggregate))
        return aggregate

    def changed(self) -> list[tuple[Repository[Any], Aggregate]]:
        """The loaded aggregates that have pending events."""
        return [(r, a) for r, a in self._loaded if a._pending]


class CommandBus:
    """Routes commands to handlers, saves what they change, retries lost races.

    Parameters
    ----------
    store
        The event store the handlers' aggregates live in.
    retries
        How many times to reload and re-run a handler after a
        :class:`~esnotebook.ConcurrencyError` before letting it propagate (default 3).
    middleware
        Callables ``(command, next) -> CommandResult`` wrapped around handling, the first
        outermost (e.g. :class:`InMemoryIdempotency`).
    snapshot_every
        Passed to the :class:`~esnotebook.Repository` the bus makes for each aggregate class.
    cache_size
        How many aggregates the bus keeps between commands (default 1024; 0 keeps none).
        A kept aggregate is used again only when its stream is still at the version it was
        saved or loaded at (or after replaying the events appended since), so a command
        always sees the stored state; it saves the reload of the whole stream that each
        command would otherwise pay. Aggregates a command rejected, failed on or returned
        are never kept.

    Notes
    -----
    One command changes at most one aggregate: its events are one atomic append. Work
    that spans aggregates is a chain of commands (a saga), each one atomic.
    """

    def __init__(
        self,
        store: Any,
        *,
        retries: int = 3,
        middleware: Sequence[Middleware] = (),
        snapshot_every: int | None = None,
        cache_size: int = 1024,
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"'retries' must be an int >= 0 (got {retries!r})")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"'cache_size' must be an int >= 0 (got {cache_size!r})")
        self.store = store
        self.retries = retries
        self.snapshot_every = snapshot_every
        self.cache_size = cache_size
        self._handlers: dict[type[Command], Handler] = {}
        self._repositories: dict[type[Aggregate], Repository[Any]] = {}
        self._middleware: list[Middleware] = []
        self._chain: Next | None = None
        # (class, id) -> aggregate with no pending events, least recently used first.
        self._cache: dict[tuple[type[Aggregate], str], Aggregate] = {}
        for m in middleware:
            self.use(m)

    # ------------------------------------------------------------------ wiring
    def register(self, command_type: type[Command], handler: Handler) -> None:
        """Route commands of ``command_type`` to ``handler(command, uow)``."""
        if not (isinstance(command_type, type) and issubclass(command_type, Command)):
            raise TypeError(f"command_type must be a Command subclass (got {command_type!r})")
        if command_type in self._handlers:
            raise ValueError(f"{command_type.__name__} already has a handler ({self._handlers[command_type]!r})")
        if not callable(handler):
            raise TypeError(f"handler must be callable (got {handler!r})")
        self._handlers[command_type] = handler

    def handles(self, command_type: type[Command]) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`."""

        def decorate(handler: Handler) -> Handler:
            self.register(command_type, handler)
            return handler

        return decorate

    def use(self, middleware: Middleware) -> None:
        """Add middleware inside the ones already added."""
        if not callable(middleware):
            raise TypeError(f"middleware must be callable (got {middleware!r})")
        self._middleware.append(middleware)
        self._chain = None

    def repository(self, aggregate_class: type[A]) -> Repository[A]:
        """The repository the bus uses for ``aggregate_class`` (made on first use)."""
        repo = self._repositories.get(aggregate_class)
        if repo is None:
            repo = Repository(self.store, aggregate_class, snapshot_every=self.snapshot_every)
            self._repositories[aggregate_class] = repo
        return repo

    def add_repository(self, repository: Repository[Any]) -> None:
        """Use ``repository`` (e.g. one with its own snapshot store) for its aggregate class."""
        if repository.store is not self.store:
            raise ValueError("the repository must use the bus's event store")
        self._repositories[repository.aggregate_class] = repository
        self.clear_cache()

    @property
    def command_types(self) -> list[type[Command]]:
        """The command types with a handler."""
        return list(self._handlers)

    # ------------------------------------------------------------------ kept aggregates
    def clear_cache(self) -> None:
        """Forget the aggregates kept between commands (the next commands reload them)."""
        self._cache.clear()

    def _checkout(self, repo: Repository[A], id: str) -> A | None:
        """The kept aggregate, brought up to the stream's version, or ``None`` (load it).

        It leaves the cache while a command holds it: only a command that succeeds puts it
        back, so a rejected or failed command's aggregate is never seen again.
        """
        cls = repo.aggregate_class
        if not self._cache or self._repositories.get(cls) is not repo:
            return None
        aggregate = self._cache.pop((cls, id), None)
        if aggregate is None:
            return None
        current = self.store.stream_version(aggregate.stream_id)
        if current == aggregate.version:
            return aggregate  # type: ignore[return-value]
        if current < aggregate.version:
            return None  # cannot happen in an append-only store; reload to be safe
        origin = aggregate._origin
        try:
            # Another writer appended meanwhile: apply just what it added.
            aggregate._replay(self.store.read_stream(aggregate.stream_id, from_version=aggregate.version + 1))
        except Exception:  # noqa: BLE001 - a full reload then reports whatever is wrong
            return None
        aggregate._origin = origin
        return aggregate  # type: ignore[return-value]

    def _read(self, aggregate_class: type[A], id: str) -> A:
        """The aggregate as stored now, for code of this package that only reads it (a
        saga's ``start``): taken from, and left in, the kept aggregates, so the command
        that follows does not load it again. Never call commands on what this returns."""
        uow = UnitOfWork(self)
        aggregate = uow.load(aggregate_class, id)
        self._keep(uow, None)
        return aggregate

    def _keep(self, uow: UnitOfWork, value: Any) -> None:
        """Keep the aggregates of a command that succeeded (all saved, none pending)."""
        size = self.cache_size
        if not size:
            return
        cache = self._cache
        for repo, aggregate in uow._loaded:
            cls = repo.aggregate_class
            if (
                aggregate._pending
                or aggregate is value
                or aggregate.version == 0
                or type(aggregate) is not cls
                or self._repositories.get(cls) is not repo
            ):
                continue
            cache[(cls, aggregate.id)] = aggregate
        while len(cache) > size:
            del cache[next(iter(cache))]

    # ------------------------------------------------------------------ dispatch
    def dispatch(
        self, command: Command, *, on_reject: Literal["raise", "return"] = "raise"
    ) -> CommandResult:
        """Handle ``command``; return a :class:`CommandResult`.

        Parameters
        ----------
        command
            The command.
        on_reject
            ``"raise"`` re-raises the :class:`~esnotebook.DomainException` of a rejected
            command; ``"return"`` returns a result with ``status="rejected"``.
        """
        if on_reject != "raise" and on_reject != "return":
            raise ValueError(f"'on_reject' must be 'raise' or 'return' (got {on_reject!r})")
        if not isinstance(command, Command):
            raise TypeError(f"dispatch needs a Command (got {type(command).__name__})")
        if type(command) not in self._handlers:
            known = ", ".join(sorted(t.__name__ for t in self._handlers)) or "none"
            raise LookupError(f"no handler registered for {command.command_type} (registered: {known})")
        run = self._chain
        if run is None:
            run = self._handle
            for m in reversed(self._middleware):
                run = _wrap(m, run)
            self._chain = run
        result = run(command)
        if on_reject == "raise" and result.error is not None:
            raise result.error
        return result

    def _handle(self, command: Command) -> CommandResult:
        handler = self._handlers[type(command)]
        command_type = type(command).__name__
        metadata = {"command_type": command_type}
        if command.idempotency_key is not None:
            metadata["idempotency_key"] = command.idempotency_key
        if command.causation_id is not None:
            # Commands are not stored: this keeps the event -> command -> cause link traceable.
            metadata["command_causation_id"] = command.causation_id
        attempt = 0
        while True:
            attempt += 1
            uow = UnitOfWork(self)
            try:
                value = handler(command, uow)
            except DomainException as exc:
                return CommandResult(command, "rejected", attempts=attempt, error=exc)
            changed = uow.changed()
            if len(changed) > 1:
                names = ", ".join(a.stream_id for _, a in changed)
                raise RuntimeError(
                    f"{command_type} changed {len(changed)} aggregates ({names}); a "
                    "command may change at most one (use a saga for work across aggregates)"
                )
            if not changed:
                self._keep(uow, value)
                return CommandResult(command, "ok", attempts=attempt, value=value)
            repo, aggregate = changed[0]
            try:
                events = repo.save(
                    aggregate, correlation_id=command.correlation_id,
                    causation_id=command.command_id, metadata=metadata,
                )  # fmt: skip
            except ConcurrencyError:
                if attempt > self.retries:
                    raise
                continue
            self._keep(uow, value)
            return CommandResult(command, "ok", tuple(events), attempts=attempt, value=value)


def _wrap(middleware: Middleware, inner: Next) -> Next:
    def run(command: Command) -> CommandResult:
        return middleware(command, inner)

    return run


class InMemoryIdempotency:
    """Middleware: a command whose idempotency key was handled before is not handled again.

    It returns the first command's result with ``status="duplicate"`` and stores nothing.
    Both carried-out and rejected commands are remembered; a command that raised (a bug,
    or concurrency retries running out) is not, so it can be tried again. Keys live in
    memory only, for this bus's lifetime, and a command that raised is not looked for in
    the store: if an append can fail after its commit (an I/O error on a Parquet store),
    use :class:`~esnotebook.DurableIdempotency`, which finds such a command by its key.

    Examples
    --------
    >>> import esnotebook as es
    >>> from esnotebook.examples import PlaceOrder, order_domain_bus
    >>> bus = order_domain_bus(es.InMemoryEventStore(), middleware=[InMemoryIdempotency()])
    >>> first = bus.dispatch(PlaceOrder("o-1", "c-1", idempotency_key="k-1"))
    >>> again = bus.dispatch(PlaceOrder("o-1", "c-1", idempotency_key="k-1"))
    >>> again.status, again.events == first.events
    ('duplicate', True)
    """

    def __init__(self) -> None:
        self._results: dict[str, CommandResult] = {}

    def __call__(self, command: Command, next: Next) -> CommandResult:
        key = command.idempotency_key
        if key is None:
            return next(command)
        first = self._results.get(key)
        if first is not None:
            if first.command.command_type != command.command_type:
                raise ValueError(
                    f"idempotency key {key!r} was first used by {first.command.command_type}, "
                    f"now by {command.command_type}; a key names one logical request"
                )
            return dataclasses.replace(first, status="duplicate")
        result = next(command)
        self._results[key] = result
        return result

    def __len__(self) -> int:
        return len(self._results)

    def __contains__(self, key: object) -> bool:
        return key in self._results
