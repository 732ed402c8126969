"""Repository: load, load at a version, load as of a time, save with optimistic concurrency."""

from __future__ import annotations

import errno
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from esnotebook.errors import ConcurrencyError, EventStoreError
from esnotebook.examples import Inventory, Order
from esnotebook.repository import AggregateNotFoundError, Repository
from esnotebook.snapshots import ParquetSnapshotStore


def placed_order(orders, order_id="o-1", **save_kwargs):
    order = Order(order_id)
    order.place("c-1")
    order.add_item("sku-1", 2, 300)
    orders.save(order, **save_kwargs)
    return order


def test_save_then_load_gives_the_same_aggregate(store):
    orders = Repository(store, Order)
    order = placed_order(orders)
    assert order.pending_events == [] and order.committed_version == 2
    loaded = orders.load("o-1")
    assert loaded == order
    assert (loaded.total, loaded.version, store.stream_version("order-o-1")) == (600, 2, 2)


def test_save_stamps_correlation_causation_and_metadata(store):
    orders = Repository(store, Order)
    placed_order(orders, correlation_id="corr-1", causation_id="cmd-1", metadata={"user": "ann"})
    events = store.read_stream("order-o-1")
    assert {(e.correlation_id, e.causation_id) for e in events} == {("corr-1", "cmd-1")}
    assert events[0].metadata == {"user": "ann"}


def test_saving_nothing_writes_nothing(store):
    orders = Repository(store, Order)
    assert orders.save(Order("o-9")) == [] and len(store) == 0


def test_unknown_id_is_a_clear_not_found_error(store):
    orders = Repository(store, Order)
    with pytest.raises(AggregateNotFoundError, match=r"Order 'nope' not found.*stream 'order-nope'"):
        orders.load("nope")
    assert issubclass(AggregateNotFoundError, EventStoreError)
    assert not orders.exists("nope")


def test_load_at_a_version_rebuilds_the_past(store):
    orders = Repository(store, Order)
    order = placed_order(orders)
    order.pay(600)
    orders.save(order)
    assert orders.load("o-1", version=1).items == {}
    assert orders.load("o-1", version=2).status == "placed"
    assert orders.load("o-1", version=3).status == "paid"
    with pytest.raises(AggregateNotFoundError, match="has no version 4: the stream 'order-o-1' is at version 3"):
        orders.load("o-1", version=4)
    with pytest.raises(ValueError, match=r"'version' must be an int >= 1 \(got 0\)"):
        orders.load("o-1", version=0)


def test_load_as_of_a_time_uses_recorded_at(store_factory):
    t0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    ticks = iter([t0, t0 + timedelta(hours=1), t0 + timedelta(hours=2)])
    store = store_factory(clock=lambda: next(ticks))
    stock = Repository(store, Inventory)
    for _ in range(3):
        item = stock.load("sku-1") if stock.exists("sku-1") else Inventory("sku-1")
        item.add_stock(5)
        stock.save(item)
    assert stock.load("sku-1", as_of=t0).on_hand == 5
    assert stock.load("sku-1", as_of=t0 + timedelta(minutes=90)).on_hand == 10
    assert stock.load("sku-1", as_of=t0 + timedelta(days=1)).on_hand == 15
    with pytest.raises(AggregateNotFoundError, match="did not exist at 2026-03-01T11:00:00"):
        stock.load("sku-1", as_of=t0 - timedelta(hours=1))
    with pytest.raises(ValueError, match="'as_of' must be a timezone-aware datetime"):
        stock.load("sku-1", as_of=datetime(2026, 3, 1))
    with pytest.raises(ValueError, match="not both"):
        stock.load("sku-1", as_of=t0, version=1)


def test_a_stale_save_raises_concurrency_error_and_writes_nothing(store):
    """Two writers loaded version 2; the second save loses, nothing of it is stored."""
    orders = Repository(store, Order)
    placed_order(orders)
    first, second = orders.load("o-1"), orders.load("o-1")
    first.add_item("sku-2", 1, 100)
    orders.save(first)
    second.add_item("sku-3", 1, 100)
    with pytest.raises(ConcurrencyError, match="expected version 2, but the stream is at version 3"):
        orders.save(second)
    assert [p.type for p in second.pending_events] == ["ItemAdded"]
    assert set(orders.load("o-1").items) == {"sku-1", "sku-2"}
    assert len(store) == 3


def test_creating_an_existing_stream_is_a_conflict(store):
    orders = Repository(store, Order)
    placed_order(orders)
    twin = Order("o-1")
    twin.place("c-2")
    with pytest.raises(ConcurrencyError, match="expected no stream yet"):
        orders.save(twin)
    assert orders.load("o-1").customer == "c-1"


def test_wrong_arguments_are_refused_with_what_was_given(store):
    with pytest.raises(TypeError, match="subclass of esnotebook.Aggregate"):
        Repository(store, dict)
    with pytest.raises(ValueError, match=r"'snapshot_every' must be an int >= 1 or None \(got 0\)"):
        Repository(store, Order, snapshot_every=0)
    with pytest.raises(TypeError, match=r"saves Order aggregates \(got Inventory\)"):
        Repository(store, Order).save(Inventory("sku-1"))


def test_history_shows_the_state_after_every_event(store):
    orders = Repository(store, Order)
    placed_order(orders)
    frame = orders.history("o-1")
    assert frame.columns == ["version", "event_type", "recorded_at", "state"]
    assert frame["event_type"].to_list() == ["OrderPlaced", "ItemAdded"]
    assert '"items":{}' in frame["state"][0] and '"sku-1":{"quantity":2,"price":300}' in frame["state"][1]
    with pytest.raises(AggregateNotFoundError, match="'nope'"):
        orders.history("nope")



def test_a_snapshot_write_that_fails_warns_and_the_save_stands(store, tmp_path, monkeypatch):
    """The events are stored before the snapshot: a full disk there is a warning, not a failure."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if "snaps" in Path(dst).parts:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *args, **kwargs)

    snaps = ParquetSnapshotStore(tmp_path / "snaps")
    stock = Repository(store, Inventory, snapshots=snaps, snapshot_every=1)
    item = Inventory("sku-1")
    item.add_stock(3)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.warns(RuntimeWarning, match=r"Inventory 'sku-1': the snapshot at version 1 was not "
                      r"saved \(OSError: \[Errno 28\] No space left on device"):
        saved = stock.save(item)
    assert [e.version for e in saved] == [1] and item.pending_events == []
    assert snaps.latest("Inventory", "sku-1") is None and stock.load("sku-1").on_hand == 3
    monkeypatch.setattr(os, "replace", real)
    item.add_stock(1)
    stock.save(item)
    assert snaps.latest("Inventory", "sku-1").version == 2
