"""What a saga is: its steps, their compensations, and the events that drive an instance.

A :class:`Saga` is a declaration; a :class:`~esnotebook.sagas.SagaRunner` runs it against a
store. Define one in a few lines::

    saga = Saga(
        "Fulfil",
        starts_on="OrderPlaced",
        key=lambda e: e.data["order_id"],
        start=lambda e, bus: {"order_id": e.data["order_id"]},
        steps=[
            Step("reserve", lambda s: ReserveInventory("sku-1", s["order_id"], 1),
                 compensation=lambda s: ReleaseInventory("sku-1", s["order_id"])),
            Step("ship", lambda s: ShipOrder(s["order_id"])),
        ],
        bus=order_domain_bus,
    )

Semantics, for one instance (one value of ``key``):

- An event of a ``starts_on`` type with no instance yet creates one (its state is
  ``start(event, bus)``) and runs the steps in order.
- A step builds its command(s) from the state and sends them, each with an idempotency key
  that is the same on every retry (``<saga>:<instance>:do:<step>:<i>``). A command that
  fails transiently is retried with backoff; one refused by a business rule, one whose
  step runs past its ``timeout``, or one whose events include a ``fails_on`` type fails
  the step.
- A step with ``awaits`` waits, after its commands, for that event type to arrive for the
  instance (an *advance* event); ``fails_on`` events fail a waiting instance and
  ``finishes_on`` events complete it.
- When a step fails, the instance sends the failed step's ``on_failure`` commands (to
  record the failure), then the saga's ``abort`` commands (to close the instance's own
  aggregate, e.g. cancel the order, before anything is undone), then the compensations of
  every command already carried out, newest first. A compensation is retried; one that
  keeps failing is dead-lettered for an operator, never dropped.

Builders (``action``, ``compensation``, ``on_failure``, ``abort``) take the instance state
(a JSON-compatible dict; ``state["failure"]`` holds the reason once it failed) and return a
command, a list of commands, or ``None``. A step's ``compensation`` returns one command per
action command (or a single one): only those whose action was carried out are sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..commands import Command
from ..events import RecordedEvent

__all__ = ["Builder", "Retry", "Saga", "Step"]

#: ``builder(state) -> Command | list[Command] | None``
Builder = Callable[[dict[str, Any]], "Command | Sequence[Command] | None"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")


def _positive(name: str, value: object, *, allow_none: bool = False, strict: bool = True) -> None:
    if value is None and allow_none:
        return
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not ok or (value <= 0 if strict else value < 0):  # type: ignore[operator]
        need = "> 0" if strict else ">= 0"
        raise ValueError(f"{name!r} must be a number {need}{' or None' if allow_none else ''} (got {value!r})")


@dataclass(frozen=True, slots=True)
class Retry:
    """How a failing command is retried: ``attempts`` in all, waiting ``backoff`` seconds
    before the second, multiplied by ``factor`` each time, never more than ``max_backoff``.

    Examples
    --------
    >>> [Retry(attempts=4, backoff=0.5).delay(n) for n in (1, 2, 3)]
    [0.5, 1.0, 2.0]
    """

    attempts: int = 4
    backoff: float = 0.2
    factor: float = 2.0
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"'attempts' must be an int >= 1 (got {self.attempts!r})")
        _positive("backoff", self.backoff, strict=False)
        _positive("max_backoff", self.max_backoff, strict=False)
        if isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)) or self.factor < 1:
            raise ValueError(f"'factor' must be a number >= 1 (got {self.factor!r})")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (from 1)."""
        return float(min(self.backoff * self.factor ** (attempt - 1), self.max_backoff))


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a saga: command(s) to send and how to undo them.

    Parameters
    ----------
    name
        The step's name (letters, digits, ``_``, ``-``), unique in the saga.
    action
        ``action(state)``: the command(s) that carry the step out.
    compensation
        ``compensation(state)``: the command(s) that undo it, one per action command or a
        single one; ``None`` for a step that needs no undoing (or cannot be undone).
    on_failure
        ``on_failure(state)``: command(s) that record this step's failure (e.g. the
        declined payment on the order), sent before anything is compensated.
    awaits
        An event type to wait for after the commands succeed before the next step.
    timeout
        Seconds (saga clock) the step may take, retries and waiting included
        (default: the saga's ``step_timeout``).
    retry
        Retry policy of the step's commands (default: the saga's ``retry``).
    """

    name: str
    action: Builder
    compensation: Builder | None = field(default=None, kw_only=True)
    on_failure: Builder | None = field(default=None, kw_only=True)
    awaits: str | None = field(default=None, kw_only=True)
    timeout: float | None = field(default=None, kw_only=True)
    retry: Retry | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"step 'name' must be letters, digits, '_' or '-' (got {self.name!r})")
        for what in ("action", "compensation", "on_failure"):
            value = getattr(self, what)
            if value is None and what != "action":
                continue
            if not callable(value):
                raise TypeError(f"step {self.name!r}: {what!r} must be callable (got {value!r})")
        if self.awaits is not None and (not isinstance(self.awaits, str) or not self.awaits):
            raise ValueError(f"step {self.name!r}: 'awaits' must be an event type name or None (got {self.awaits!r})")
        _positive("timeout", self.timeout, allow_none=True)
        if self.retry is not None and not isinstance(self.retry, Retry):
            raise TypeError(f"step {self.name!r}: 'retry' must be a Retry or None (got {self.retry!r})")


#: The default retry policies: step commands, and compensations before dead-lettering.
STEP_RETRY = Retry()
COMPENSATION_RETRY = Retry(attempts=6)


def _types(name: str, value: str | Sequence[str]) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    for t in items:
        if not isinstance(t, str) or not t:
            raise ValueError(f"{name!r} must be event type names (got {value!r})")
    return items


def _default_start(event: RecordedEvent, bus: Any) -> dict[str, Any]:
    return dict(event.data)


class Saga:
    """A saga (process manager): steps across aggregates, each with its compensation.

    Parameters
    ----------
    name
        The saga's name: its checkpoint and instances live under ``sagas/<name>/``.
    starts_on
        Event type(s) that start an instance.
    key
        ``key(event) -> str | None``: the instance an event belongs to (``None``: none).
    steps
        The :class:`Step` list, in order.
    start
        ``start(event, bus) -> dict``: the new instance's state (default: the event's
        payload). ``bus`` lets it read aggregates, e.g. ``bus.repository(Order).load(id)``.
    fails_on, finishes_on
        Event types that fail / complete an instance (see the module docstring).
    abort
        ``abort(state)``: commands sent first when an instance fails.
    bus
        ``bus(store, *, middleware=...) -> CommandBus``: makes a bus that handles the
        saga's commands (e.g. :func:`~esnotebook.examples.order_domain_bus`).
    retry
        Default :class:`Retry` policy of step commands.
    compensation_retry
        Retry policy of compensations; after it, a compensation is dead-lettered.
    step_timeout
        Default step timeout in seconds (saga clock).

    Examples
    --------
    >>> from esnotebook.examples import ShipOrder, order_domain_bus
    >>> saga = Saga("ShipIt", starts_on="PaymentReceived", key=lambda e: e.data["order_id"],
    ...             steps=[Step("ship", lambda s: ShipOrder(s["order_id"]))], bus=order_domain_bus)
    >>> saga.event_types
    ('PaymentReceived',)
    """

    def __init__(
        self,
        name: str,
        *,
        starts_on: str | Sequence[str],
        key: Callable[[RecordedEvent], str | None],
        steps: Sequence[Step],
        start: Callable[[RecordedEvent, Any], dict[str, Any]] | None = None,
        fails_on: str | Sequence[str] = (),
        finishes_on: str | Sequence[str] = (),
        abort: Builder | None = None,
        bus: Callable[..., Any] | None = None,
        retry: Retry = STEP_RETRY,
        compensation_retry: Retry = COMPENSATION_RETRY,
        step_timeout: float = 30.0,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"saga 'name' must be letters, digits, '_' or '-' (got {name!r})")
        self.name = name
        self.starts_on = _types("starts_on", starts_on)
        if not self.starts_on:
            raise ValueError("'starts_on' must name at least one event type (got none)")
        self.fails_on = _types("fails_on", fails_on)
        self.finishes_on = _types("finishes_on", finishes_on)
        if not callable(key):
            raise TypeError(f"'key' must be callable (got {key!r})")
        self.key = key
        self.steps = tuple(steps)
        if not self.steps:
            raise ValueError("'steps' must hold at least one Step (got none)")
        seen: set[str] = set()
        for i, s in enumerate(self.steps):
            if not isinstance(s, Step):
                raise TypeError(f"steps[{i}] must be a Step (got {type(s).__name__})")
            if s.name in seen:
                raise ValueError(f"step names must be unique; {s.name!r} appears twice")
            seen.add(s.name)
        self.start = start or _default_start
        for what, fn in (("start", self.start), ("abort", abort), ("bus", bus)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{what!r} must be callable (got {fn!r})")
        self.abort = abort
        self.bus = bus
        for what, policy in (("retry", retry), ("compensation_retry", compensation_retry)):
            if not isinstance(policy, Retry):
                raise TypeError(f"{what!r} must be a Retry (got {policy!r})")
        self.retry = retry
        self.compensation_retry = compensation_retry
        _positive("step_timeout", step_timeout)
        self.step_timeout = float(step_timeout)

    @property
    def event_types(self) -> tuple[str, ...]:
        """Every event type the saga listens to."""
        awaited = tuple(s.awaits for s in self.steps if s.awaits)
        return tuple(dict.fromkeys((*self.starts_on, *awaited, *self.fails_on, *self.finishes_on)))

    def step_index(self, name: str) -> int:
        """The position of step ``name`` in :attr:`steps`."""
        for i, s in enumerate(self.steps):
            if s.name == name:
                return i
        raise KeyError(f"saga {self.name!r} has no step {name!r} (steps: {', '.join(s.name for s in self.steps)})")

    def run(self, store: Any, **options: Any) -> Any:
        """Make a :class:`~esnotebook.sagas.SagaRunner` for ``store`` and catch it up.

        ``options`` go to the runner (``faults``, ``idempotency``, ``clock``, ...).
        """
        from .runner import SagaRunner

        runner = SagaRunner(self, store, **options)
        runner.catch_up()
        return runner

    def __repr__(self) -> str:
        return f"Saga({self.name!r}, steps={[s.name for s in self.steps]}, starts_on={list(self.starts_on)})"

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<li>{html.escape(s.name)}{' (undo)' if s.compensation else ''}"
            f"{' awaits ' + html.escape(s.awaits) if s.awaits else ''}</li>"
            for s in self.steps
        )
        return (
            f"<b>Saga {html.escape(self.name)}</b>: starts on {html.escape(', '.join(self.starts_on))}"
            f"<ol>{rows}</ol>"
        )


def as_commands(built: Command | Sequence[Command] | None, what: str) -> list[Command]:
    """A builder's return value as a list of commands (checked)."""
    if built is None:
        return []
    items = [built] if isinstance(built, Command) else list(built)
    for i, c in enumerate(items):
        if not isinstance(c, Command):
            raise TypeError(f"{what} must return Command objects (item {i} is {type(c).__name__})")
    return items


def check_mapping(state: object, where: str) -> dict[str, Any]:
    if not isinstance(state, Mapping):
        raise TypeError(f"{where} must return a dict (got {type(state).__name__})")
    return dict(state)
