"""run_sweep: a grid times seeds into one tidy frame, the same with any executor."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial

import polars as pl
import pytest

from esnotebook.sim.lag import simulate_lag
from esnotebook.sim.rebuild import rebuild_cost
from esnotebook.sim.sagas import simulate_sagas
from esnotebook.sim.sweep import run_sweep

small_lag = partial(simulate_lag, duration=30.0, keep_events=False)
GRID = {"arrival_rate": [20, 40], "service_rate": [50, 100]}


def per_order(*, n, seed):
    """A module-level sweep function returning a frame of several rows."""
    return pl.DataFrame({"i": list(range(n)), "value": [seed * 10 + i for i in range(n)]})


def test_grid_times_seeds_is_one_tidy_row_per_run():
    """Every grid point x seed appears once; parameters, seed, then the metrics; the values
    are those of calling the simulation directly."""
    frame = run_sweep(small_lag, GRID, seeds=3, progress=False)
    assert frame.height == 4 * 3
    assert frame.columns[:3] == ["arrival_rate", "service_rate", "seed"]
    assert {"mean_latency", "p99_time_lag", "utilisation"} <= set(frame.columns)
    row = frame.filter(
        (pl.col("arrival_rate") == 40) & (pl.col("service_rate") == 50) & (pl.col("seed") == 2)
    )
    direct = small_lag(arrival_rate=40, service_rate=50, seed=2)
    assert row["mean_latency"].item() == direct["mean_latency"]


def test_executors_give_the_same_frame_as_running_here():
    """Threads and processes (the function travels by pickle) change nothing in the result.

    Processes are spawned: forking a process that already runs polars' thread pool can
    deadlock the child."""
    here = run_sweep(small_lag, GRID, seeds=[1, 2], progress=False)
    with ThreadPoolExecutor(2) as pool:
        assert run_sweep(small_lag, GRID, seeds=[1, 2], executor=pool, progress=False).equals(here)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert run_sweep(small_lag, GRID, seeds=[1, 2], executor=pool, progress=False).equals(here)


def test_dask_local_cluster_gives_the_same_frame():
    """A Dask distributed Client is a valid executor (small in-process LocalCluster)."""
    distributed = pytest.importorskip("distributed")
    here = run_sweep(small_lag, GRID, seeds=2, progress=False)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert run_sweep(small_lag, GRID, seeds=2, executor=client, progress=False).equals(here)


def test_frames_become_several_rows_and_structured_parameters_their_repr():
    frame = run_sweep(per_order, [{"n": 2}, {"n": 3}], seeds=[5], progress=False)
    assert frame.height == 5 and frame["value"].to_list() == [50, 51, 50, 51, 52]
    sched = [(0, 10), (5, 30)]
    out = run_sweep(
        small_lag, {"arrival_rate": [sched], "service_rate": [100]}, seeds=1, progress=False
    )
    assert out["arrival_rate"].item() == repr(sched)


def test_scalar_results_become_a_value_column():
    out = run_sweep(lambda *, x, seed: x * seed, {"x": [1, 2]}, seeds=[3], progress=False)
    assert out["value"].to_list() == [3, 6]


@pytest.mark.parametrize(
    ("grid", "kwargs", "message"),
    [
        ({"x": []}, {}, "grid['x'] must be a non-empty list of values"),
        ("x", {}, "'grid' must be a dict"),
        ({"x": [1]}, {"seeds": 0}, "'seeds' must be an int >= 1"),
        ({"x": [1]}, {"executor": object()}, "'executor' must have a submit() method"),
    ],
)
def test_bad_sweeps_are_refused_before_running(grid, kwargs, message):
    calls = []
    with pytest.raises(ValueError) as info:
        run_sweep(lambda **kw: calls.append(kw) or 0, grid, progress=False, **kwargs)
    assert message in str(info.value)
    assert calls == []


def test_rebuild_cost_sweeps_over_the_parameters_it_reports_back():
    """rebuild_cost reports events, streams and interval among its metrics: each is one
    column, holding the grid's values, and the metrics are those of a direct call."""
    fn = partial(rebuild_cost, apply_cost=2e-6, snapshot_write_cost=1e-4)
    grid = {"events": [10_000, 100_000], "streams": [10, 100], "interval": [None, 20]}
    frame = run_sweep(fn, grid, progress=False)
    assert frame.height == 8
    assert frame.columns[:4] == ["events", "streams", "interval", "seed"]
    assert not [c for c in frame.columns if c.startswith("result_")]
    row = frame.filter((pl.col("events") == 100_000) & (pl.col("streams") == 10))
    direct = fn(100_000, streams=10, interval=20)
    assert row.filter(pl.col("interval") == 20)["load_time_s"].item() == direct["load_time_s"]
    assert row["interval"].null_count() == 1


def test_simulate_sagas_sweeps_over_instances():
    frame = run_sweep(
        partial(simulate_sagas, saga="chain", failure=0.2, progress=False),
        {"instances": [3, 5]},
        progress=False,
    )
    assert frame["instances"].to_list() == [3, 5]
    assert frame.columns.count("instances") == 1 and "result_instances" not in frame.columns


def test_a_result_that_differs_from_its_parameter_is_kept_beside_it():
    """Same name, different value in some run: the result goes to result_<name>; a result
    repeating the seed is the seed column."""
    frame = run_sweep(
        lambda *, x, seed: {"x": x * 10 if x > 1 else x, "seed": seed, "y": 0},
        {"x": [1, 2]},
        seeds=[4],
        progress=False,
    )
    assert frame.columns == ["x", "seed", "result_x", "y"]
    assert frame["x"].to_list() == [1, 2] and frame["result_x"].to_list() == [1, 20]
    assert frame["seed"].to_list() == [4, 4]


def test_a_clash_that_renaming_cannot_resolve_is_refused_by_name():
    with pytest.raises(ValueError, match=r"result column 'x' differs from the parameter 'x' "
                       r"\(got 2 for \{'x': 1, 'seed': 0\}\) and cannot be renamed 'result_x'"):
        run_sweep(lambda *, x, seed: {"x": 2, "result_x": 3}, {"x": [1]}, progress=False)
