"""Dead letters: retries, the DLQ row, parking, bisection, retry after a fix, restarts, strict."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_readmodels import PROPERTY, Tick, fill_store, new_store, order_histories

import esnotebook as es
from esnotebook.deadletter import DEAD_LETTER_SCHEMA, DeadLetterQueue
from esnotebook.projections import ProjectionError
from esnotebook.readmodels import OrderSummary, OrderSummaryFrame
from esnotebook.runner import ProjectionRunner

HISTORY = [
    ("order-1", "OrderPlaced", {"order_id": "1", "customer": "ada"}),
    ("order-2", "OrderPlaced", {"order_id": "2", "customer": "bob"}),
    ("order-1", "ItemAdded", {"order_id": "1", "sku": "poison", "quantity": 1, "price": 5}),
    ("order-2", "ItemAdded", {"order_id": "2", "sku": "mug", "quantity": 1, "price": 900}),
    ("order-1", "ItemAdded", {"order_id": "1", "sku": "tea", "quantity": 2, "price": 300}),
    ("order-2", "PaymentReceived", {"order_id": "2", "amount": 900}),
]


class Fussy(OrderSummary):
    """OrderSummary whose ItemAdded handler rejects the SKU 'poison' (until ``fixed``)."""

    fixed = False

    def on_ItemAdded(self, row, event):
        if event.data["sku"] == "poison" and not self.fixed:
            raise ValueError(f"cannot price <{event.data['sku']}>")
        return super().on_ItemAdded(row, event)


class FussyFrame(OrderSummaryFrame):
    """OrderSummaryFrame whose fold rejects any batch holding the SKU 'poison'."""

    fixed = False

    def fold(self, state: pl.LazyFrame, events: pl.LazyFrame) -> pl.LazyFrame:
        if not self.fixed and events.filter(pl.col("sku") == "poison").collect().height:
            raise ValueError("cannot price <poison>")
        return super().fold(state, events)


FORMS = [Fussy, FussyFrame]


def without_poison(history):
    return [h for h in history if h[2].get("sku") != "poison"]


@pytest.mark.parametrize("form", FORMS)
def test_a_poison_event_is_retried_then_dead_lettered_and_the_rest_applied(form):
    """After max_attempts failures the event becomes one DLQ row with every field, and all
    other events are still applied (the pipeline does not stall)."""
    store = new_store(HISTORY)
    runner = ProjectionRunner(store, form(), batch_size=4)
    runner.catch_up()
    assert runner.checkpoint == 6
    dlq = runner.dead_letters.to_polars()
    assert dlq.schema == pl.Schema(DEAD_LETTER_SCHEMA)
    row = dlq.row(0, named=True)
    assert dlq.height == 1
    assert (row["position"], row["stream_id"], row["event_type"]) == (3, "order-1", "ItemAdded")
    assert (row["projection"], row["status"], row["error_type"]) == (form.name, "failed", "ValueError")
    assert row["message"] == "cannot price <poison>" and "ValueError" in row["traceback"]
    assert row["attempts"] == 3
    assert row["first_failure"] <= row["last_failure"]
    # Everything else is there: order 1 has the tea (the poison is missing), order 2 is paid.
    summary = {r["order_id"]: r for r in runner.state.iter_rows(named=True)}
    assert summary["1"]["total"] == 600 and summary["2"]["status"] == "paid"


def test_a_transient_failure_is_retried_and_not_dead_lettered():
    """An event that fails fewer times than max_attempts is applied, with no DLQ row."""

    class Flaky(OrderSummary):
        failures = 0

        def on_ItemAdded(self, row, event):
            if Flaky.failures < 2:
                Flaky.failures += 1
                raise TimeoutError("try again")
            return super().on_ItemAdded(row, event)

    runner = ProjectionRunner(new_store(without_poison(HISTORY)), Flaky(), max_attempts=3)
    runner.catch_up()
    assert len(runner.dead_letters) == 0 and Flaky.failures == 2
    assert runner.state.filter(pl.col("order_id") == "1")["total"].item() == 600


@pytest.mark.parametrize("form", FORMS)
def test_park_holds_back_the_rest_of_the_failed_stream_only(form):
    """With on_error='park' later events of the failed stream are parked (not applied);
    other streams go on."""
    store = new_store(HISTORY)
    runner = ProjectionRunner(store, form(), on_error="park", batch_size=2)
    runner.catch_up()
    dlq = runner.dead_letters.to_polars()
    assert dlq.select("position", "status").rows() == [(3, "failed"), (5, "parked")]
    summary = {r["order_id"]: r for r in runner.state.iter_rows(named=True)}
    assert summary["1"]["total"] == 0  # the tea after the poison waits
    assert summary["2"]["status"] == "paid"


@pytest.mark.parametrize("form", FORMS)
def test_retry_dead_letters_after_a_fix_applies_them_in_order(form):
    """retry_dead_letters() re-applies failed and parked events once the cause is fixed; the
    result equals a clean run; a still-failing one stays with its attempts added."""
    store = new_store(HISTORY)
    projection = form()
    runner = ProjectionRunner(store, projection, on_error="park")
    runner.catch_up()
    assert runner.retry_dead_letters() == 0  # not fixed: fails again, the parked one stays
    assert runner.dead_letters.to_polars().select("position", "status", "attempts").rows() == [
        (3, "failed", 6), (5, "parked", 0),
    ]  # fmt: skip
    projection.fixed = True
    assert runner.retry_dead_letters() == 2
    assert len(runner.dead_letters) == 0
    assert runner.state.equals(OrderSummaryFrame().rebuild(store.scan()))


@pytest.mark.parametrize("form", FORMS)
def test_dead_letters_survive_a_restart_on_the_parquet_store(tmp_path, form):
    """The DLQ is committed with the state: a new runner on the same folder has it."""
    store = es.ParquetEventStore(tmp_path / "store", durable=False, clock=Tick())
    fill_store(store, HISTORY)
    ProjectionRunner(store, form(), target="parquet").catch_up()
    again = ProjectionRunner(store, form(), target="parquet")
    assert again.dead_letters.positions == [3]
    assert again.dead_letters.to_polars()["attempts"].to_list() == [3]


@pytest.mark.parametrize("form", FORMS)
def test_strict_rebuild_fails_fast_naming_the_event(form):
    """rebuild(strict=True) raises ProjectionError at the first failing event, no DLQ rows."""
    runner = ProjectionRunner(new_store(HISTORY), form())
    with pytest.raises(ProjectionError, match="position 3 \\(ItemAdded\\).*ValueError: cannot price"):
        runner.rebuild(strict=True, chunk_size=1)
    with pytest.raises(ProjectionError, match="ValueError: cannot price"):
        runner.rebuild(strict=True)
    assert len(runner.dead_letters) == 0


def test_on_error_raise_fails_the_step_and_commits_nothing():
    """on_error='raise' fails fast in step(); the checkpoint and state stay at the last commit."""
    runner = ProjectionRunner(new_store(HISTORY), Fussy(), on_error="raise", batch_size=2)
    runner.step()
    with pytest.raises(ProjectionError):
        runner.step()
    assert runner.checkpoint == 2 and runner.state.height == 2


class PoisonAt(OrderSummaryFrame):
    """Fails any batch containing one of the given positions."""

    def __init__(self, poison: set[int]) -> None:
        self.poison = poison

    def fold(self, state: pl.LazyFrame, events: pl.LazyFrame) -> pl.LazyFrame:
        if events.filter(pl.col("position").is_in(list(self.poison))).collect().height:
            raise RuntimeError("poison")
        return super().fold(state, events)


def _status_events(history) -> list[int]:
    """Positions whose loss keeps the history valid for the summary: status-only events
    other than OrderPlaced (dropping them never orphans a later event)."""
    return [i for i, (_, t, _) in enumerate(history, start=1) if t in ("PaymentFailed", "OrderShipped")]


@settings(PROPERTY, max_examples=20)
@given(order_histories(), st.data(), st.integers(2, 20))
def test_bisection_dead_letters_exactly_the_poison_events(history, data, batch):
    """A failing vectorised batch is bisected down to exactly the poison events; all other
    events are applied as if the poison ones never happened."""
    candidates = _status_events(history)
    poison = set(data.draw(st.lists(st.sampled_from(candidates), unique=True, max_size=3))) if candidates else set()
    store = new_store(history)
    runner = ProjectionRunner(store, PoisonAt(poison), batch_size=batch, max_attempts=1)
    runner.catch_up()
    assert set(runner.dead_letters.positions) == poison
    clean = new_store([h for i, h in enumerate(history, start=1) if i not in poison])
    want = OrderSummaryFrame().rebuild(clean.scan())
    # positions shift in the clean store; compare what the events say, not where they sit
    cols = ["order_id", "customer", "status", "item_count", "total", "amount_paid", "failed_payments"]
    assert runner.state.select(cols).equals(want.select(cols))


def test_dlq_frame_and_html():
    """The DLQ is a dataframe (polars and pandas) and its HTML is escaped and compact."""
    runner = ProjectionRunner(new_store(HISTORY), Fussy())
    runner.catch_up()
    dlq: DeadLetterQueue = runner.dead_letters
    assert dlq.to_pandas()["position"].tolist() == [3]
    page = dlq._repr_html_()
    assert "&lt;poison&gt;" in page and "<poison>" not in page
    assert "failed=1" in repr(dlq)
    empty = DeadLetterQueue("X")
    assert empty.to_polars().height == 0 and "0 event" in empty._repr_html_()


def test_a_poison_event_is_tried_exactly_max_attempts_times():
    """The fast handler path tries an event once inline and then max_attempts - 1 retries:
    exactly max_attempts calls in all, and the DLQ row says so."""
    calls = []

    class Counting(OrderSummary):
        def on_ItemAdded(self, row, event):
            if event.data["sku"] == "poison":
                calls.append(event.position)
                raise ValueError("poison")
            return super().on_ItemAdded(row, event)

    runner = ProjectionRunner(new_store(HISTORY), Counting(), max_attempts=4)
    runner.catch_up()
    assert calls == [3, 3, 3, 3]
    assert runner.dead_letters.to_polars()["attempts"].to_list() == [4]
