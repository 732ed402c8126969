"""The saga runner: reads the event stream like a projection and drives saga instances.

It reads the events the saga listens to in position order from its checkpoint, sends the
steps' commands through a command bus (with durable idempotency keys and, optionally, a
fault plan as middleware), and commits its checkpoint and instances after each event that
changed an instance. After a crash it re-reads from the checkpoint: the commands it sends
again carry the same keys, so they come back as duplicates and change nothing.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from ..commands import Command, CommandResult
from ..errors import ConcurrencyError
from ..events import RecordedEvent
from ..faults import CommandTimeout, FaultInjector, FaultPlan, TransientFault
from ..idempotency import DurableIdempotency
from ._commands import restamp
from ._persist import HISTORY_SCHEMA, INSTANCE_SCHEMA, SagaFolder
from .clock import SimulatedClock
from .definition import Retry, Saga, Step, as_commands, check_mapping
from .instance import ACTIVE, Instance, SagaInstance, Status

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SagaRunner"]

class SagaRunner:
    """Runs a :class:`~esnotebook.sagas.Saga` against an event store.

    Parameters
    ----------
    saga
        The saga definition.
    store
        The event store: the runner reads its events and its bus writes to it.
    bus
        A :class:`~esnotebook.commands.CommandBus` on ``store`` handling the saga's
        commands; the runner adds its middleware to it. Default: ``saga.bus(store, ...)``.
    faults
        A :class:`~esnotebook.faults.FaultPlan` (or an injector) applied to every command
        the runner sends; settable later through :attr:`faults`.
    idempotency
        ``"on"`` (default): commands go through :class:`~esnotebook.idempotency.DurableIdempotency`
        (keys kept beside the events on a Parquet store). ``"off"``: keys are still sent but
        not checked - for showing the duplicates that appear without them.
    clock
        What backoff and timeouts wait on (default: a fresh
        :class:`~esnotebook.sagas.SimulatedClock`: no real waiting).
    persist
        ``"auto"``: on a store with a ``path``, checkpoint, instances and history are kept
        in ``<path>/sagas/<name>/`` and survive a restart; ``"memory"``: kept in the runner.
    retention
        Passed to :class:`~esnotebook.idempotency.DurableIdempotency`.

    Examples
    --------
    >>> import esnotebook as es
    >>> from esnotebook.examples import AddStock, AddItem, PlaceOrder, order_domain_bus
    >>> from esnotebook.examples.fulfillment import OrderFulfillment
    >>> store = es.InMemoryEventStore()
    >>> bus = order_domain_bus(store)
    >>> for c in (AddStock("sku-1", 5), PlaceOrder("o-1", "c-1"), AddItem("o-1", "sku-1", 2, 300)):
    ...     _ = bus.dispatch(c)
    >>> runner = SagaRunner(OrderFulfillment(), store)
    >>> runner.catch_up() > 0
    True
    >>> runner.instance("o-1").status
    'completed'
    """

    def __init__(
        self,
        saga: Saga,
        store: Any,
        *,
        bus: Any = None,
        faults: FaultPlan | FaultInjector | None = None,
        idempotency: Literal["on", "off"] = "on",
        clock: Any = None,
        persist: Literal["auto", "memory"] = "auto",
        retention: Any = None,
    ) -> None:
        if not isinstance(saga, Saga):
            raise TypeError(f"SagaRunner needs a Saga (got {type(saga).__name__})")
        if idempotency not in ("on", "off"):
            raise ValueError(f"'idempotency' must be 'on' or 'off' (got {idempotency!r})")
        if persist not in ("auto", "memory"):
            raise ValueError(f"'persist' must be 'auto' or 'memory' (got {persist!r})")
        self.saga = saga
        self.store = store
        self.clock = clock if clock is not None else SimulatedClock()
        self.faults = faults  # type: ignore[assignment]
        self.keys = DurableIdempotency(store, mode=idempotency, retention=retention)
        middleware = [self._inject, self.keys]
        if bus is None:
            if saga.bus is None:
                raise ValueError(
                    f"saga {saga.name!r} has no bus factory: pass SagaRunner(..., bus=CommandBus(...)) "
                    "or define Saga(..., bus=order_domain_bus)"
                )
            bus = saga.bus(store, middleware=middleware)
        else:
            if bus.store is not store:
                raise ValueError("the bus must write to the runner's store")
            for m in middleware:
                bus.use(m)
        self.bus = bus
        self._instances: dict[str, Instance] = {}
        self._history: list[tuple[Any, ...]] = []
        self._unsaved = 0  # history rows not yet committed
        self._checkpoint = 0
        self._types = saga.event_types
        base = getattr(store, "path", None)
        self._folder = SagaFolder(Path(base) / "sagas" / saga.name) if persist == "auto" and base is not None else None
        if self._folder is not None:
            self._load()

    # ------------------------------------------------------------------ faults
    @property
    def faults(self) -> FaultInjector | None:
        """The fault injector in use (``None``: no faults). Assign a plan, an injector or ``None``."""
        return self._faults

    @faults.setter
    def faults(self, value: FaultPlan | FaultInjector | None) -> None:
        if isinstance(value, FaultPlan):
            value = value.injector()
        if value is not None and not isinstance(value, FaultInjector):
            raise TypeError(f"'faults' must be a FaultPlan, a FaultInjector or None (got {type(value).__name__})")
        self._faults = value

    def _inject(self, command: Command, next: Callable[[Command], CommandResult]) -> CommandResult:
        faults = self._faults
        return next(command) if faults is None else faults(command, next)

    # ------------------------------------------------------------------ persistence
    def _load(self) -> None:
        assert self._folder is not None
        loaded = self._folder.load()
        if loaded is None:
            return
        manifest, instances, history = loaded
        self._checkpoint = int(manifest["checkpoint"])
        self.clock.set(float(manifest.get("clock", 0.0)))
        for row in instances.iter_rows(named=True):
            inst = Instance.from_row(row)
            self._instances[inst.id] = inst
        self._history = list(history.iter_rows())
        # A commit is made only between events, so no instance is mid-step here; resume any
        # that is, defensively, rather than leave it stuck.
        for inst in list(self._instances.values()):
            if inst.status == "running":
                self._drive(inst)
            elif inst.status == "compensating":
                self._compensate(inst)

    def _commit(self) -> None:
        if self._folder is None:
            return
        instances = pl.DataFrame([i.row() for i in self._instances.values()], schema=INSTANCE_SCHEMA, orient="row")
        new = self._history[len(self._history) - self._unsaved:] if self._unsaved else []
        history = pl.DataFrame(new, schema=HISTORY_SCHEMA, orient="row")
        self._folder.commit(checkpoint=self._checkpoint, clock=self.clock.now(), instances=instances, history=history)
        self._unsaved = 0

    # ------------------------------------------------------------------ running
    @property
    def checkpoint(self) -> int:
        """The position of the last event processed."""
        return self._checkpoint

    @property
    def lag(self) -> int:
        """Events in the store after the checkpoint."""
        return self.store.head_position - self._checkpoint

    def catch_up(self, max_events: int | None = None, *, progress: bool | None = None) -> int:
        """Process events up to the head of the store (including those the saga's own
        commands append meanwhile); return how many positions the checkpoint moved.

        Parameters
        ----------
        max_events
            Stop after this many events.
        progress
            Show a progress bar (default: when more than 20,000 events are behind).
        """
        read = 0
        bar = None
        if progress or (progress is None and self.lag > 20_000):
            from .._progress import progress_bar

            bar = progress_bar(total=self.lag, desc=f"saga {self.saga.name}", unit="event")
        try:
            while True:
                head = self.store.head_position
                if head <= self._checkpoint or (max_events is not None and read >= max_events):
                    break
                end = head if max_events is None else min(head, self._checkpoint + max_events - read)
                start = self._checkpoint
                for event in self.store.read_all(from_position=start, to_position=end, event_types=self._types):
                    changed = self._on_event(event)
                    self._checkpoint = event.position
                    if changed:
                        self._commit()
                read += end - start
                self._checkpoint = end
                if bar is not None:
                    bar.update(end - start)
        finally:
            if bar is not None:
                bar.close()
        self._commit()
        return read

    def _on_event(self, event: RecordedEvent) -> bool:
        iid = self.saga.key(event)
        inst = None if iid is None else self._instances.get(str(iid))
        before = None if inst is None else inst.status
        try:
            return self._handle_event(event, iid)
        except Exception as exc:
            # A bug (in a builder, a handler): the instance it hit is dead-lettered, not left
            # stuck mid-step, and the runner moves past the event. A bug before an instance
            # exists (in ``start``, ``key``) leaves the checkpoint so the event is retried.
            inst = None if iid is None else self._instances.get(str(iid))
            if inst is not None and inst.status in ACTIVE:
                resume = "compensate" if inst.status == "compensating" or before == "compensating" else "drive"
                inst.status = "dead-lettered"
                inst.dead = {"phase": "error", "step": self.saga.steps[min(inst.step, len(self.saga.steps) - 1)].name,
                             "command_type": "", "idempotency_key": "", "outcome": "error",
                             "error": f"{type(exc).__name__}: {exc}", "resume": resume}  # fmt: skip
                self._commit_at(event.position)
            raise

    def _commit_at(self, position: int) -> None:
        self._checkpoint = position
        self._commit()

    def _handle_event(self, event: RecordedEvent, iid: Any) -> bool:
        if iid is None:
            return False
        iid = str(iid)
        inst = self._instances.get(iid)
        t = event.event_type
        if inst is None:
            if t not in self.saga.starts_on:
                return False
            state = check_mapping(self.saga.start(event, self.bus), "start")
            inst = Instance(iid, state, event.correlation_id, event.event_id, self.clock.now())
            self._instances[iid] = inst
            self._drive(inst)
            return True
        if inst.status != "waiting" or not (
            t in self.saga.fails_on or t == self.saga.steps[inst.step].awaits or t in self.saga.finishes_on
        ):
            return False
        inst.cause_id = event.event_id  # what comes next is caused by this event
        if t in self.saga.fails_on:
            self._fail(inst, f"{t} at position {event.position}")
        elif t == self.saga.steps[inst.step].awaits:
            inst.step += 1
            inst.waiting_since = None
            inst.status = "running"
            self._drive(inst)
        else:
            self._end(inst, "completed")
        return True

    def _drive(self, inst: Instance) -> None:
        steps = self.saga.steps
        while inst.step < len(steps):
            step = steps[inst.step]
            commands = as_commands(step.action(inst.state), f"step {step.name!r} action")
            deadline = self.clock.now() + (step.timeout or self.saga.step_timeout)
            policy = step.retry or self.saga.retry
            for i in range(inst.done.get(step.name, 0), len(commands)):
                key = f"{self.saga.name}:{inst.id}:do:{step.name}:{i}"
                outcome, error = self._send(inst, commands[i], key, "do", step.name, policy, deadline)
                if outcome not in ("ok", "duplicate"):
                    self._fail(inst, f"step {step.name!r}: {error}")
                    return
                inst.done[step.name] = i + 1
            if step.awaits:
                inst.status = "waiting"
                inst.waiting_since = self.clock.now()
                return
            inst.step += 1
        self._end(inst, "completed")

    def _send(
        self, inst: Instance, command: Command, key: str, phase: str, step: str, policy: Retry,
        deadline: float | None,
    ) -> tuple[str, str | None]:
        """Send one command with retries; return ``(outcome, error)``: outcome is ``ok``,
        ``duplicate``, ``rejected``, ``failed`` (a fails_on event), ``timeout`` or ``exhausted``."""
        command = restamp(command, idempotency_key=key, correlation_id=inst.correlation_id, causation_id=inst.cause_id)
        attempt = 0
        while True:
            attempt += 1
            error: str | None = None
            try:
                result = self.bus.dispatch(command, on_reject="return")
            except (TransientFault, ConcurrencyError) as exc:
                outcome, error = "transient", str(exc)
            except CommandTimeout as exc:
                outcome, error = "timeout", str(exc)
            else:
                outcome = result.status
                if result.error is not None:
                    error = f"{type(result.error).__name__}: {result.error}"
                elif result.events:
                    inst.cause_id = result.events[-1].event_id
                    bad = [e.event_type for e in result.events if e.event_type in self.saga.fails_on]
                    if bad:
                        outcome, error = "failed", f"{command.command_type} recorded {bad[0]}"
            self._history.append(
                (inst.id, phase, step, command.command_type, key, attempt, outcome, self.clock.now(), error)
            )
            self._unsaved += 1
            if outcome in ("ok", "duplicate", "rejected", "failed"):
                return outcome, error
            if outcome == "timeout":
                wait = (deadline - self.clock.now()) if deadline is not None else self.saga.step_timeout
                self.clock.sleep(max(wait, 0.0))
                if deadline is not None:
                    return "timeout", f"timed out: {error}"
            if attempt >= policy.attempts:
                return "exhausted", f"gave up after {attempt} attempts: {error}"
            delay = policy.delay(attempt)
            if deadline is not None and self.clock.now() + delay > deadline:
                return "timeout", f"timed out after {attempt} attempts: {error}"
            self.clock.sleep(delay)

    # ------------------------------------------------------------------ failure
    def _fail(self, inst: Instance, reason: str) -> None:
        inst.status = "compensating"
        inst.failure = reason
        inst.waiting_since = None
        inst.state["failure"] = reason
        inst.undo = 0
        self._compensate(inst)

    def _undo_plan(self, inst: Instance) -> list[tuple[str, str, str, Command]]:
        """The commands that undo a failed instance, in the order they are sent."""
        saga, state = self.saga, inst.state
        base = f"{saga.name}:{inst.id}"
        plan: list[tuple[str, str, str, Command]] = []
        failed: Step | None = saga.steps[inst.step] if inst.step < len(saga.steps) else None
        if failed is not None and failed.on_failure is not None:
            for i, c in enumerate(as_commands(failed.on_failure(state), f"step {failed.name!r} on_failure")):
                plan.append(("fail", failed.name, f"{base}:fail:{failed.name}:{i}", c))
        if saga.abort is not None:
            for i, c in enumerate(as_commands(saga.abort(state), "abort")):
                plan.append(("abort", "", f"{base}:abort:{i}", c))
        for idx in range(min(inst.step, len(saga.steps) - 1), -1, -1):
            step = saga.steps[idx]
            n = inst.done.get(step.name, 0)
            if n == 0 or step.compensation is None:
                continue
            comps = as_commands(step.compensation(state), f"step {step.name!r} compensation")
            if len(comps) == 1:
                chosen = [(0, comps[0])]
            elif len(comps) >= n:
                chosen = [(i, comps[i]) for i in range(n - 1, -1, -1)]
            else:
                raise ValueError(
                    f"step {step.name!r}: compensation must return one command or one per action "
                    f"command ({n} carried out); got {len(comps)}"
                )
            plan.extend(("undo", step.name, f"{base}:undo:{step.name}:{i}", c) for i, c in chosen)
        return plan

    def _compensate(self, inst: Instance) -> None:
        plan = self._undo_plan(inst)
        policy = self.saga.compensation_retry
        while inst.undo < len(plan):
            phase, step, key, command = plan[inst.undo]
            outcome, error = self._send(inst, command, key, phase, step, policy, None)
            if outcome == "rejected" and phase == "fail":
                pass  # a failure record the aggregate no longer takes (e.g. already cancelled)
            elif outcome not in ("ok", "duplicate", "failed"):
                inst.status = "dead-lettered"
                inst.dead = {"phase": phase, "step": step, "command_type": command.command_type,
                             "idempotency_key": key, "outcome": outcome, "error": error}  # fmt: skip
                return
            inst.undo += 1
        self._end(inst, "compensated")

    def _end(self, inst: Instance, status: Status) -> None:
        inst.status = status
        inst.ended_at = self.clock.now()
        inst.waiting_since = None
        inst.dead = None

    def expire(self) -> int:
        """Fail the waiting instances whose step ran past its timeout (on the runner's
        clock); return how many. Call it after the clock has moved on, e.g.
        ``runner.clock.advance(60); runner.expire()``."""
        now, n = self.clock.now(), 0
        for inst in self._instances.values():
            if inst.status == "waiting" and inst.waiting_since is not None:
                step = self.saga.steps[inst.step]
                if now - inst.waiting_since > (step.timeout or self.saga.step_timeout):
                    self._fail(inst, f"step {step.name!r}: timed out waiting for {step.awaits}")
                    n += 1
        if n:
            self._commit()
        return n

    def retry_dead_letters(self) -> int:
        """Resume every dead-lettered instance where it stopped (an operator's retry, once
        the cause is fixed); return how many have finished now."""
        n = 0
        for inst in self._instances.values():
            if inst.status == "dead-lettered":
                resume = (inst.dead or {}).get("resume", "compensate")
                inst.dead = None
                if resume == "drive":
                    inst.status = "running"
                    self._drive(inst)
                else:
                    inst.status = "compensating"
                    self._compensate(inst)
                n += inst.status in ("compensated", "completed")
        self._commit()
        return n

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self._instances)

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._instances

    def instances(self) -> pl.DataFrame:
        """One row per instance: ``instance_id, status, step`` (where it is or stopped),
        ``steps_done, failure, attempts, started_at, ended_at, duration, correlation_id``."""
        names = [s.name for s in self.saga.steps]
        attempts: dict[str, int] = {}
        for row in self._history:
            attempts[row[0]] = attempts.get(row[0], 0) + 1
        rows = [
            (i.id, i.status, names[min(i.step, len(names) - 1)], min(i.step, len(names)) if i.status != "completed" else len(names),
             i.failure, attempts.get(i.id, 0), i.started_at, i.ended_at, i.correlation_id)
            for i in self._instances.values()
        ]  # fmt: skip
        frame = pl.DataFrame(
            rows,
            schema={"instance_id": pl.String, "status": pl.String, "step": pl.String, "steps_done": pl.Int64,
                    "failure": pl.String, "attempts": pl.Int64, "started_at": pl.Float64,
                    "ended_at": pl.Float64, "correlation_id": pl.String},
            orient="row",
        )  # fmt: skip
        return frame.with_columns((pl.col("ended_at") - pl.col("started_at")).alias("duration"))

    def history(self, instance_id: str | None = None) -> pl.DataFrame:
        """Every command attempt: ``instance_id, phase`` (``do``, ``fail``, ``abort``,
        ``undo``), ``step, command_type, idempotency_key, attempt, outcome, at, error``."""
        rows = self._history if instance_id is None else [r for r in self._history if r[0] == instance_id]
        return pl.DataFrame(rows, schema=HISTORY_SCHEMA, orient="row")

    def dead_letters(self) -> pl.DataFrame:
        """The dead-lettered instances and the command each is stuck on."""
        rows = [
            (i.id, i.dead["phase"], i.dead["step"], i.dead["command_type"], i.dead["idempotency_key"],
             i.dead["outcome"], i.dead["error"], i.failure)
            for i in self._instances.values() if i.status == "dead-lettered" and i.dead
        ]  # fmt: skip
        return pl.DataFrame(
            rows,
            schema={"instance_id": pl.String, "phase": pl.String, "step": pl.String, "command_type": pl.String,
                    "idempotency_key": pl.String, "outcome": pl.String, "error": pl.String, "failure": pl.String},
            orient="row",
        )  # fmt: skip

    def summary(self) -> dict[str, int]:
        """How many instances are in each status."""
        out = dict.fromkeys(("running", "waiting", "completed", "compensating", "compensated", "dead-lettered"), 0)
        for i in self._instances.values():
            out[i.status] += 1
        return out

    def instance(self, instance_id: str) -> SagaInstance:
        """A snapshot of one instance with its history."""
        inst = self._instances.get(instance_id)
        if inst is None:
            raise KeyError(f"saga {self.saga.name!r} has no instance {instance_id!r} ({len(self)} instances)")
        names = [s.name for s in self.saga.steps]
        return SagaInstance(
            inst.id, status=inst.status, saga=self.saga.name, steps=tuple(names),
            step=names[min(inst.step, len(names) - 1)], state=dict(inst.state), failure=inst.failure,
            correlation_id=inst.correlation_id, history=self.history(instance_id),
            dead_letter=None if inst.dead is None else dict(inst.dead),
        )  # fmt: skip

    def to_polars(self) -> pl.DataFrame:
        """:meth:`instances`."""
        return self.instances()

    def to_pandas(self) -> pd.DataFrame:
        """:meth:`instances` as pandas."""
        return self.instances().to_pandas()

    def __repr__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.summary().items() if v)
        return f"SagaRunner({self.saga.name!r}, checkpoint={self._checkpoint}, {counts or 'no instances'})"

    def _repr_html_(self) -> str:
        counts = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in self.summary().items())
        faults = "" if self._faults is None else f", faults: {html.escape(repr(self._faults))}"
        return (
            f"<b>SagaRunner {html.escape(self.saga.name)}</b>: checkpoint {self._checkpoint}, lag {self.lag}, "
            f"idempotency {html.escape(self.keys.mode)}{faults}<table>{counts}</table>"
        )
