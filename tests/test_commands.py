"""Commands and the command bus: routing, metadata threading, rejection, retries, middleware."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import esnotebook as es
from esnotebook.commands import (
    AggregateExistsError,
    Command,
    CommandBus,
    CommandResult,
    InMemoryIdempotency,
)
from esnotebook.errors import ConcurrencyError, DomainException
from esnotebook.examples import (
    AddItem,
    AddStock,
    Inventory,
    Order,
    OrderRuleViolated,
    PayOrder,
    PlaceOrder,
    ReserveInventory,
    order_domain_bus,
)


@dataclass(frozen=True, slots=True)
class Touch(Command):
    order_id: str


def test_a_command_starts_its_own_chain_unless_caused_by_something():
    cmd = PlaceOrder("o-1", "c-1")
    assert cmd.correlation_id == cmd.command_id and cmd.causation_id is None
    follow = AddItem("o-1", "s", 1, 1).caused_by(cmd)
    assert (follow.correlation_id, follow.causation_id) == (cmd.command_id, cmd.command_id)
    event = es.InMemoryEventStore().append("x-1", [es.NewEvent("Happened", {}, correlation_id="root")])[0]
    from_event = AddItem("o-1", "s", 1, 1).caused_by(event)
    assert (from_event.correlation_id, from_event.causation_id) == ("root", event.event_id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cmd.customer = "c-2"
    with pytest.raises(TypeError, match=r"'idempotency_key' must be a non-empty str or None \(got ''\)"):
        PlaceOrder("o-1", "c-1", idempotency_key="")
    with pytest.raises(TypeError, match="needs a RecordedEvent or a Command"):
        cmd.caused_by("nope")


def test_events_carry_the_commands_correlation_and_causation(store):
    bus = order_domain_bus(store)
    place = PlaceOrder("o-1", "c-1")
    add = AddItem("o-1", "sku-1", 2, 250).caused_by(place)
    results = [bus.dispatch(place), bus.dispatch(add)]
    events = store.read_stream("order-o-1")
    assert [e.causation_id for e in events] == [place.command_id, add.command_id]
    assert {e.correlation_id for e in events} == {place.command_id}
    assert [e.metadata["command_type"] for e in events] == ["PlaceOrder", "AddItem"]
    assert [r.events[0].event_id for r in results] == [e.event_id for e in events]
    assert results[1].to_polars()["causation_id"].to_list() == [add.command_id]


def test_a_rejected_command_stores_nothing(store):
    bus = order_domain_bus(store)
    bus.dispatch(PlaceOrder("o-1", "c-1"))
    with pytest.raises(OrderRuleViolated, match="order 'o-1': an order with no items cannot be paid"):
        bus.dispatch(PayOrder("o-1", 0))
    result = bus.dispatch(PayOrder("o-1", 0), on_reject="return")
    assert (result.status, result.ok, result.events) == ("rejected", False, ())
    assert isinstance(result.error, OrderRuleViolated)
    assert "rejected: order &#x27;o-1&#x27;" in result._repr_html_()
    assert len(store) == 1
    with pytest.raises(AggregateExistsError, match="Order 'o-1' already exists"):
        bus.dispatch(PlaceOrder("o-1", "c-2"))
    assert len(store) == 1


def test_routing_errors_name_what_is_missing(store):
    bus = CommandBus(store)
    with pytest.raises(LookupError, match=r"no handler registered for Touch \(registered: none\)"):
        bus.dispatch(Touch("o-1"))
    bus.register(Touch, lambda cmd, uow: None)
    with pytest.raises(ValueError, match="Touch already has a handler"):
        bus.register(Touch, lambda cmd, uow: None)
    with pytest.raises(TypeError, match="must be a Command subclass"):
        bus.register(dict, lambda cmd, uow: None)
    with pytest.raises(TypeError, match="dispatch needs a Command"):
        bus.dispatch("Touch")
    with pytest.raises(ValueError, match=r"'retries' must be an int >= 0 \(got -1\)"):
        CommandBus(store, retries=-1)
    with pytest.raises(ValueError, match="'on_reject' must be 'raise' or 'return'"):
        bus.dispatch(Touch("o-1"), on_reject="ignore")
    assert bus.dispatch(Touch("o-1")).status == "ok"  # a handler that changes nothing


def racing_bus(store, races: int, retries: int = 3):
    """A bus whose handler loses the race ``races`` times: another writer appends meanwhile."""
    bus = CommandBus(store, retries=retries)
    calls = []

    @bus.handles(AddStock)
    def add(cmd, uow):
        stock = uow.load_or_new(Inventory, cmd.sku)
        calls.append(stock.version)
        if len(calls) <= races:
            rival = Inventory.from_events(cmd.sku, store.read_stream(stock.stream_id))
            rival.add_stock(100)
            store.append(stock.stream_id, [es.NewEvent(p.type, p.data) for p in rival.pending_events])
        stock.add_stock(cmd.quantity)

    return bus, calls


def test_a_lost_race_is_retried_after_reloading(store):
    bus, calls = racing_bus(store, races=2)
    result = bus.dispatch(AddStock("sku-1", 1))
    assert result.attempts == 3 and calls == [0, 1, 2]
    assert Inventory.from_events("sku-1", store.read_stream("inventory-sku-1")).on_hand == 201


def test_retries_are_bounded_and_the_conflict_propagates(store):
    bus, calls = racing_bus(store, races=10, retries=2)
    with pytest.raises(ConcurrencyError):
        bus.dispatch(AddStock("sku-1", 1))
    assert len(calls) == 3
    # Only the rival's events are stored: none of the command's.
    assert [e.data["quantity"] for e in store.read_stream("inventory-sku-1")] == [100, 100, 100]


def test_a_command_may_change_only_one_aggregate(store):
    bus = CommandBus(store)

    @bus.handles(Touch)
    def both(cmd, uow):
        uow.new(Order, cmd.order_id).place("c")
        uow.load_or_new(Inventory, "sku-1").add_stock(1)

    with pytest.raises(RuntimeError, match="changed 2 aggregates .*order-o-1, inventory-sku-1.*at most one"):
        bus.dispatch(Touch("o-1"))
    assert len(store) == 0


def test_middleware_wraps_handling_outermost_first_and_can_refuse(store):
    seen = []

    def outer(cmd, next):
        seen.append("outer")
        return next(cmd)

    def fault(cmd, next):
        seen.append("fault")
        if cmd.order_id == "boom":
            raise TimeoutError("injected")
        return next(cmd)

    bus = order_domain_bus(store, middleware=[outer, fault])
    bus.dispatch(PlaceOrder("o-1", "c-1"))
    with pytest.raises(TimeoutError, match="injected"):
        bus.dispatch(PlaceOrder("boom", "c-1"))
    assert seen == ["outer", "fault", "outer", "fault"]
    assert store.streams() == ["order-o-1"]


def test_idempotency_key_seen_before_returns_the_first_result(store):
    keys = InMemoryIdempotency()
    bus = order_domain_bus(store, middleware=[keys])
    bus.dispatch(AddStock("sku-1", 5))
    first = bus.dispatch(ReserveInventory("sku-1", "o-1", 2, idempotency_key="o-1/reserve"))
    again = bus.dispatch(ReserveInventory("sku-1", "o-1", 2, idempotency_key="o-1/reserve"))
    assert (again.status, again.events, again.ok) == ("duplicate", first.events, True)
    assert bus.repository(Inventory).load("sku-1").reserved == 2
    assert "o-1/reserve" in keys and len(keys) == 1
    assert first.events[0].metadata["idempotency_key"] == "o-1/reserve"
    with pytest.raises(ValueError, match="first used by ReserveInventory, now by AddStock"):
        bus.dispatch(AddStock("sku-1", 5, idempotency_key="o-1/reserve"))


def test_a_rejected_command_is_remembered_and_rejected_again(store):
    bus = order_domain_bus(store, middleware=[InMemoryIdempotency()])
    cmd = ReserveInventory("sku-1", "o-1", 2, idempotency_key="k")
    with pytest.raises(DomainException, match="only 0 available"):
        bus.dispatch(cmd)
    bus.dispatch(AddStock("sku-1", 5))
    again = bus.dispatch(cmd, on_reject="return")
    assert again.status == "duplicate" and not again.ok and len(store) == 1


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(1, 3)), min_size=1, max_size=12))
@settings(max_examples=40, deadline=None)
def test_redelivered_commands_with_keys_change_nothing(deliveries):
    """Each logical command (key) delivered 1..3 times has exactly the effect of one delivery."""
    store = es.InMemoryEventStore()
    bus = order_domain_bus(store, middleware=[InMemoryIdempotency()])
    once = order_domain_bus(es.InMemoryEventStore())
    for key, times in deliveries:
        cmd = AddStock(f"sku-{key % 2}", key + 1, idempotency_key=f"k-{key}")
        for _ in range(times):
            bus.dispatch(cmd)
    for key in dict.fromkeys(k for k, _ in deliveries):
        once.dispatch(AddStock(f"sku-{key % 2}", key + 1))
    assert len(store) == len(once.store)
    for sku in ("sku-0", "sku-1"):
        assert store.stream_version(f"inventory-{sku}") == once.store.stream_version(f"inventory-{sku}")


def test_result_views():
    result = CommandResult(Touch("o-1"), "ok")
    assert result.to_polars().height == 0 and len(result.to_pandas()) == 0
    assert "Touch" in result._repr_html_()


def test_a_handler_that_asks_twice_gets_the_same_aggregate(store):
    bus = CommandBus(store)

    @bus.handles(AddStock)
    def add_twice(cmd, uow):
        uow.load_or_new(Inventory, cmd.sku).add_stock(cmd.quantity)
        uow.load_or_new(Inventory, cmd.sku).add_stock(cmd.quantity)

    result = bus.dispatch(AddStock("sku-1", 2))
    assert [e.version for e in result.events] == [1, 2]
    assert bus.repository(Inventory).load("sku-1").on_hand == 4


# ---------------------------------------------------------------------- kept aggregates
SKUS = ["sku-1", "sku-2"]
BUS_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("stock"), st.sampled_from(SKUS), st.integers(1, 5)),
        st.tuples(st.just("reserve"), st.sampled_from(SKUS), st.integers(1, 6)),
        st.tuples(st.just("release"), st.sampled_from(SKUS), st.integers(1, 3)),
        st.tuples(st.just("rival"), st.sampled_from(SKUS), st.integers(1, 3)),
    ),
    max_size=30,
)


def _run(ops, cache_size):
    from esnotebook.examples import ReleaseInventory

    store = es.InMemoryEventStore()
    bus = order_domain_bus(store, cache_size=cache_size)
    outcomes = []
    for i, (kind, sku, n) in enumerate(ops):
        if kind == "rival":
            # Another writer, outside this bus, appends to the stream between commands.
            rival = Inventory.from_events(sku, store.read_stream(f"inventory-{sku}"))
            rival.add_stock(n)
            store.append(rival.stream_id, [es.NewEvent(p.type, p.data) for p in rival.pending_events])
            outcomes.append(("rival",))
            continue
        if kind == "stock":
            cmd = AddStock(sku, n)
        elif kind == "reserve":
            cmd = ReserveInventory(sku, f"o-{i % 3}", n)
        else:
            cmd = ReleaseInventory(sku, f"o-{i % 3}", n)
        r = bus.dispatch(cmd, on_reject="return")
        outcomes.append((r.status, r.attempts, str(r.error), [(e.event_type, e.version, e.data) for e in r.events]))
        for sku_ in SKUS:
            if store.stream_version(f"inventory-{sku_}"):
                fresh = bus.repository(Inventory).load(sku_)
                kept = bus._cache.get((Inventory, sku_))
                assert kept is None or kept == fresh or kept.version < fresh.version
    return outcomes, [(e.stream_id, e.version, e.event_type, e.data) for e in store.read_all()]


@given(BUS_OPS)
@settings(max_examples=40, deadline=None)
def test_kept_aggregates_give_exactly_what_reloading_every_time_gives(ops):
    """The bus keeps aggregates between commands only as an optimisation: with rejections and
    a rival writer appending in between, every result and every stored event are the same as
    with no aggregate kept, and a kept aggregate is never ahead of or different from a reload."""
    assert _run(ops, cache_size=1024) == _run(ops, cache_size=0)


def test_a_rejected_commands_aggregate_is_not_kept(store):
    """A rejection (or an error) discards the aggregate the command held; the next command
    reloads it from the store."""
    bus = order_domain_bus(store)
    bus.dispatch(AddStock("sku-1", 2))
    assert (Inventory, "sku-1") in bus._cache
    assert bus.dispatch(ReserveInventory("sku-1", "o-1", 9), on_reject="return").status == "rejected"
    assert (Inventory, "sku-1") not in bus._cache
    assert bus.dispatch(ReserveInventory("sku-1", "o-1", 2)).events[0].version == 2


def test_an_aggregate_a_handler_returns_is_not_kept():
    """The caller may hold on to a returned aggregate: the bus must not change it later."""
    store = es.InMemoryEventStore()
    bus = CommandBus(store)

    @bus.handles(AddStock)
    def add(cmd, uow):
        stock = uow.load_or_new(Inventory, cmd.sku)
        stock.add_stock(cmd.quantity)
        return stock

    first = bus.dispatch(AddStock("sku-1", 2)).value
    bus.dispatch(AddStock("sku-1", 3))
    assert (first.on_hand, first.version) == (2, 1)


def test_cache_size_is_checked_and_zero_keeps_nothing():
    with pytest.raises(ValueError, match=r"'cache_size' must be an int >= 0 \(got -1\)"):
        CommandBus(es.InMemoryEventStore(), cache_size=-1)
    bus = order_domain_bus(es.InMemoryEventStore(), cache_size=0)
    bus.dispatch(AddStock("sku-1", 2))
    assert not bus._cache


@dataclass(frozen=True, slots=True)
class Checked(Command):
    """A command with a check of its own: copies must still go through __init__."""

    n: int

    def __post_init__(self) -> None:
        Command.__post_init__(self)
        if self.n < 0:
            raise ValueError(f"'n' must be >= 0 (got {self.n})")


@given(
    st.sampled_from(["k-1", "saga:o-1:do:reserve:0"]),
    st.sampled_from(["corr-1", "c"]),
    st.sampled_from([None, "cause-1"]),
)
@settings(max_examples=20, deadline=None)
def test_restamping_a_command_equals_dataclasses_replace(key, corr, cause):
    """The saga's fast copy of a command with new ids is the same command replace() makes,
    for plain commands and for commands with a __post_init__ of their own."""
    from esnotebook.sagas._commands import restamp as _restamp

    for cmd in (AddItem("o-1", "sku-1", 2, 250), PlaceOrder("o-2", "c-2").caused_by(Touch("x")), Checked(3)):
        fast = _restamp(cmd, idempotency_key=key, correlation_id=corr, causation_id=cause)
        slow = dataclasses.replace(cmd, idempotency_key=key, correlation_id=corr, causation_id=cause)
        assert fast == slow and type(fast) is type(cmd) and fast.command_id == cmd.command_id


def test_restamping_refuses_bad_ids_like_the_constructor():
    from esnotebook.sagas._commands import restamp as _restamp

    with pytest.raises(TypeError, match=r"AddItem: 'idempotency_key' must be a non-empty str or None \(got ''\)"):
        _restamp(AddItem("o-1", "s", 1, 1), idempotency_key="", correlation_id="c", causation_id=None)
    with pytest.raises(TypeError, match=r"'causation_id' must be a non-empty str or None \(got 7\)"):
        _restamp(AddItem("o-1", "s", 1, 1), idempotency_key="k", correlation_id="c", causation_id=7)


def test_reading_through_the_bus_shares_the_kept_aggregate_and_stays_current(store):
    """What a saga's start reads is the stored state, and the next command finds it loaded."""
    bus = order_domain_bus(store)
    bus.dispatch(PlaceOrder("o-1", "c-1"))
    bus.clear_cache()
    store.append("order-o-1", [es.NewEvent("ItemAdded", {"order_id": "o-1", "sku": "s", "quantity": 2, "price": 5})])
    order = bus._read(Order, "o-1")
    assert (order.version, order.total) == (2, 10) and order == bus.repository(Order).load("o-1")
    assert bus._cache[(Order, "o-1")] is order
    assert bus.dispatch(PayOrder("o-1", 10)).events[0].version == 3
    with pytest.raises(es.EventStoreError, match="not found"):
        bus._read(Order, "o-404")


def test_a_kept_aggregate_catches_up_with_events_another_writer_appended(store):
    """Events appended to a kept aggregate's stream by someone else are applied before the
    next command runs: it decides on the stored state, first time, with no conflict."""
    bus = order_domain_bus(store)
    bus.dispatch(AddStock("sku-1", 1))
    store.append("inventory-sku-1", [es.NewEvent("InventoryAdded", {"sku": "sku-1", "quantity": 4})])
    result = bus.dispatch(ReserveInventory("sku-1", "o-1", 5))
    assert (result.attempts, result.events[0].version) == (1, 3)
    assert bus._cache[(Inventory, "sku-1")] == bus.repository(Inventory).load("sku-1")
