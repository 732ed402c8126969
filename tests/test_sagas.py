"""The saga engine: definitions, advance/fail/finish events, retries with backoff, step
timeouts, dead-lettered compensations, and invariants under random fault plans."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import esnotebook as es
from esnotebook.examples import (
    AddItem,
    AddStock,
    FailOrderPayment,
    Inventory,
    Order,
    Payment,
    PayOrder,
    PlaceOrder,
    ReleaseInventory,
    ReserveInventory,
    ShipOrder,
    order_domain_bus,
)  # fmt: skip
from esnotebook.examples.fulfillment import OrderFulfillment
from esnotebook.faults import FaultPlan
from esnotebook.idempotency import duplicate_side_effects
from esnotebook.sagas import Retry, Saga, SagaRunner, SimulatedClock, Step
from esnotebook.tracing import trace


def shop(store, n=1, *, stock=100, items=(("sku-1", 1), ("sku-2", 2))):
    bus = order_domain_bus(store)
    for sku in ("sku-1", "sku-2"):
        bus.dispatch(AddStock(sku, stock))
    for i in range(1, n + 1):
        bus.dispatch(PlaceOrder(f"o-{i}", "c-1"))
        for sku, q in items:
            bus.dispatch(AddItem(f"o-{i}", sku, q, 100))
    return bus


def ship_when_paid(timeout=3600.0):
    """A different saga, written the way a notebook would: hold stock until the customer
    pays, then ship; a failed payment or no payment in time releases the stock."""
    return Saga(
        "ShipWhenPaid",
        starts_on="OrderPlaced",
        key=lambda e: e.data.get("order_id"),
        start=lambda e, bus: {"order_id": e.data["order_id"]},
        steps=[
            Step("hold", lambda s: ReserveInventory("sku-1", s["order_id"], 1),
                 compensation=lambda s: ReleaseInventory("sku-1", s["order_id"]),
                 awaits="PaymentReceived", timeout=timeout),
            Step("ship", lambda s: ShipOrder(s["order_id"])),
        ],
        fails_on="PaymentFailed",
        finishes_on="OrderCancelled",
        bus=order_domain_bus,
    )  # fmt: skip


# ---------------------------------------------------------------------- definitions
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Saga("s", starts_on="X", key=str, steps=[]), "'steps' must hold at least one Step"),
        (lambda: Saga("s", starts_on=(), key=str, steps=[Step("a", str)]), "'starts_on' must name"),
        (lambda: Saga("s", starts_on="X", key=str, steps=[Step("a", str), Step("a", str)]), "'a' appears twice"),
        (lambda: Saga("bad name", starts_on="X", key=str, steps=[Step("a", str)]), "saga 'name'"),
        (lambda: Saga("s", starts_on="X", key=3, steps=[Step("a", str)]), "'key' must be callable (got 3)"),
        (lambda: Step("a", str, timeout=-1), "'timeout' must be a number > 0 or None (got -1)"),
        (lambda: Step("a", 5), "'action' must be callable (got 5)"),
        (lambda: Retry(attempts=0), "'attempts' must be an int >= 1 (got 0)"),
        (lambda: Retry(factor=0.5), "'factor' must be a number >= 1 (got 0.5)"),
    ],
)
def test_a_bad_definition_is_refused_with_what_was_wrong(make, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_a_runner_needs_a_bus_and_known_modes():
    saga = Saga("s", starts_on="X", key=str, steps=[Step("a", str)])
    store = es.InMemoryEventStore()
    with pytest.raises(ValueError, match="has no bus factory"):
        SagaRunner(saga, store)
    with pytest.raises(ValueError, match="'idempotency' must be 'on' or 'off' \\(got 'maybe'\\)"):
        SagaRunner(OrderFulfillment(), store, idempotency="maybe")


def test_a_builder_returning_something_else_than_commands_is_a_type_error():
    store = es.InMemoryEventStore()
    shop(store)
    saga = Saga("s", starts_on="OrderPlaced", key=lambda e: e.data["order_id"],
                steps=[Step("a", lambda s: "ShipOrder")], bus=order_domain_bus)  # fmt: skip
    with pytest.raises(TypeError, match="step 'a' action must return Command objects"):
        saga.run(store)


# ---------------------------------------------------------------------- advance / fail / finish
def test_an_awaiting_step_advances_on_its_event_and_fails_on_a_fails_on_event():
    store = es.InMemoryEventStore()
    bus = shop(store, n=3)
    runner = SagaRunner(ship_when_paid(), store)
    runner.catch_up()
    assert runner.summary()["waiting"] == 3
    bus.dispatch(PayOrder("o-1", 300))
    bus.dispatch(FailOrderPayment("o-2", 300, "card expired"))
    runner.catch_up()
    assert runner.instance("o-1").status == "completed"
    assert bus.repository(Order).load("o-1").status == "shipped"
    assert runner.instance("o-2").status == "compensated"
    assert "PaymentFailed" in runner.instance("o-2").failure
    assert bus.repository(Inventory).load("sku-1").reservations == {"o-1": 1, "o-3": 1}
    assert runner.instance("o-3").status == "waiting"


def test_a_finishes_on_event_completes_a_waiting_instance():
    store = es.InMemoryEventStore()
    bus = shop(store)
    runner = ship_when_paid().run(store)
    from esnotebook.examples import CancelOrder

    bus.dispatch(CancelOrder("o-1", "customer changed their mind"))
    runner.catch_up()
    assert runner.instance("o-1").status == "completed"


def test_a_waiting_step_past_its_timeout_is_compensated_by_expire():
    store = es.InMemoryEventStore()
    bus = shop(store)
    runner = ship_when_paid(timeout=60).run(store)
    runner.clock.advance(59)
    assert runner.expire() == 0
    runner.clock.advance(2)
    assert runner.expire() == 1
    assert runner.instance("o-1").status == "compensated"
    assert "timed out waiting for PaymentReceived" in runner.instance("o-1").failure
    assert bus.repository(Inventory).load("sku-1").reserved == 0


# ---------------------------------------------------------------------- retries and timeouts
def test_transient_failures_are_retried_with_exponential_backoff_on_the_saga_clock():
    store = es.InMemoryEventStore()
    shop(store)
    clock = SimulatedClock()
    runner = OrderFulfillment().run(store, faults=FaultPlan().transient("ChargePayment", times=2), clock=clock)
    h = runner.history("o-1").filter(pl.col("command_type") == "ChargePayment")
    assert h.select("attempt", "outcome").rows() == [(1, "transient"), (2, "transient"), (3, "ok")]
    assert h["at"].to_list() == pytest.approx([0.0, 0.2, 0.6])  # waits 0.2 then 0.4
    assert runner.instance("o-1").status == "completed"
    # Every attempt carried the same key.
    assert h["idempotency_key"].unique().to_list() == ["OrderFulfillment:o-1:do:charge:0"]


def test_a_step_that_keeps_failing_transiently_gives_up_after_its_attempts_and_compensates():
    store = es.InMemoryEventStore()
    bus = shop(store)
    saga = OrderFulfillment(retry=Retry(attempts=3, backoff=0.1))
    runner = saga.run(store, faults=FaultPlan().transient("ChargePayment"))
    inst = runner.instance("o-1")
    assert inst.status == "compensated" and "gave up after 3 attempts" in inst.failure
    assert bus.repository(Inventory).load("sku-2").reserved == 0


def test_retries_that_would_run_past_the_step_timeout_stop_and_compensate():
    store = es.InMemoryEventStore()
    shop(store)
    saga = OrderFulfillment(retry=Retry(attempts=50, backoff=1.0, factor=2.0), step_timeout=10)
    runner = saga.run(store, faults=FaultPlan().transient("ChargePayment"))
    inst = runner.instance("o-1")
    assert inst.status == "compensated" and "timed out after 4 attempts" in inst.failure  # 1+2+4 = 7 <= 10 < 15


def test_a_command_that_times_out_costs_the_step_its_timeout_and_compensates():
    store = es.InMemoryEventStore()
    bus = shop(store)
    runner = OrderFulfillment(step_timeout=5).run(store, faults=FaultPlan().timeout("ShipOrder"))
    inst = runner.instance("o-1")
    assert inst.status == "compensated" and "timed out" in inst.failure
    assert runner.clock.now() == pytest.approx(5.0)
    assert bus.repository(Payment).load("o-1").status == "refunded"


# ---------------------------------------------------------------------- dead letters
def test_a_compensation_that_keeps_failing_is_dead_lettered_then_retried_by_an_operator():
    store = es.InMemoryEventStore()
    bus = shop(store)
    plan = FaultPlan().permanent("ChargePayment").transient("ReleaseInventory", when=lambda c: c.sku == "sku-1")
    runner = OrderFulfillment().run(store, faults=plan)
    inst = runner.instance("o-1")
    assert inst.status == "dead-lettered"
    dead = runner.dead_letters()
    assert dead.select("instance_id", "command_type", "outcome").rows() == [("o-1", "ReleaseInventory", "exhausted")]
    attempts = inst.history.filter(pl.col("command_type") == "ReleaseInventory")
    assert attempts.filter(pl.col("outcome") == "transient").height == 6  # compensation_retry attempts
    # The compensations before it were done: sku-2 (newest) released, sku-1 still held.
    assert bus.repository(Inventory).load("sku-2").reserved == 0
    assert bus.repository(Inventory).load("sku-1").reserved == 1

    runner.faults = None
    assert runner.retry_dead_letters() == 1
    assert runner.instance("o-1").status == "compensated"
    assert runner.dead_letters().height == 0
    assert bus.repository(Inventory).load("sku-1").reserved == 0


def test_dead_letters_survive_a_restart_on_the_parquet_store(tmp_path):
    store = es.ParquetEventStore(tmp_path / "s")
    shop(store)
    plan = FaultPlan().permanent("ChargePayment").permanent("CancelOrder")
    OrderFulfillment().run(store, faults=plan)
    again = SagaRunner(OrderFulfillment(), store)
    assert again.dead_letters()["command_type"].to_list() == ["CancelOrder"]
    assert again.retry_dead_letters() == 1
    assert OrderFulfillment().run(store).instance("o-1").status == "compensated"
    store.close()


# ---------------------------------------------------------------------- display
def test_instance_and_runner_displays_are_compact_and_escaped():
    store = es.InMemoryEventStore()
    bus = order_domain_bus(store)
    bus.dispatch(AddStock("sku-1", 5))
    bus.dispatch(PlaceOrder("<b>x</b>", "c"))
    bus.dispatch(AddItem("<b>x</b>", "sku-1", 1, 100))
    runner = OrderFulfillment().run(store)
    page = runner.instance("<b>x</b>")._repr_html_()
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "completed" in runner._repr_html_()
    assert runner.to_pandas().shape[0] == 1


# ---------------------------------------------------------------------- invariants
def _check_outcomes(store, runner, n):
    bus = order_domain_bus(store)
    frame = store.to_polars()
    assert frame["position"].to_list() == list(range(1, store.head_position + 1))  # nothing lost
    assert sorted(runner.instances()["instance_id"].to_list()) == sorted(f"o-{i}" for i in range(1, n + 1))
    stock = {s: bus.repository(Inventory).load(s) for s in ("sku-1", "sku-2")}
    for oid, status in runner.instances().select("instance_id", "status").iter_rows():
        assert status in ("completed", "compensated"), (oid, status)
        order = bus.repository(Order).load(oid)
        pay = bus.repository(Payment).load(oid) if bus.repository(Payment).exists(oid) else Payment(oid)
        held = {s: inv.reservations.get(oid, 0) for s, inv in stock.items()}
        if status == "completed":
            assert order.status == "shipped" and held == {"sku-1": 1, "sku-2": 2}
            assert pay.charged == 300 and pay.refunded == 0
        else:
            assert order.status == "cancelled" and held == {"sku-1": 0, "sku-2": 0}
            assert pay.charged == pay.refunded
    shipped = frame.filter(pl.col("event_type") == "OrderShipped")
    assert shipped["stream_id"].n_unique() == shipped.height


rates = st.floats(0.0, 0.3)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), transient=rates, permanent=st.floats(0.0, 0.15),
       timeout=st.floats(0.0, 0.15), duplicate=st.floats(0.0, 0.5))  # fmt: skip
def test_with_keys_on_every_side_effect_happens_once_and_every_instance_completes_or_compensates(
    seed, transient, permanent, timeout, duplicate
):
    n = 5
    store = es.InMemoryEventStore()
    shop(store, n)
    plan = FaultPlan.random(seed=seed, transient=transient, permanent=permanent, timeout=timeout, duplicate=duplicate)
    runner = OrderFulfillment().run(store, faults=plan)
    runner.faults = None  # the operator fixes the cause, then retries what was dead-lettered
    runner.retry_dead_letters()
    assert duplicate_side_effects(store).height == 0
    _check_outcomes(store, runner, n)
    # Retries, duplicates and compensations keep every order's causal chain whole.
    for corr in runner.instances()["correlation_id"].to_list():
        assert trace(store, corr).ok


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), duplicate=st.floats(0.05, 0.6))
def test_with_keys_off_redeliveries_become_duplicate_side_effects_and_are_counted(seed, duplicate):
    store = es.InMemoryEventStore()
    shop(store, 5)
    plan = FaultPlan.random(seed=seed, duplicate=duplicate, permanent=0.1)
    runner = OrderFulfillment().run(store, faults=plan, idempotency="off")
    log = runner.faults.to_polars().filter(pl.col("kind") == "duplicate")
    # Of the order domain's commands only these are accepted a second time.
    repeatable = log.filter(pl.col("command_type").is_in(["ReserveInventory", "FailOrderPayment"])).height
    dups = duplicate_side_effects(store)
    assert int(dups["duplicates"].sum() or 0) == repeatable


def test_with_keys_off_every_redelivered_reservation_holds_stock_twice():
    store = es.InMemoryEventStore()
    bus = shop(store, 3)
    OrderFulfillment().run(store, faults=FaultPlan().duplicate("ReserveInventory"), idempotency="off")
    assert duplicate_side_effects(store)["duplicates"].sum() == 6
    assert bus.repository(Inventory).load("sku-2").reserved == 2 * 3 * 2
    store2 = es.InMemoryEventStore()
    bus2 = shop(store2, 3)
    OrderFulfillment().run(store2, faults=FaultPlan().duplicate("ReserveInventory"))
    assert duplicate_side_effects(store2).height == 0
    assert bus2.repository(Inventory).load("sku-2").reserved == 3 * 2


def test_a_bug_in_a_step_dead_letters_its_instance_loudly_and_the_operator_can_resume_it():
    store = es.InMemoryEventStore()
    bus = shop(store, 2)
    broken = {"on": True}

    def ship(s):
        if broken["on"] and s["order_id"] == "o-1":
            raise RuntimeError("label printer on fire")
        return ShipOrder(s["order_id"])

    saga = Saga("Ship", starts_on="PaymentReceived", key=lambda e: e.data["order_id"],
                steps=[Step("ship", ship)], bus=order_domain_bus)  # fmt: skip
    runner = SagaRunner(saga, store)
    bus.dispatch(PayOrder("o-1", 300))
    bus.dispatch(PayOrder("o-2", 300))
    with pytest.raises(RuntimeError, match="label printer on fire"):
        runner.catch_up()
    assert runner.instance("o-1").status == "dead-lettered"
    assert runner.dead_letters()["error"].to_list() == ["RuntimeError: label printer on fire"]
    runner.catch_up()  # it moved past the event: o-2 goes on
    assert runner.instance("o-2").status == "completed"
    broken["on"] = False
    assert runner.retry_dead_letters() == 1
    assert bus.repository(Order).load("o-1").status == "shipped"


def test_a_bug_before_an_instance_exists_does_not_skip_the_event():
    store = es.InMemoryEventStore()
    shop(store)
    calls = []

    def start(event, bus):
        calls.append(event.position)
        if len(calls) == 1:
            raise KeyError("missing field")
        return {"order_id": event.data["order_id"]}

    saga = Saga("S", starts_on="OrderPlaced", key=lambda e: e.data["order_id"], start=start,
                steps=[Step("ship", lambda s: None)], bus=order_domain_bus)  # fmt: skip
    runner = SagaRunner(saga, store)
    with pytest.raises(KeyError):
        runner.catch_up()
    runner.catch_up()
    assert calls[0] == calls[1] and runner.instance("o-1").status == "completed"
