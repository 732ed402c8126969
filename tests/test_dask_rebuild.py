"""Partition-parallel rebuild on Dask gives exactly the single-machine frame."""

from __future__ import annotations

import pytest
from test_readmodels import Tick, fill_store
from test_runner import HISTORY

import esnotebook as es
from esnotebook._dask import partitioned_rebuild
from esnotebook.readmodels import OrderSummaryFrame, RevenueByDaySku
from esnotebook.runner import ProjectionRunner

distributed = pytest.importorskip("distributed")

MORE = [
    (f"order-{i}", t, {**d, "order_id": str(i)})
    for i in range(3, 12)
    for _, t, d in HISTORY[::2]  # placed, item, removal, cancel: a valid history per order
]


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.mark.parametrize("kind", ["memory", "parquet"])
def test_dask_rebuild_equals_the_single_machine_frame(client, kind, tmp_path):
    """Streams hashed into buckets, one task each, concatenated: the exact frame of one fold
    (Parquet stores are read by the tasks; in-memory ones are split and shipped)."""
    if kind == "memory":
        store = es.InMemoryEventStore(clock=Tick())
    else:
        store = es.ParquetEventStore(tmp_path / "store", durable=False, clock=Tick())
    fill_store(store, HISTORY + MORE)
    p = OrderSummaryFrame()
    single = p.run(p.initial(), store.scan())
    for buckets in (1, 3, 7):
        assert partitioned_rebuild(store, p, client=client, buckets=buckets).equals(single)


def test_runner_rebuild_on_dask_commits_state_and_checkpoint(client, tmp_path):
    """runner.rebuild(client=...) commits the Dask result with the head as checkpoint."""
    store = es.ParquetEventStore(tmp_path / "store", durable=False, clock=Tick())
    fill_store(store, HISTORY + MORE)
    runner = ProjectionRunner(store, OrderSummaryFrame(), target="parquet")
    runner.rebuild(client=client, buckets=4)
    assert runner.checkpoint == store.head_position
    assert runner.state.equals(OrderSummaryFrame().rebuild(store.scan()))
    assert ProjectionRunner(store, OrderSummaryFrame(), target="parquet").state.equals(runner.state)


def test_a_projection_without_partition_key_is_refused(client):
    """A projection whose rows mix keys (no partition_key) cannot be split: a clear error."""
    store = es.InMemoryEventStore()
    fill_store(store, HISTORY)
    with pytest.raises(ValueError, match="declares no 'partition_key'"):
        partitioned_rebuild(store, RevenueByDaySku(), client=client)
    with pytest.raises(ValueError, match=r"'buckets' must be an int >= 1 \(got 0\)"):
        partitioned_rebuild(store, OrderSummaryFrame(), client=client, buckets=0)
