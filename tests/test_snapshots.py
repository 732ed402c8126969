"""Snapshots: taken when versions cross multiples of N, used on load, never trusted blindly."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import esnotebook as es
from esnotebook.errors import DomainException, StoreCorruptedError
from esnotebook.examples import Inventory, Order
from esnotebook.repository import Repository
from esnotebook.snapshots import InMemorySnapshotStore, ParquetSnapshotStore, SnapshotStore

# ---------------------------------------------------------------------- helpers
ORDER_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 3), st.integers(1, 4)),
        st.tuples(st.just("remove"), st.integers(0, 3), st.integers(1, 4)),
        st.tuples(st.sampled_from(["pay", "fail", "ship", "cancel"])),
    ),
    max_size=25,
)
STOCK_OPS = st.lists(
    st.tuples(st.sampled_from(["add", "reserve", "release"]), st.integers(0, 2), st.integers(1, 6)),
    max_size=30,
)


def run_order(order: Order, op: tuple) -> None:
    name = op[0]
    if name == "add":
        order.add_item(f"sku-{op[1]}", op[2], 100 * (op[1] + 1))
    elif name == "remove":
        order.remove_item(f"sku-{op[1]}", op[2])
    elif name == "pay":
        order.pay(order.total)
    elif name == "fail":
        order.fail_payment(order.total, "declined")
    elif name == "ship":
        order.ship()
    else:
        order.cancel("changed mind")


def run_stock(stock: Inventory, op: tuple) -> None:
    name, who, qty = op
    if name == "add":
        stock.add_stock(qty)
    elif name == "reserve":
        stock.reserve(f"o-{who}", qty)
    else:
        stock.release(f"o-{who}", qty)


def build(repo: Repository, id: str, ops: list, run, first=None, batch: int = 1) -> None:
    """Carry out ``ops`` (skipping rejected ones), saving every ``batch`` accepted ones."""
    aggregate = repo.aggregate_class(id)
    if first is not None:
        first(aggregate)
    for op in ops:
        try:
            run(aggregate, op)
        except DomainException:
            continue
        if len(aggregate.pending_events) >= batch:
            repo.save(aggregate)
    repo.save(aggregate)


def inventory_with_history(repo: Repository, n: int) -> None:
    build(repo, "sku-1", [("add", 0, 1)] * n, run_stock)


# ---------------------------------------------------------------------- the property
@given(
    kind=st.sampled_from(["order", "stock"]),
    order_ops=ORDER_OPS,
    stock_ops=STOCK_OPS,
    every=st.integers(1, 7),
    batch=st.integers(1, 4),
    keep=st.integers(1, 3),
)
@settings(max_examples=60, deadline=None)
def test_snapshot_plus_tail_equals_full_replay_at_every_version(kind, order_ops, stock_ops, every, batch, keep):
    store = es.InMemoryEventStore()
    if kind == "order":
        repo = Repository(store, Order, snapshots=InMemorySnapshotStore(keep=keep), snapshot_every=every)
        build(repo, "o-1", order_ops, run_order, first=lambda o: o.place("c-1"), batch=batch)
        id = "o-1"
    else:
        repo = Repository(store, Inventory, snapshots=InMemorySnapshotStore(keep=keep), snapshot_every=every)
        build(repo, "sku-1", stock_ops, run_stock, batch=batch)
        if not repo.exists("sku-1"):
            return
        id = "sku-1"
    last = store.stream_version(repo.aggregate_class.stream_id_for(id))
    for v in range(1, last + 1):
        assert repo.load(id, version=v) == repo.load(id, version=v, use_snapshots=False)
    assert repo.load(id) == repo.load(id, use_snapshots=False)
    kept = repo.snapshots.to_polars()
    assert kept.height <= keep
    assert all(v % every == 0 or batch > 1 for v in kept["version"])


# ---------------------------------------------------------------------- when and where
def test_snapshots_are_taken_when_a_save_crosses_a_multiple_of_n(store):
    repo = Repository(store, Inventory, snapshot_every=3, snapshots=InMemorySnapshotStore(keep=10))
    stock = Inventory("sku-1")
    for size in (2, 2, 1, 4, 1):  # versions after each save: 2, 4, 5, 9, 10
        for _ in range(size):
            stock.add_stock(1)
        repo.save(stock)
    assert repo.snapshots.to_polars()["version"].to_list() == [4, 9]


def test_the_default_snapshot_store_matches_the_event_store(store_factory):
    store = store_factory()
    repo = Repository(store, Inventory, snapshot_every=2)
    inventory_with_history(repo, 4)
    if store_factory.kind == "parquet":
        assert isinstance(repo.snapshots, ParquetSnapshotStore)
        assert repo.snapshots.path == store.path / "snapshots"
        files = list((store.path / "snapshots").rglob("*"))
        assert [len(f.name) for f in files if f.is_file()] == [len("0" * 32 + ".parquet")]
        # The folder stays an openable store and the event files are untouched.
        assert len(es.ParquetEventStore(store.path)) == 4
    else:
        assert isinstance(repo.snapshots, InMemorySnapshotStore)
    assert isinstance(repo.snapshots, SnapshotStore)
    assert repo.snapshots.to_polars()["version"].to_list() == [2, 4]


@pytest.fixture(params=["memory", "parquet"])
def snapshot_store(request, tmp_path):
    if request.param == "memory":
        return InMemorySnapshotStore(keep=2)
    return ParquetSnapshotStore(tmp_path / "snaps", keep=2)


def test_load_starts_from_the_snapshot(snapshot_store):
    """A snapshot's state is what load starts from (shown by planting a marked one)."""
    store = es.InMemoryEventStore()
    repo = Repository(store, Inventory, snapshots=snapshot_store, snapshot_every=5)
    inventory_with_history(repo, 7)
    snap = snapshot_store.latest("Inventory", "sku-1")
    assert snap.version == 5
    marked = dataclasses.replace(snap, state=snap.state.replace('"on_hand":5', '"on_hand":500'))
    snapshot_store.save(marked)
    assert repo.load("sku-1").on_hand == 502  # the marked state plus the two-event tail
    assert repo.load("sku-1", use_snapshots=False).on_hand == 7


