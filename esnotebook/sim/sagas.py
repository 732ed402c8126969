"""Saga failure and compensation by Monte Carlo over the real saga runtime: :func:`simulate_sagas`.

Every instance is a real :class:`~esnotebook.sagas.SagaRunner` instance on an in-memory
store, sending real commands through the real command bus; a seeded
:class:`~esnotebook.faults.FaultPlan` makes them fail and arrive twice. Only time is
simulated: the runner waits on a :class:`~esnotebook.sagas.SimulatedClock`, and each
delivery of a command may take a random (exponential) simulated service time.

Fault semantics (what the closed forms in :mod:`esnotebook.sim.theory` assume):

- an attempt of step ``i`` fails with probability ``pᵢ`` (a fault on the step's first
  command); ``"transient"`` faults are retried ``retries`` times (so the step fails with
  ``pᵢ^(r+1)``), ``"permanent"`` ones are not;
- a step's command that went through is delivered a second time with probability ``d``;
  without idempotency keys the second delivery is carried out again, and where the domain
  does not refuse it (a second ``ShipOrder`` is refused, a second ``ReserveInventory``
  reserves twice) it repeats its side effect - counted from the store with
  :func:`~esnotebook.idempotency.duplicate_side_effects`; with keys it is recognised and
  changes nothing;
- compensations are not faulted, so every failed instance ends compensated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from . import theory
from ._saga_result import SagaResult

__all__ = ["chain_saga", "expected_step_duplicates", "simulate_sagas"]

SagaKind = Literal["fulfillment", "chain"]
FaultMode = Literal["transient", "permanent"]
_STEP_TIMEOUT = 1e9  # retries are limited by their count, not by the step's deadline


class _StepCommand:
    """Fault predicate: the first command of one step's ``do`` phase (picklable)."""

    __slots__ = ("suffix",)

    def __init__(self, step: str) -> None:
        self.suffix = f":do:{step}:0"

    def __call__(self, command: Any) -> bool:
        return (command.idempotency_key or "").endswith(self.suffix)


def _do_phase(command: Any) -> bool:
    return ":do:" in (command.idempotency_key or "")


class _AddLine:
    """Chain step ``i``: add one unit of ``sku-i`` to the instance's order."""

    __slots__ = ("sku",)

    def __init__(self, i: int) -> None:
        self.sku = f"sku-{i}"

    def __call__(self, state: dict[str, Any]) -> Any:
        from ..examples import AddItem

        return AddItem(state["order_id"], self.sku, 1, 100)


class _RemoveLine(_AddLine):
    def __call__(self, state: dict[str, Any]) -> Any:
        from ..examples import RemoveItem

        return RemoveItem(state["order_id"], self.sku, 1)


def _order_id(event: Any) -> str | None:
    return event.data.get("order_id")


def _start(event: Any, bus: Any) -> dict[str, Any]:
    return {"order_id": event.data["order_id"]}


def chain_saga(steps: int = 3, *, retry: Any = None, step_timeout: float = _STEP_TIMEOUT) -> Any:
    """A saga of ``steps`` steps on one order, each adding a line (undone by removing it):
    one command per step, every one a side effect, every one compensable.

    Examples
    --------
    >>> [s.name for s in chain_saga(3).steps]
    ['s1', 's2', 's3']
    """
    from ..examples import order_domain_bus
    from ..sagas import Retry, Saga, Step

    return Saga(
        "Chain",
        starts_on="OrderPlaced",
        key=_order_id,
        start=_start,
        steps=[
            Step(f"s{i}", _AddLine(i), compensation=_RemoveLine(i)) for i in range(1, steps + 1)
        ],
        bus=order_domain_bus,
        retry=retry or Retry(),
        step_timeout=step_timeout,
    )


def _setup_orders(store: Any, ids: list[str], *, items: bool) -> None:
    from ..events import NewEvent

    for oid in ids:
        events = [NewEvent("OrderPlaced", {"order_id": oid, "customer": "c-1"})]
        if items:
            # One SKU per order, stocked for it: a shared SKU's stream would grow with every
            # instance and each reservation replay it, making the run quadratic.
            sku = f"sku-{oid}"
            store.append(f"inventory-{sku}", [NewEvent("InventoryAdded", {"sku": sku, "quantity": 10})],
                         expected_version=0)  # fmt: skip
            events.append(
                NewEvent("ItemAdded", {"order_id": oid, "sku": sku, "quantity": 1, "price": 100})
            )
        store.append(f"order-{oid}", events, expected_version=0)


def _check_probabilities(name: str, value: Any, n: int) -> list[float]:
    items = (
        [value] * n if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    )
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or len(items) != n:
        raise ValueError(
            f"{name!r} must be a probability or a list of {n} (one per step) (got {value!r})"
        )
    return [theory._probability(f"{name}[{i}]", p) for i, p in enumerate(items)]


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name!r} must be an int >= {minimum} (got {value!r})")
    return int(value)


