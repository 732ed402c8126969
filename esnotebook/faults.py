"""Seeded fault plans: make chosen commands fail, time out or arrive twice, on purpose.

A :class:`FaultPlan` is a value: an ordered tuple of :class:`Fault` rules and a seed. Its
:meth:`~FaultPlan.injector` is command-bus middleware that applies the rules to each
command. The first rule that matches a command (by type and optional predicate) and fires
(with its probability, drawn from the plan's own seeded generator) decides what happens:

``"transient"``
    :class:`TransientFault` is raised; the command was not carried out. Retrying may work.
``"permanent"``
    The command is refused for good: a ``"rejected"`` result whose error is a
    :class:`PermanentFault` (a :class:`~esnotebook.DomainException`); nothing is stored.
``"timeout"``
    :class:`CommandTimeout` is raised: no reply within the caller's timeout, and the command
    was lost on the way (it had no effect). The caller gives up on it.
``"duplicate"``
    The command is carried out and then delivered a second time (at-least-once delivery);
    the caller gets the first result. Without idempotency keys the second delivery repeats
    its side effect.

The same plan and seed give the same faults for the same sequence of commands, so a failing
run can be replayed exactly.

>>> plan = FaultPlan(seed=1).permanent("ChargePayment", reason="card declined")
>>> [f.kind for f in plan.faults]
['permanent']
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from .commands import Command, CommandResult
from .errors import ConcurrencyError, DomainException

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CommandTimeout",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "FaultPlan",
    "PermanentFault",
    "TransientFault",
]

FaultKind = Literal["transient", "permanent", "timeout", "duplicate"]
_KINDS: tuple[str, ...] = ("transient", "permanent", "timeout", "duplicate")


class TransientFault(Exception):
    """A command failed in a way that may pass (a dropped connection); it had no effect."""


class CommandTimeout(Exception):
    """No reply came in time; the command was lost and had no effect."""


class PermanentFault(DomainException):
    """A command was refused for good by an injected fault (e.g. a card declined)."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One rule of a :class:`FaultPlan`.

    Parameters
    ----------
    kind
        ``"transient"``, ``"permanent"``, ``"timeout"`` or ``"duplicate"``.
    command
        The command type name it applies to (``None``: every command).
    p
        The probability that it fires on a matching command, in [0, 1].
    when
        An optional predicate on the command, e.g. ``lambda c: c.order_id == "o-1"``.
    times
        Fire at most this many times (``None``: no limit). ``times=2`` with ``p=1`` fails
        the first two matching deliveries and lets the third through.
    reason
        The message of the exception it raises.
    """

    kind: FaultKind
    command: str | None = None
    p: float = 1.0
    when: Callable[[Command], bool] | None = field(default=None, compare=False)
    times: int | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"'kind' must be one of {', '.join(_KINDS)} (got {self.kind!r})")
        if self.command is not None and (not isinstance(self.command, str) or not self.command):
            raise ValueError(f"'command' must be a command type name or None (got {self.command!r})")
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or not 0 <= self.p <= 1:
            raise ValueError(f"'p' must be a probability in [0, 1] (got {self.p!r})")
        if self.times is not None and (isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1):
            raise ValueError(f"'times' must be an int >= 1 or None (got {self.times!r})")
        if self.when is not None and not callable(self.when):
            raise TypeError(f"'when' must be callable or None (got {self.when!r})")
        if not self.reason:
            object.__setattr__(self, "reason", f"injected {self.kind} fault")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """An ordered set of :class:`Fault` rules and the seed of their random draws.

    Build one with the chaining methods (each returns a new plan) or :meth:`random`.

    Examples
    --------
    >>> plan = (FaultPlan(seed=7)
    ...         .transient("ReserveInventory", times=2)
    ...         .duplicate(p=0.1))
    >>> len(plan.faults), plan.seed
    (2, 7)
    """

    faults: tuple[Fault, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"'seed' must be an int (got {self.seed!r})")
        object.__setattr__(self, "faults", tuple(self.faults))
        for i, f in enumerate(self.faults):
            if not isinstance(f, Fault):
                raise TypeError(f"faults[{i}] must be a Fault (got {type(f).__name__})")

    def add(self, kind: FaultKind, command: str | None = None, **options: Any) -> FaultPlan:
        """A new plan with one more rule (see :class:`Fault` for the options)."""
        return dataclasses.replace(self, faults=(*self.faults, Fault(kind, command, **options)))

    def transient(self, command: str | None = None, **options: Any) -> FaultPlan:
        """Add a rule that raises :class:`TransientFault`."""
        return self.add("transient", command, **options)

    def permanent(self, command: str | None = None, **options: Any) -> FaultPlan:
        """Add a rule that refuses the command for good."""
        return self.add("permanent", command, **options)

    def timeout(self, command: str | None = None, **options: Any) -> FaultPlan:
        """Add a rule that loses the command and raises :class:`CommandTimeout`."""
        return self.add("timeout", command, **options)

    def duplicate(self, command: str | None = None, **options: Any) -> FaultPlan:
        """Add a rule that delivers the command twice."""
        return self.add("duplicate", command, **options)

    @classmethod
    def random(
        cls,
        *,
        seed: int = 0,
        transient: float = 0.0,
        permanent: float = 0.0,
        timeout: float = 0.0,
        duplicate: float = 0.0,
        commands: tuple[str, ...] | None = None,
    ) -> FaultPlan:
        """A plan where every command (or every one of ``commands``) independently meets each
        kind of fault with the given probability, checked in the order of the arguments.

        Examples
        --------
        >>> plan = FaultPlan.random(seed=3, transient=0.2, duplicate=0.05)
        >>> sorted({f.kind for f in plan.faults})
        ['duplicate', 'transient']
        """
        plan = cls(seed=seed)
        rates = {"transient": transient, "permanent": permanent, "timeout": timeout, "duplicate": duplicate}
        for kind, p in rates.items():
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise ValueError(f"{kind!r} must be a probability in [0, 1] (got {p!r})")
            if p == 0:
                continue
            for name in commands or (None,):
                plan = plan.add(kind, name, p=p)  # type: ignore[arg-type]
        return plan

    def injector(self) -> FaultInjector:
        """Fresh middleware applying this plan, its generator seeded from :attr:`seed`."""
        return FaultInjector(self)


class FaultInjector:
    """Command-bus middleware that applies a :class:`FaultPlan`; it logs what it injected.

    Set :attr:`active` to ``False`` to let every command through (e.g. before an operator
    retries dead letters).

    Examples
    --------
    >>> import esnotebook as es
    >>> from esnotebook.examples import AddStock, order_domain_bus
    >>> inj = FaultPlan().transient("AddStock", times=1).injector()
    >>> bus = order_domain_bus(es.InMemoryEventStore(), middleware=[inj])
    >>> try:
    ...     bus.dispatch(AddStock("sku-1", 5))
    ... except TransientFault:
    ...     print("failed once")
    failed once
    >>> bus.dispatch(AddStock("sku-1", 5)).status
    'ok'
    """

    def __init__(self, plan: FaultPlan) -> None:
        if not isinstance(plan, FaultPlan):
            raise TypeError(f"FaultInjector needs a FaultPlan (got {type(plan).__name__})")
        self.plan = plan
        self.active = True
        self._rng = np.random.default_rng(plan.seed)
        self._fired = [0] * len(plan.faults)
        self._log: list[tuple[int, str, str | None, str]] = []
        self._seen = 0

    def _choose(self, command: Command) -> Fault | None:
        name = type(command).__name__
        for i, f in enumerate(self.plan.faults):
            if f.command is not None and f.command != name:
                continue
            if f.times is not None and self._fired[i] >= f.times:
                continue
            if f.when is not None and not f.when(command):
                continue
            if f.p < 1.0 and self._rng.random() >= f.p:
                continue
            self._fired[i] += 1
            return f
        return None

    def __call__(self, command: Command, next: Callable[[Command], CommandResult]) -> CommandResult:
        self._seen += 1
        fault = self._choose(command) if self.active and self.plan.faults else None
        if fault is None:
            return next(command)
        self._log.append((self._seen, type(command).__name__, command.idempotency_key, fault.kind))
        if fault.kind == "transient":
            raise TransientFault(f"{type(command).__name__}: {fault.reason}")
        if fault.kind == "timeout":
            raise CommandTimeout(f"{type(command).__name__}: {fault.reason}")
        if fault.kind == "permanent":
            return CommandResult(command, "rejected", error=PermanentFault(f"{type(command).__name__}: {fault.reason}"))
        first = next(command)
        try:
            next(command)
        except (DomainException, ConcurrencyError, TransientFault, CommandTimeout):
            pass  # the sender never sees what became of a redelivery
        return first

    @property
    def injected(self) -> int:
        """How many faults were injected so far."""
        return len(self._log)

    def counts(self) -> dict[str, int]:
        """Injected faults per kind."""
        out = dict.fromkeys(_KINDS, 0)
        for *_, kind in self._log:
            out[kind] += 1
        return out

    def to_polars(self) -> pl.DataFrame:
        """One row per injected fault: ``delivery`` (n-th command seen), ``command_type``,
        ``idempotency_key``, ``kind``."""
        return pl.DataFrame(
            self._log,
            schema={"delivery": pl.Int64, "command_type": pl.String, "idempotency_key": pl.String, "kind": pl.String},
            orient="row",
        )

    def to_pandas(self) -> pd.DataFrame:
        """:meth:`to_polars` as pandas."""
        return self.to_polars().to_pandas()

    def __repr__(self) -> str:
        return f"FaultInjector({len(self.plan.faults)} rules, seed={self.plan.seed}, injected={self.injected})"

    def _repr_html_(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        return (
            f"<b>FaultInjector</b>: {len(self.plan.faults)} rule(s), seed {self.plan.seed}, "
            f"{self._seen} command(s) seen; injected: {html.escape(counts)}"
        )
