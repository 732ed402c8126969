"""Plots (esnotebook.plot): each returns labelled axes drawn from the data it is given,
refuses inputs it cannot draw with a clear message, and changes no global style."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import esnotebook as es
from esnotebook.datasets import generate_orders
from esnotebook.plot import (
    fluid_lag_path,
    plot_event_rate,
    plot_lag,
    plot_lag_theory,
    plot_runner_metrics,
)
from esnotebook.readmodels import OrderSummaryFrame
from esnotebook.report import new_figure
from esnotebook.runner import ProjectionRunner
from esnotebook.sim import simulate_lag


@pytest.fixture
def ax():
    return new_figure()[1]


@pytest.fixture(scope="module")
def orders_store():
    store = es.InMemoryEventStore()
    store.append_frame(generate_orders(150, seed=2))
    return store


# ---------------------------------------------------------------------- fluid model
def test_fluid_lag_grows_at_the_excess_rate_and_drains_at_the_spare_capacity():
    t = [0, 10, 20, 25, 30, 40]
    lag = fluid_lag_path([(0, 50), (10, 150), (20, 50)], capacity=100, times=t)
    # +50/s for 10 s, then -50/s until empty.
    assert lag.tolist() == [0.0, 0.0, 500.0, 250.0, 0.0, 0.0]


@given(
    rates=st.lists(st.floats(0, 1000), min_size=1, max_size=5),
    capacity=st.floats(1, 1000),
)
def test_fluid_lag_is_never_negative_and_zero_when_capacity_covers_every_rate(rates, capacity):
    schedule = [(10.0 * i, r) for i, r in enumerate(rates)]
    t = np.linspace(0, 10.0 * len(rates) + 20, 50)
    lag = fluid_lag_path(schedule, capacity=capacity, times=t)
    assert (lag >= 0).all()
    if max(rates) <= capacity:
        assert (lag == 0).all()
    # Never more than the producer could have sent beyond the capacity so far.
    assert (
        lag[-1]
        <= sum(max(r - capacity, 0) * 10 for r in rates[:-1])
        + max(rates[-1] - capacity, 0) * 30
        + 1e-6
    )


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"schedule": [(5, 10)], "capacity": 1, "times": [0]}, "'schedule' must start at time 0"),
    ({"schedule": 10, "capacity": 0, "times": [0]}, r"'capacity' must be a number > 0 \(got 0\)"),
    ({"schedule": 10, "capacity": 1, "times": [3, 1]}, "'times' must be sorted"),
])  # fmt: skip
def test_fluid_lag_refuses_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fluid_lag_path(**kwargs)


def test_the_lag_plot_with_theory_draws_the_fluid_line_over_the_simulation(ax):
    burst = [(0, 80), (20, 240), (30, 80)]
    result = simulate_lag(burst, service_rate=100, duration=80, seed=3, progress=False)
    plot_lag_theory(result, schedule=burst, ax=ax)
    fluid = [line for line in ax.get_lines() if line.get_label() == "fluid model"]
    assert len(fluid) == 1
    peak = fluid[0].get_ydata().max()
    assert peak == pytest.approx(1400, rel=0.02)  # (240 - 100) events/s for 10 s
    assert result["max_offset_lag"] == pytest.approx(peak, rel=0.3)
    assert ax.get_ylabel() == "offset lag (events)" and ax.right_ax.get_ylabel() == "time lag (s)"


# ---------------------------------------------------------------------- runner dashboard
def test_runner_dashboard_plots_one_point_per_step(orders_store):
    runner = ProjectionRunner(orders_store, OrderSummaryFrame(), batch_size=100)
    runner.catch_up()
    _, axes = new_figure(rows=2)
    plot_runner_metrics(runner, axes=axes)
    steps = runner.metrics.height
    assert steps == -(-len(orders_store) // 100)
    assert len(axes[0].get_lines()[0].get_xdata()) == steps
    assert axes[1].get_lines()[0].get_ydata().tolist() == runner.metrics["offset_lag"].to_list()
    assert axes[0].get_ylabel() == "throughput (events/s)"
    assert axes[1].get_xlabel() == "time since the first step (s)"


def test_runner_dashboard_needs_steps(orders_store):
    with pytest.raises(ValueError, match="no metrics yet: step or catch_up first"):
        plot_runner_metrics(ProjectionRunner(orders_store, OrderSummaryFrame()))
    with pytest.raises(ValueError, match=r"missing columns \['events_per_s'"):
        plot_runner_metrics(
            pl.DataFrame({"wall_time": [1], "offset_lag": [1], "time_lag_s": [1.0]})
        )


# ---------------------------------------------------------------------- event rate
@pytest.mark.parametrize("by_type", [False, True])
def test_event_rate_bars_add_up_to_the_store(orders_store, ax, by_type):
    plot_event_rate(orders_store, every="1d", by_type=by_type, ax=ax)
    heights = sum(p.get_height() for p in ax.patches)
    assert heights == len(orders_store)
    assert ax.get_ylabel() == "events per 1d" and ax.get_xlabel() == "recorded at (UTC)"


def test_event_rate_takes_a_frame_and_refuses_bad_bins(orders_store, ax):
    plot_event_rate(orders_store.to_polars(), every="6h", ax=ax)
    assert "peak" in ax.get_title()
    with pytest.raises(
        ValueError, match=r"'every' must be a duration like '15m', '1h' or '1d' \(got '1 week'\)"
    ):
        plot_event_rate(orders_store, every="1 week")
    with pytest.raises(TypeError, match="needs an event store or an event frame"):
        plot_event_rate([1, 2, 3])


def test_plots_change_no_global_style(orders_store):
    before = dict(matplotlib.rcParams)
    ax = new_figure()[1]
    plot_event_rate(orders_store, ax=ax)
    plot_lag(
        simulate_lag(50, service_rate=60, duration=20, seed=1, progress=False), ax=new_figure()[1]
    )
    assert dict(matplotlib.rcParams) == before


def test_a_steady_poisson_run_gets_the_mm_c_mean_line_and_a_burst_does_not(ax):
    """Where queueing theory has the answer (constant Poisson producer, exponential service,
    shared queue) the plot draws the M/M/c mean; the simulation's mean agrees with it."""
    result = simulate_lag(80, service_rate=50, consumers=2, duration=3000, seed=4, progress=False)
    plot_lag_theory(result, schedule=80, ax=ax)
    line = [ln for ln in ax.get_lines() if ln.get_label() == "M/M/c mean"]
    assert len(line) == 1
    expected = es.sim.theory.mmc(80, service_rate=50, servers=2).mean_in_system
    assert line[0].get_ydata()[0] == pytest.approx(expected)
    assert result["mean_offset_lag"] == pytest.approx(expected, rel=0.25)
    other = new_figure()[1]
    burst = [(0, 80), (100, 200), (110, 80)]
    plot_lag_theory(simulate_lag(burst, service_rate=100, duration=300, seed=1, progress=False),
                    schedule=burst, ax=other)  # fmt: skip
    assert "M/M/c mean" not in [ln.get_label() for ln in other.get_lines()]