def test_a_newer_schema_version_ignores_older_snapshots(snapshot_store, monkeypatch):
    store = es.InMemoryEventStore()
    repo = Repository(store, Inventory, snapshots=snapshot_store, snapshot_every=5)
    inventory_with_history(repo, 5)
    snap = snapshot_store.latest("Inventory", "sku-1")
    snapshot_store.save(dataclasses.replace(snap, state=snap.state.replace('"on_hand":5', '"on_hand":500')))
    assert repo.load("sku-1").on_hand == 500
    monkeypatch.setattr(Inventory, "schema_version", 2)
    assert repo.load("sku-1").on_hand == 5  # full replay, not the old-schema state


def test_a_snapshot_that_does_not_match_the_stream_is_ignored(snapshot_store):
    """A snapshot whose last event id is not in the stream (store rebuilt) is never used."""
    store = es.InMemoryEventStore()
    repo = Repository(store, Inventory, snapshots=snapshot_store, snapshot_every=5)
    inventory_with_history(repo, 5)
    snap = snapshot_store.latest("Inventory", "sku-1")
    snapshot_store.save(dataclasses.replace(snap, last_event_id=es.events.new_id(), state='{"on_hand":999,"reserved":0,"reservations":{}}'))
    assert repo.load("sku-1").on_hand == 5
    later = datetime.now(timezone.utc) + timedelta(days=1)
    assert repo.load("sku-1", as_of=later).on_hand == 5