def _float(name: str, value: Any) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name!r} must be a finite number >= 0 (got {value!r})")
    return float(value)


class _ServiceTime:
    """Bus middleware: each delivery takes an exponential simulated time on the clock."""

    def __init__(self, clock: Any, mean: float, rng: np.random.Generator) -> None:
        self.clock, self.mean, self.rng = clock, mean, rng

    def __call__(self, command: Any, next: Callable[[Any], Any]) -> Any:
        self.clock.sleep(float(self.rng.exponential(self.mean)))
        return next(command)


def simulate_sagas(
    instances: int = 200,
    *,
    saga: SagaKind | Callable[..., Any] = "fulfillment",
    steps: int = 3,
    failure: float | Sequence[float] = 0.0,
    fault: FaultMode = "transient",
    retries: int = 0,
    backoff: float = 0.2,
    duplicate: float = 0.0,
    idempotency: Literal["on", "off"] = "on",
    command_time: float = 0.0,
    setup: Callable[[Any, list[str]], None] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> SagaResult:
    """Run ``instances`` real saga instances under a seeded fault plan; count what happens.

    Parameters
    ----------
    instances
        Saga instances to run (one order each).
    saga
        ``"fulfillment"``: the shipped :class:`~esnotebook.examples.OrderFulfillment`
        (reserve → charge → ship; each order one unit of its own SKU, in stock); ``"chain"``: :func:`chain_saga` with
        ``steps`` steps; or a module-level factory ``saga(retry=Retry, step_timeout=float)``
        returning any :class:`~esnotebook.sagas.Saga` (then pass ``setup``).
    steps
        Steps of the ``"chain"`` saga.
    failure
        Per-attempt failure probability of each step (one number for all, or one per step).
    fault
        ``"transient"`` (retried) or ``"permanent"`` (the step fails at once).
    retries
        Retries per step command after the first attempt.
    backoff
        Seconds (simulated) before the first retry; doubling after each.
    duplicate
        Probability that a step's command that went through is delivered twice.
    idempotency
        ``"on"``: the runner's durable idempotency keys absorb redeliveries; ``"off"``:
        every redelivery is carried out again.
    command_time
        Mean simulated seconds per command delivery (exponential); 0: instantaneous.
    setup
        For a custom ``saga``: ``setup(store, instance_ids)`` appends the events that start
        the instances (ids are ``"o-0"``, ``"o-1"``, ...).
    seed
        Seeds the fault plan and the service times: the same seed gives the same result.
    progress
        Show a progress bar over the events the runner reads.

    Returns
    -------
    SagaResult

    Examples
    --------
    >>> r = simulate_sagas(50, saga="chain", failure=0.1, seed=1, progress=False)
    >>> r["instances"], 0 <= r["success_rate"] <= 1
    (50, True)
    """
    import esnotebook as es

    from ..faults import Fault, FaultPlan
    from ..idempotency import duplicate_side_effects
    from ..sagas import Retry, SagaRunner, SimulatedClock

    n = _int("instances", instances, 1)
    seed = _int("seed", seed, 0)
    r = _int("retries", retries, 0)
    if fault not in ("transient", "permanent"):
        raise ValueError(f"'fault' must be 'transient' or 'permanent' (got {fault!r})")
    if idempotency not in ("on", "off"):
        raise ValueError(f"'idempotency' must be 'on' or 'off' (got {idempotency!r})")
    d = theory._probability("duplicate", duplicate)
    wait = _float("backoff", backoff)
    mean_time = _float("command_time", command_time)
    retry = Retry(attempts=r + 1, backoff=wait, factor=2.0, max_backoff=max(wait * 2.0**r, 1.0))
    if saga == "fulfillment":
        from ..examples.fulfillment import OrderFulfillment

        definition = OrderFulfillment(retry=retry, step_timeout=_STEP_TIMEOUT)
    elif saga == "chain":
        definition = chain_saga(_int("steps", steps, 1), retry=retry)
    elif callable(saga):
        if setup is None or not callable(setup):
            raise ValueError(
                "a custom 'saga' factory needs 'setup(store, instance_ids)' to start its instances"
            )
        definition = saga(retry=retry, step_timeout=_STEP_TIMEOUT)
    else:
        raise ValueError(f"'saga' must be 'fulfillment', 'chain' or a saga factory (got {saga!r})")
    names = [s.name for s in definition.steps]
    probs = _check_probabilities("failure", failure, len(names))

    fault_seed, time_seed = np.random.SeedSequence(seed).spawn(2)
    rules = [
        Fault(
            fault,
            None,
            p=p,
            when=_StepCommand(name),
            reason=f"injected {fault} fault in step {name}",
        )
        for name, p in zip(names, probs)
        if p > 0
    ]
    if d > 0:
        rules.append(Fault("duplicate", None, p=d, when=_do_phase))
    plan = FaultPlan(tuple(rules), seed=int(fault_seed.generate_state(1)[0]))

    store = es.InMemoryEventStore()
    ids = [f"o-{i}" for i in range(n)]
    if saga == "fulfillment":
        _setup_orders(store, ids, items=True)
    elif saga == "chain":
        _setup_orders(store, ids, items=False)
    else:
        assert setup is not None
        setup(store, ids)
    clock = SimulatedClock()
    middleware = (
        [_ServiceTime(clock, mean_time, np.random.default_rng(time_seed))] if mean_time > 0 else []
    )
    if definition.bus is None:
        raise ValueError(f"saga {definition.name!r} needs a bus factory (Saga(..., bus=...))")
    bus = definition.bus(store, middleware=middleware)
    runner = SagaRunner(definition, store, bus=bus, faults=plan, idempotency=idempotency, clock=clock,
                        persist="memory")  # fmt: skip
    runner.catch_up(progress=progress)

    dups = duplicate_side_effects(store)
    per_instance = _instances(runner, dups, definition.name)
    settings = {
        "saga": definition.name,
        "steps": tuple(names),
        "instances": n,
        "failure": tuple(probs),
        "fault": fault,
        "retries": r,
        "backoff": wait,
        "duplicate": d,
        "idempotency": idempotency,
        "command_time": mean_time,
        "seed": seed,
        "commands": int(runner.history().height),
    }
    expected = _expected(probs, fault=fault, retries=r, duplicate=d, keys=idempotency == "on",
                         every_command_repeats=saga == "chain")  # fmt: skip
    return SagaResult(per_instance, settings, expected, duplicates=dups)


def _instances(runner: Any, dups: pl.DataFrame, saga_name: str) -> pl.DataFrame:
    history = runner.history()
    counts = history.group_by("instance_id").agg(
        (pl.col("phase") == "do").sum().cast(pl.Int64).alias("attempts"),
        ((pl.col("phase") == "undo") & pl.col("outcome").is_in(["ok", "duplicate"]))
        .sum()
        .cast(pl.Int64)
        .alias("compensations"),
    )
    # Keys are "<saga>:<instance>:<phase>:...": the instance is what lies between.
    prefix = len(saga_name) + 1
    dup = (
        dups.with_columns(
            pl.col("idempotency_key")
            .str.slice(prefix)
            .str.extract(r"^(.*):(?:do|undo|fail|abort):", 1)
            .alias("instance_id")
        )
        .group_by("instance_id")
        .agg(pl.col("duplicates").sum().cast(pl.Int64))
    )
    frame = runner.instances().select(
        "instance_id",
        "status",
        pl.when(pl.col("status") == "completed")
        .then(None)
        .otherwise(pl.col("step"))
        .alias("failed_step"),
        "steps_done",
        pl.col("duration").alias("latency_s"),
    )
    return (
        frame.join(counts, on="instance_id", how="left")
        .join(dup, on="instance_id", how="left")
        .with_columns(pl.col("attempts", "compensations", "duplicates").fill_null(0))
        .select(
            "instance_id",
            "status",
            "failed_step",
            "steps_done",
            "attempts",
            "compensations",
            "duplicates",
            "latency_s",
        )
        .sort(pl.col("instance_id").str.slice(2).cast(pl.Int64, strict=False), "instance_id")
    )


def expected_step_duplicates(
    failure: Sequence[float], *, duplicate_probability: float, retries: int = 0
) -> float:
    """Expected duplicate side effects per saga when only deliveries that went through are
    redelivered (the fault plan's semantics): ``d · Σᵢ Π_{j<=i}(1 - pⱼ^(r+1))``.

    A failed attempt had no effect, so its redelivery has none to repeat; each step that
    succeeds repeats its side effect once with probability ``d``. The same as
    :func:`~esnotebook.sim.theory.expected_duplicates` (its default, ``redelivered="successful"``).

    Examples
    --------
    >>> expected_step_duplicates([0.0, 0.0, 0.0], duplicate_probability=0.1)
    0.30000000000000004
    """
    return theory.expected_duplicates(
        failure, duplicate_probability=duplicate_probability, retries=retries
    )


def _expected(
    probs: list[float],
    *,
    fault: str,
    retries: int,
    duplicate: float,
    keys: bool,
    every_command_repeats: bool,
) -> dict[str, float | None]:
    r = retries if fault == "transient" else 0  # a permanent fault is not retried
    if keys:
        duplicates: float | None = 0.0
    elif every_command_repeats:
        duplicates = expected_step_duplicates(probs, duplicate_probability=duplicate, retries=r)
    else:
        # The closed form assumes every redelivered command repeats its effect; a domain's
        # own rules (a second ShipOrder is refused) make the real count lower: no figure.
        duplicates = None
    return {
        "success_rate": theory.saga_success(probs, retries=r),
        "compensated_rate": 1 - theory.saga_success(probs, retries=r),
        "compensations_per_saga": theory.expected_compensations(probs, retries=r),
        "duplicates_per_saga": duplicates,
    }
