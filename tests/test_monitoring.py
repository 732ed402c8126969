"""Lag monitoring: what each step records, each Burrow-style status rule, and the
arrival-aware catch-up time."""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
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


# ---------------------------------------------------------------------- catch-up time
def test_catch_up_is_the_backlog_over_consume_minus_arrival_rate():
    """Over the window the checkpoint advanced 60 in 4 s (15/s) and the head 40 (10/s): the
    backlog of 75 drains at 5/s, in 15 s; the text and the HTML say so."""
    w = window([15, 30, 45, 60, 75], [95, 90, 85, 80, 75])
    status = lag_status(w, now=last(w))
    assert (status.consume_rate, status.arrival_rate) == (15.0, 10.0)
    assert (status.catch_up_s, status.verdict) == (15.0, "draining")
    assert str(status) == "OK: lag shrinks; draining: caught up in 15.0 s (consuming 15 ev/s, arriving 10 ev/s)"
    assert "caught up in 15.0 s" in status._repr_html_()


def test_a_consumer_no_faster_than_arrivals_is_growing_and_never_catches_up():
    """Consuming 10/s while 12/s arrive (or exactly 10/s: lag holds): catch-up is infinite."""
    for lags in ([5, 7, 9], [5, 5, 5]):
        status = lag_status(window([10, 20, 30], lags), now=T0 + timedelta(seconds=2))
        assert (status.catch_up_s, status.verdict) == (math.inf, "growing")
        assert "growing: never catches up (consuming 10 ev/s" in str(status)


def test_a_consumer_that_does_not_consume_is_stalled():
    """A checkpoint that does not move across the window (Burrow STALLED), a runner that
    stopped stepping (STOPPED) and one that never stepped: infinite, stalled."""
    stuck = window([10, 10, 10], [5, 6, 7])
    assert lag_status(stuck, now=last(stuck)).verdict == "stalled"
    moving = window([10, 20, 30], [5, 4, 3])  # it was draining, then stopped stepping
    stopped = lag_status(moving, now=last(moving) + timedelta(seconds=10))
    assert (stopped.status, stopped.verdict, stopped.catch_up_s) == ("STOPPED", "stalled", math.inf)
    assert stopped.consume_rate == 10.0  # the rates are still those measured in the window
    empty = pl.DataFrame(schema=METRICS_SCHEMA)
    never = lag_status(empty, now=T0, head=5, checkpoint=0)
    assert (never.catch_up_s, never.verdict) == (math.inf, "stalled")
    assert "stalled: not consuming, never catches up" in str(never)


def test_a_caught_up_consumer_has_nothing_left_to_drain():
    """Lag 0 now: 0 s and draining, whatever the rates (even none, over an empty store)."""
    w = window([10, 20, 30], [5, 0, 0])
    status = lag_status(w, now=last(w))
    assert (status.catch_up_s, status.verdict) == (0.0, "draining") and str(status).endswith("caught up")
    empty = lag_status(pl.DataFrame(schema=METRICS_SCHEMA), now=T0)
    assert (empty.catch_up_s, empty.verdict, empty.consume_rate) == (0.0, "draining", None)


def test_a_window_that_spans_no_time_has_no_rates_and_no_error():
    """One row, or rows at one instant (a frozen fake clock): no rate can be measured, so the
    rates and the catch-up time are None (not a ZeroDivisionError, not NaN), and it says so."""
    for w in (window([10], [5]), window([10, 20, 30], [5, 4, 3], seconds=0.0)):
        status = lag_status(w, now=last(w))
        assert (status.consume_rate, status.arrival_rate, status.catch_up_s, status.verdict) == (None,) * 4
        assert "catch-up time unknown" in str(status) and "unknown" in status._repr_html_()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.floats(0.01, 100)), min_size=2, max_size=8),
       st.integers(0, 100))  # fmt: skip
def test_the_verdict_matches_the_sign_of_consume_minus_arrival(steps, start_lag):
    """On any window (each step: events consumed, events arrived, seconds since the last),
    with lag left: draining exactly when the consumer outpaced the producer, and then the
    backlog is gone after catch_up_s at the measured rates; stalled when the checkpoint did
    not move; growing otherwise; finite exactly when draining."""
    checkpoint, head, t = 0, start_lag, 0.0
    rows = []
    for consumed, arrived, dt in steps:
        head += arrived
        checkpoint = min(head, checkpoint + consumed)
        t += dt
        rows.append((T0 + timedelta(seconds=t), checkpoint, head - checkpoint))
    w = pl.DataFrame(rows, schema=["wall_time", "checkpoint", "offset_lag"], orient="row")
    w = w.with_columns(time_lag_s=pl.lit(0.0))
    assume(w["offset_lag"][-1] > 0 and w["wall_time"][-1] > w["wall_time"][0])
    s = lag_status(w, now=last(w), window=len(rows))
    if s.consume_rate <= 0:
        assert s.verdict == "stalled"
    elif s.consume_rate > s.arrival_rate:
        assert s.verdict == "draining"
        left = s.offset_lag - (s.consume_rate - s.arrival_rate) * s.catch_up_s
        assert left == pytest.approx(0, abs=1e-6 * s.offset_lag)
    else:
        assert s.verdict == "growing"
    assert math.isfinite(s.catch_up_s) == (s.verdict == "draining")


@pytest.mark.parametrize("kind", ["memory", "parquet"])
def test_a_real_runner_behind_a_growing_store_catches_up_when_its_status_said(tmp_path, kind):
    """A runner stepping 15 events a (fake) second behind a producer of 10 a second: its
    status forecasts the catch-up time from the measured rates, and the lag then reaches 0
    at that second; stepping 5 a second instead, it is growing and never catches up."""
    now = [T0]
    store = es.InMemoryEventStore() if kind == "memory" else es.ParquetEventStore(tmp_path / "s", durable=False)
    runner = ProjectionRunner(store, OrderSummaryFrame(), clock=lambda: now[0])
    orders = iter(range(10_000))

    def second(step: int) -> None:
        fill_store(store, [(f"order-{i}", "OrderPlaced", {"order_id": str(i), "customer": "ada"})
                           for i in itertools.islice(orders, 10)])  # fmt: skip
        runner.step(step)
        now[0] += timedelta(seconds=1)

    fill_store(store, [(f"order-{i}", "OrderPlaced", {"order_id": str(i), "customer": "ada"})
                       for i in itertools.islice(orders, 100)])  # fmt: skip
    for _ in range(5):
        second(15)
    status = runner.status(window=5)
    assert (status.consume_rate, status.arrival_rate, status.verdict) == (15.0, 10.0, "draining")
    forecast = status.catch_up_s
    assert forecast == runner.lag / 5
    took = 0
    while runner.lag:
        second(15)
        took += 1
    assert took == forecast
    for _ in range(5):
        second(5)
    status = runner.status(window=4)
    assert (status.consume_rate, status.arrival_rate) == (5.0, 10.0)
    assert (status.verdict, status.catch_up_s) == ("growing", math.inf)
