"""Seeded fault plans: what each kind does, reproducibility, limits, validation."""

from __future__ import annotations

import pytest

import esnotebook as es
from esnotebook.examples import AddStock, Inventory, ReserveInventory, order_domain_bus
from esnotebook.faults import CommandTimeout, Fault, FaultPlan, PermanentFault, TransientFault


def bus_with(plan, store=None):
    store = store or es.InMemoryEventStore()
    inj = plan.injector()
    return order_domain_bus(store, middleware=[inj]), inj, store


def test_transient_raises_and_stores_nothing_then_lets_the_command_through_after_times():
    bus, inj, store = bus_with(FaultPlan().transient("AddStock", times=2))
    for _ in range(2):
        with pytest.raises(TransientFault, match="AddStock: injected transient fault"):
            bus.dispatch(AddStock("sku-1", 5))
    assert len(store) == 0
    assert bus.dispatch(AddStock("sku-1", 5)).status == "ok"
    assert inj.counts()["transient"] == 2


def test_permanent_rejects_with_a_domain_exception_and_stores_nothing():
    bus, _, store = bus_with(FaultPlan().permanent("AddStock", reason="warehouse closed"))
    result = bus.dispatch(AddStock("sku-1", 5), on_reject="return")
    assert result.status == "rejected" and isinstance(result.error, PermanentFault)
    assert "warehouse closed" in str(result.error) and len(store) == 0
    with pytest.raises(es.DomainException):
        bus.dispatch(AddStock("sku-1", 5))


def test_timeout_loses_the_command():
    bus, _, store = bus_with(FaultPlan().timeout())
    with pytest.raises(CommandTimeout):
        bus.dispatch(AddStock("sku-1", 5))
    assert len(store) == 0


def test_duplicate_delivers_twice_and_returns_the_first_result():
    bus, _, store = bus_with(FaultPlan().duplicate("AddStock"))
    result = bus.dispatch(AddStock("sku-1", 5))
    assert [e.position for e in result.events] == [1] and len(store) == 2
    assert bus.repository(Inventory).load("sku-1").on_hand == 10


def test_a_predicate_chooses_which_commands_fail():
    plan = FaultPlan().permanent("ReserveInventory", when=lambda c: c.order_id == "o-2")
    bus, _, _ = bus_with(plan)
    bus.dispatch(AddStock("sku-1", 5))
    assert bus.dispatch(ReserveInventory("sku-1", "o-1", 1), on_reject="return").status == "ok"
    assert bus.dispatch(ReserveInventory("sku-1", "o-2", 1), on_reject="return").status == "rejected"


def _run(plan, n=300):
    bus, inj, _ = bus_with(plan)
    outcomes = []
    for i in range(n):
        try:
            outcomes.append(bus.dispatch(AddStock(f"sku-{i}", 1), on_reject="return").status)
        except (TransientFault, CommandTimeout) as exc:
            outcomes.append(type(exc).__name__)
    return outcomes, inj


def test_the_same_seed_gives_the_same_faults_and_another_seed_others():
    plan = FaultPlan.random(seed=11, transient=0.2, permanent=0.1, timeout=0.1, duplicate=0.1)
    a, _ = _run(plan)
    b, _ = _run(plan)
    c, _ = _run(FaultPlan.random(seed=12, transient=0.2, permanent=0.1, timeout=0.1, duplicate=0.1))
    assert a == b and a != c


def test_random_rates_match_their_probability():
    """2,000 commands at p=0.25: the count lies within 5 standard deviations (±97)."""
    _, inj = _run(FaultPlan.random(seed=5, transient=0.25), n=2000)
    assert abs(inj.counts()["transient"] - 500) < 5 * (2000 * 0.25 * 0.75) ** 0.5


def test_an_inactive_injector_lets_everything_through_and_the_log_is_a_frame():
    bus, inj, store = bus_with(FaultPlan().timeout())
    inj.active = False
    bus.dispatch(AddStock("sku-1", 5))
    inj.active = True
    with pytest.raises(CommandTimeout):
        bus.dispatch(AddStock("sku-1", 5, idempotency_key="k"))
    assert inj.to_polars().select("command_type", "idempotency_key", "kind").rows() == [("AddStock", "k", "timeout")]
    assert "timeout 1" in inj._repr_html_() and len(store) == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Fault("flaky"), "'kind' must be one of transient, permanent, timeout, duplicate (got 'flaky')"),
        (lambda: Fault("transient", p=1.5), "'p' must be a probability in [0, 1] (got 1.5)"),
        (lambda: Fault("transient", times=0), "'times' must be an int >= 1 or None (got 0)"),
        (lambda: FaultPlan.random(transient=-0.1), "'transient' must be a probability in [0, 1] (got -0.1)"),
        (lambda: FaultPlan(faults=("x",)), "faults[0] must be a Fault (got str)"),
    ],
)
def test_a_bad_plan_is_refused_with_what_was_wrong(make, message):
    import re

    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        make()
