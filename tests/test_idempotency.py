"""Durable idempotency keys: a duplicate returns the first result and stores nothing; keys
survive a restart and a crash between the append and the key file; retention; the switch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import esnotebook as es
from esnotebook.examples import AddStock, Inventory, ReserveInventory, order_domain_bus
from esnotebook.faults import FaultPlan
from esnotebook.idempotency import DurableIdempotency, duplicate_side_effects


def bus_with_keys(store, **kwargs):
    keys = DurableIdempotency(store, **kwargs)
    return order_domain_bus(store, middleware=[keys]), keys


def test_a_duplicate_returns_the_first_result_and_stores_nothing(store):
    bus, keys = bus_with_keys(store)
    first = bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1"))
    again = bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1"))
    assert (first.status, again.status) == ("ok", "duplicate")
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert len(store) == 1 and "k-1" in keys and len(keys) == 1


def test_a_rejection_is_remembered_and_returned_again(store):
    bus, _ = bus_with_keys(store)
    first = bus.dispatch(ReserveInventory("sku-1", "o-1", 3, idempotency_key="r"), on_reject="return")
    bus.dispatch(AddStock("sku-1", 5))
    again = bus.dispatch(ReserveInventory("sku-1", "o-1", 3, idempotency_key="r"), on_reject="return")
    assert first.status == "rejected" and again.status == "duplicate" and not again.ok
    assert bus.repository(Inventory).load("sku-1").reserved == 0


def test_a_key_reused_by_another_command_type_is_an_error(store):
    bus, _ = bus_with_keys(store)
    bus.dispatch(AddStock("sku-1", 5, idempotency_key="k"))
    with pytest.raises(ValueError, match="first used by AddStock, now by ReserveInventory"):
        bus.dispatch(ReserveInventory("sku-1", "o-1", 1, idempotency_key="k"))


def test_commands_without_a_key_are_never_deduplicated(store):
    bus, keys = bus_with_keys(store)
    bus.dispatch(AddStock("sku-1", 5))
    bus.dispatch(AddStock("sku-1", 5))
    assert len(store) == 2 and len(keys) == 0


def test_keys_survive_a_restart_beside_the_events(tmp_path):
    store = es.ParquetEventStore(tmp_path / "s")
    bus, _ = bus_with_keys(store)
    first = bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1"))
    bus.dispatch(ReserveInventory("sku-1", "o-1", 9, idempotency_key="k-2"), on_reject="return")
    store.close()
    assert list((tmp_path / "s" / "idempotency").glob("keys-*.parquet"))

    store = es.ParquetEventStore(tmp_path / "s")
    bus, _ = bus_with_keys(store)
    again = bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1"))
    assert again.status == "duplicate" and [e.position for e in again.events] == [e.position for e in first.events]
    rejected = bus.dispatch(ReserveInventory("sku-1", "o-1", 9, idempotency_key="k-2"), on_reject="return")
    assert rejected.status == "duplicate" and "only 5 available" in str(rejected.error)
    assert len(store) == 1
    store.close()


def test_a_crash_before_the_key_file_is_written_is_recovered_from_event_metadata(tmp_path):
    store = es.ParquetEventStore(tmp_path / "s")
    bus, _ = bus_with_keys(store)
    bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1"))
    bus.dispatch(AddStock("sku-1", 2, idempotency_key="k-2"))
    store.close()
    for f in (tmp_path / "s" / "idempotency").glob("keys-*.parquet"):
        f.unlink()  # as if the process died right after each append

    store = es.ParquetEventStore(tmp_path / "s")
    bus, keys = bus_with_keys(store)
    assert {"k-1", "k-2"} <= set(keys.to_polars()["idempotency_key"].to_list())
    assert bus.dispatch(AddStock("sku-1", 2, idempotency_key="k-2")).status == "duplicate"
    assert len(store) == 2
    store.close()


def test_retention_forgets_old_keys_and_max_keys_keeps_the_newest(tmp_path):
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = es.ParquetEventStore(tmp_path / "s")
    bus, _ = bus_with_keys(store, clock=lambda: now[0])
    for i in range(4):
        bus.dispatch(AddStock("sku-1", 1, idempotency_key=f"k-{i}"))
        now[0] += timedelta(hours=1)
    store.close()
    store = es.ParquetEventStore(tmp_path / "s")
    kept = DurableIdempotency(store, retention=timedelta(hours=2, minutes=30), clock=lambda: now[0])
    assert sorted(kept.to_polars()["idempotency_key"].to_list()) == ["k-2", "k-3"]
    newest = DurableIdempotency(store, max_keys=1, clock=lambda: now[0])
    assert newest.to_polars()["idempotency_key"].to_list() == ["k-3"]
    store.close()


def test_compact_merges_the_key_files_into_one(tmp_path):
    store = es.ParquetEventStore(tmp_path / "s")
    bus, keys = bus_with_keys(store)
    for i in range(5):
        bus.dispatch(AddStock("sku-1", 1, idempotency_key=f"k-{i}"))
    assert keys.compact() == 5
    files = list((tmp_path / "s" / "idempotency").iterdir())
    assert len(files) == 1 and files[0].suffix == ".parquet"
    assert len(DurableIdempotency(store)) == 5
    store.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "sometimes"}, "'mode' must be 'on' or 'off' (got 'sometimes')"),
        ({"retention": 5}, "'retention' must be a positive timedelta or None (got 5)"),
        ({"max_keys": 0}, "'max_keys' must be an int >= 1 or None (got 0)"),
    ],
)
def test_bad_settings_are_refused_with_what_was_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DurableIdempotency(es.InMemoryEventStore(), **kwargs)


def test_the_switch_off_lets_redeliveries_repeat_and_they_are_counted():
    store = es.InMemoryEventStore()
    keys = DurableIdempotency(store, mode="off")
    bus = order_domain_bus(store, middleware=[FaultPlan().duplicate("AddStock").injector(), keys])
    bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1"))
    bus.dispatch(AddStock("sku-2", 5, idempotency_key="k-2"))
    assert bus.repository(Inventory).load("sku-1").on_hand == 10
    dups = duplicate_side_effects(store)
    assert dups.select("idempotency_key", "appends", "duplicates").rows() == [("k-1", 2, 1), ("k-2", 2, 1)]


@settings(max_examples=40)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(1, 9)), min_size=1, max_size=25))
def test_a_retried_command_with_the_same_key_changes_nothing(requests):
    """Whatever the order of retries, the store holds exactly the first command of each key."""
    store = es.InMemoryEventStore()
    bus, _ = bus_with_keys(store)
    first: dict[int, int] = {}
    for key, quantity in requests:
        bus.dispatch(AddStock("sku-1", quantity, idempotency_key=f"k-{key}"))
        first.setdefault(key, quantity)
    assert len(store) == len(first)
    assert bus.repository(Inventory).load("sku-1").on_hand == sum(first.values())
    assert duplicate_side_effects(store).height == 0


KILLED_KEY_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    import esnotebook as es
    from esnotebook.examples import AddStock, order_domain_bus
    from esnotebook.idempotency import DurableIdempotency

    store = es.ParquetEventStore(sys.argv[1])
    bus = order_domain_bus(store, middleware=[DurableIdempotency(store)])
    real = os.replace
    def replace(src, dst, *args, **kwargs):
        if "idempotency" in str(dst):
            os.kill(os.getpid(), signal.SIGKILL)  # the key file is written, not yet renamed
        return real(src, dst, *args, **kwargs)
    os.replace = replace
    bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1"))
    """
)


def test_the_temporary_of_a_killed_key_write_is_removed_once_stale(tmp_path):
    path = tmp_path / "s"
    es.ParquetEventStore(path).close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.run([sys.executable, "-c", KILLED_KEY_WRITE, str(path)], env=env, timeout=120)
    assert child.returncode == -signal.SIGKILL
    folder = path / "idempotency"
    (orphan,) = folder.glob(".*.tmp")
    an_hour_ago = time.time() - 3601
    os.utime(orphan, (an_hour_ago, an_hour_ago))
    live = folder / f".keys-{'b' * 32}.parquet.{'c' * 32}.tmp"  # another process writing it now
    live.write_bytes(b"half")
    store = es.ParquetEventStore(path)
    bus, _ = bus_with_keys(store)  # recovers k-1 from the events and writes its key file
    assert bus.dispatch(AddStock("sku-1", 5, idempotency_key="k-1")).status == "duplicate"
    assert sorted(folder.glob(".*.tmp")) == [live]
    assert bus.repository(Inventory).load("sku-1").on_hand == 5
    store.close()
