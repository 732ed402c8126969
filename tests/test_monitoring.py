"""Lag monitoring: what each step records, and each Burrow-style status rule."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from test_readmodels import Tick, fill_store

import esnotebook as es
from esnotebook.monitoring import METRICS_SCHEMA, lag_status
from esnotebook.readmodels import OrderSummaryFrame
from esnotebook.runner import ProjectionRunner

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)


def window(checkpoints, lags, *, seconds=1.0) -> pl.DataFrame:
    n = len(checkpoints)
    return pl.DataFrame({
        "wall_time": [T0 + timedelta(seconds=seconds * i) for i in range(n)],
        "checkpoint": checkpoints, "offset_lag": lags, "time_lag_s": [1.0] * n,
    })  # fmt: skip


def last(frame: pl.DataFrame) -> datetime:
    return frame["wall_time"][-1]


def test_rule_1_ok_when_lag_reaches_zero_in_the_window():
    """Rule 1: any zero offset lag in the window is OK, even if lag grew afterwards."""
    w = window([10, 10, 20, 20], [5, 0, 8, 9])
    assert lag_status(w, now=last(w)).status == "OK"


def test_rule_2_stopped_when_idle_longer_than_the_window_spans():
    """Rule 2: no step for longer than the window's span (with lag) is STOPPED."""
    w = window([10, 20, 30], [5, 4, 3])  # spans 2 s
    assert lag_status(w, now=last(w) + timedelta(seconds=1.9)).status == "OK"
    status = lag_status(w, now=last(w) + timedelta(seconds=2.5))
    assert status.status == "STOPPED" and "no step" in status.rule


def test_rule_2_never_stepped_with_events_waiting_is_stopped():
    """Rule 2, no history: STOPPED if events wait, OK if there is nothing to consume."""
    empty = pl.DataFrame(schema=METRICS_SCHEMA)
    assert lag_status(empty, now=T0, head=5, checkpoint=0).status == "STOPPED"
    assert lag_status(empty, now=T0, head=5, checkpoint=5).status == "OK"


def test_rule_3_stalled_when_the_checkpoint_does_not_move():
    """Rule 3: stepping but the checkpoint is the same across the window, with lag: STALLED."""
    w = window([10, 10, 10, 10], [5, 6, 6, 7])
    status = lag_status(w, now=last(w))
    assert status.status == "STALLED" and "10" in status.rule


def test_rule_4_warning_when_moving_but_lag_never_shrinks():
    """Rule 4: the checkpoint moves but lag never decreases between consecutive rows: WARNING."""
    w = window([10, 20, 30, 40], [5, 5, 7, 9])
    assert lag_status(w, now=last(w)).status == "WARNING"


def test_rule_5_ok_when_lag_shrinks_at_least_once():
    """Rule 5: otherwise (lag shrank at least once while the checkpoint moved): OK."""
    w = window([10, 20, 30, 40], [5, 7, 6, 9])
    assert lag_status(w, now=last(w)).status == "OK"


def test_only_the_recent_window_counts():
    """Rows older than the window are ignored: an old zero lag does not make it OK."""
    w = window([1, 10, 10, 10], [0, 5, 6, 7])
    assert lag_status(w, now=last(w), window=3).status == "STALLED"
    assert lag_status(w, now=last(w), window=4).status == "OK"
    with pytest.raises(ValueError, match=r"'window' must be an int >= 2 \(got 1\)"):
        lag_status(w, now=last(w), window=1)


def test_every_step_records_head_checkpoint_lags_and_rate():
    """Each step appends one metrics row: head, checkpoint, offset lag, the age of the
    oldest unapplied event (from the store's recorded_at and the runner's clock), rate."""
    clock = Tick(T0, step=60)
    store = es.InMemoryEventStore(clock=clock)
    fill_store(store, [(f"order-{i}", "OrderPlaced", {"order_id": str(i), "customer": "ada"}) for i in range(5)])
    # events were recorded at T0+1..5 min; the runner has a clock of its own
    now = [T0 + timedelta(minutes=10)]
    runner = ProjectionRunner(store, OrderSummaryFrame(), batch_size=2, clock=lambda: now[0])
    runner.step()
    now[0] += timedelta(minutes=1)
    runner.step()
    m = runner.metrics
    assert m.schema == pl.Schema(METRICS_SCHEMA)
    assert m["head"].to_list() == [5, 5]
    assert m["checkpoint"].to_list() == [2, 4]
    assert m["offset_lag"].to_list() == [3, 1]
    assert m["applied"].to_list() == [2, 2]
    # at T0+10 min the oldest unapplied is event 3 (T0+3 min); at T0+11, event 5 (T0+5)
    assert m["time_lag_s"].to_list() == [420.0, 360.0]
    assert m["wall_time"].to_list() == [T0 + timedelta(minutes=10), T0 + timedelta(minutes=11)]
    assert (m["events_per_s"] > 0).all()
    runner.step()
    assert runner.metrics["time_lag_s"][-1] == 0.0 and runner.metrics["offset_lag"][-1] == 0
    assert runner.status().status == "OK"


def test_a_runner_that_stops_stepping_becomes_stopped():
    """The runner's status uses its clock: steps that stop while events arrive give STOPPED."""
    clock = Tick(T0, step=1)
    store = es.InMemoryEventStore(clock=clock)
    fill_store(store, [(f"order-{i}", "OrderPlaced", {"order_id": str(i), "customer": "ada"}) for i in range(9)])
    runner = ProjectionRunner(store, OrderSummaryFrame(), batch_size=2, clock=clock)
    runner.step()
    runner.step()
    for _ in range(50):
        clock()
    assert runner.status().status == "STOPPED"
    assert "STOPPED" in runner.status()._repr_html_()