def test_keep_only_the_latest_k_per_aggregate(snapshot_store):
    store = es.InMemoryEventStore()
    repo = Repository(store, Inventory, snapshots=snapshot_store, snapshot_every=1)
    inventory_with_history(repo, 1)
    stock = repo.load("sku-1")
    for _ in range(4):
        stock.add_stock(1)
        repo.save(stock)
    frame = snapshot_store.to_polars()
    assert frame["version"].sort().to_list() == [4, 5]
    assert frame.columns[:3] == ["aggregate_type", "aggregate_id", "version"]
    assert snapshot_store.latest("Inventory", "sku-1", max_version=4).version == 4
    assert snapshot_store.latest("Inventory", "sku-1", max_version=3) is None


def test_delete_and_rebuild_lose_nothing(snapshot_store):
    store = es.InMemoryEventStore()
    repo = Repository(store, Inventory, snapshots=snapshot_store, snapshot_every=2)
    for sku in ("a", "b"):
        build(repo, sku, [("add", 0, 1)] * 3, run_stock)
    before = {sku: repo.load(sku) for sku in ("a", "b")}
    assert snapshot_store.delete("Inventory", "a") == 1
    assert snapshot_store.latest("Inventory", "a") is None
    assert repo.load("a") == before["a"]
    assert snapshot_store.delete() == 1
    assert repo.rebuild_snapshots() == 2
    assert sorted(snapshot_store.to_polars()["version"].to_list()) == [3, 3]
    assert {sku: repo.load(sku) for sku in ("a", "b")} == before


def test_parquet_snapshots_are_written_atomically_and_damage_is_named(tmp_path):
    snaps = ParquetSnapshotStore(tmp_path / "snaps")
    store = es.InMemoryEventStore()
    repo = Repository(store, Inventory, snapshots=snaps, snapshot_every=1)
    build(repo, "weird/id ü", [("add", 0, 1)] * 3, run_stock)
    files = [p for p in (tmp_path / "snaps").rglob("*") if p.is_file()]
    assert len(files) == 1 and re.fullmatch("[0-9a-f]{32}.parquet", files[0].name)  # no temporaries left
    assert snaps.latest("Inventory", "weird/id ü").version == 3
    files[0].write_bytes(b"not parquet")
    with pytest.raises(StoreCorruptedError, match="damaged snapshot file.*delete it"):
        snaps.latest("Inventory", "weird/id ü")
    assert snaps.delete("Inventory", "weird/id ü") == 0  # a damaged file still goes
    assert snaps.latest("Inventory", "weird/id ü") is None
    assert repo.load("weird/id ü").on_hand == 3


def test_bad_snapshot_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"'keep' must be an int >= 1 \(got 0\)"):
        InMemorySnapshotStore(keep=0)
    with pytest.raises(TypeError, match="needs a ParquetEventStore or a folder path"):
        ParquetSnapshotStore(42)
    repo = Repository(es.InMemoryEventStore(), Inventory)
    with pytest.raises(ValueError, match="no snapshot store"):
        repo.take_snapshot("sku-1")


def test_state_that_is_not_json_is_refused_by_name():
    class Tagged(Inventory):
        def add_stock(self, quantity):
            super().add_stock(quantity)
            self.tags = {"a"}

    repo = Repository(es.InMemoryEventStore(), Tagged, snapshot_every=1)
    t = Tagged("x")
    t.add_stock(1)
    with pytest.raises(TypeError, match="get_state\\(\\) must return JSON-compatible data"):
        repo.save(t)
    assert len(repo.store) == 0  # refused before the append: nothing to retry twice


def test_html_and_pandas_views(snapshot_store):
    repo = Repository(es.InMemoryEventStore(), Inventory, snapshots=snapshot_store, snapshot_every=1)
    inventory_with_history(repo, 2)
    assert "Inventory" in snapshot_store._repr_html_()
    assert len(snapshot_store.to_pandas()) == 2


def test_parquet_snapshots_survive_reopening_the_store(tmp_path):
    with es.ParquetEventStore(tmp_path / "shop") as store:
        inventory_with_history(Repository(store, Inventory, snapshot_every=2), 5)
    reopened = es.ParquetEventStore(tmp_path / "shop")
    repo = Repository(reopened, Inventory, snapshot_every=2)
    assert repo.snapshots.latest("Inventory", "sku-1").version == 4
    assert repo.load("sku-1") == repo.load("sku-1", use_snapshots=False)
    assert repo.load("sku-1").on_hand == 5


def test_files_named_by_the_quoted_id_still_load_and_move_to_the_fixed_name_on_save(tmp_path):
    """Folders written before fixed-length names keep working (they are renamed, not lost)."""
    snaps = ParquetSnapshotStore(tmp_path / "snaps")
    repo = Repository(es.InMemoryEventStore(), Inventory, snapshots=snaps, snapshot_every=1)
    build(repo, "sku/1", [("add", 0, 1)] * 2, run_stock)
    new = snaps._file("Inventory", "sku/1")
    old = new.with_name("sku%2F1.parquet")  # the name the previous layout used
    assert re.fullmatch("[0-9a-f]{32}.parquet", new.name)
    new.rename(old)
    assert snaps.latest("Inventory", "sku/1").version == 2 and len(snaps.to_polars()) == 2
    item = repo.load("sku/1")
    item.add_stock(1)
    repo.save(item)
    assert [f.name for f in old.parent.iterdir()] == [new.name]
    assert snaps.to_polars()["version"].to_list() == [2, 3]
    assert snaps.delete(aggregate_id="sku/1") == 2 and snaps.latest("Inventory", "sku/1") is None


def test_a_file_holding_another_aggregate_is_a_cache_miss(tmp_path):
    """The id is kept inside the file: a name collision can make a load slower, never wrong."""
    snaps = ParquetSnapshotStore(tmp_path / "snaps")
    repo = Repository(es.InMemoryEventStore(), Inventory, snapshots=snaps, snapshot_every=1)
    build(repo, "a", [("add", 0, 1)], run_stock)
    build(repo, "b", [("add", 0, 1)] * 3, run_stock)
    snaps._file("Inventory", "b").replace(snaps._file("Inventory", "a"))
    assert snaps.latest("Inventory", "a") is None
    assert repo.load("a").on_hand == 1


KILLED_SNAPSHOT_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    import esnotebook as es
    from esnotebook.examples import Inventory
    from esnotebook.repository import Repository

    store = es.ParquetEventStore(sys.argv[1])
    repo = Repository(store, Inventory, snapshot_every=1)
    real = os.replace
    def replace(src, dst, *args, **kwargs):
        if "snapshots" in str(dst):
            os.kill(os.getpid(), signal.SIGKILL)  # the temporary is written, not yet renamed
        return real(src, dst, *args, **kwargs)
    os.replace = replace
    item = Inventory("sku-1")
    item.add_stock(3)
    repo.save(item)
    """
)


def test_the_temporary_of_a_killed_snapshot_write_is_removed_once_stale(tmp_path):
    path = tmp_path / "shop"
    es.ParquetEventStore(path).close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.run([sys.executable, "-c", KILLED_SNAPSHOT_WRITE, str(path)], env=env, timeout=120)
    assert child.returncode == -signal.SIGKILL
    folder = path / "snapshots" / "Inventory"
    (orphan,) = folder.glob(".*.tmp")
    an_hour_ago = time.time() - 3601
    os.utime(orphan, (an_hour_ago, an_hour_ago))
    live = folder / f".{'b' * 32}.parquet.{'c' * 32}.tmp"  # as if another process were writing it
    live.write_bytes(b"half")
    with es.ParquetEventStore(path) as store:
        repo = Repository(store, Inventory, snapshot_every=1)
        item = repo.load("sku-1")
        item.add_stock(1)
        repo.save(item)
        assert repo.snapshots.latest("Inventory", "sku-1").version == 2
    assert sorted(folder.glob(".*.tmp")) == [live]
