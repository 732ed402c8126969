"""The rich-display audit: every result a user looks at in Jupyter has a compact,
HTML-escaped ``_repr_html_`` with capped rows, no scripts and no external resources, plus
``to_polars()`` / ``to_pandas()`` where it holds a table."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import ClassVar

import polars as pl
import pytest

import esnotebook as es
from esnotebook.datasets import generate_orders
from esnotebook.examples import AddItem, AddStock, OrderFulfillment, PlaceOrder, order_domain_bus
from esnotebook.faults import FaultPlan
from esnotebook.projections import Projection
from esnotebook.runner import ProjectionRunner
from esnotebook.sagas import SagaInstance
from esnotebook.sagas._persist import HISTORY_SCHEMA

EVIL = "<x-evil onload=alert(1)>"
ESCAPED = "&lt;x-evil onload=alert(1)&gt;"
MAX_CHARS = 20_000
MAX_ROWS = 60


def check_display(obj, *, shows_evil: bool = False) -> str:
    text = obj._repr_html_()
    assert isinstance(text, str) and text
    assert len(text) < MAX_CHARS, f"{type(obj).__name__}: {len(text)} characters is not compact"
    assert text.count("<tr") <= MAX_ROWS, f"{type(obj).__name__}: rows are not capped"
    assert "<script" not in text.lower() and "javascript:" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", text), "external resource"
    assert "<x-evil" not in text, f"{type(obj).__name__} shows unescaped text"
    if shows_evil:
        assert ESCAPED in text, f"{type(obj).__name__} should show the (escaped) text"
    return text


class Fragile(Projection):
    """A handler projection that chokes on every ItemAdded with a hostile message."""

    name = "Fragile"
    key = "order_id"
    schema: ClassVar = {"order_id": pl.String(), "n": pl.Int64()}

    def key_of(self, event):
        return event.data["order_id"]

    def on_OrderPlaced(self, row, event):
        return {"order_id": event.data["order_id"], "n": 1}

    def on_ItemAdded(self, row, event):
        raise ValueError(EVIL)


@pytest.fixture(scope="module")
def shop():
    """Orders by command with hostile ids, the saga under a hostile decline, a trace."""
    store = es.InMemoryEventStore()
    bus = order_domain_bus(store)
    bus.dispatch(AddStock("sku-1", 10_000))
    for i in range(60):
        bus.dispatch(PlaceOrder(f"{EVIL}{i}", EVIL))
        bus.dispatch(AddItem(f"{EVIL}{i}", "sku-1", 1, 300))
    runner = OrderFulfillment().run(
        store, faults=FaultPlan().permanent("ChargePayment", p=0.5, reason=EVIL)
    )
    return store, bus, runner


# ---------------------------------------------------------------------- stores
def test_a_store_with_hundreds_of_event_types_stays_compact():
    store = es.InMemoryEventStore()
    for i in range(300):
        store.append(f"s-{i}", [es.NewEvent(f"Type{i:03d}", {"x": i})])
    text = check_display(store)
    assert "300 events" in text.replace("</th><td style='text-align:left'>", " ") or ">300<" in text
    assert "Type000" in text and "Type299" not in text and "and 288 more" in text


def test_a_parquet_store_escapes_its_path(tmp_path):
    with es.ParquetEventStore(tmp_path / EVIL) as store:
        store.append_frame(generate_orders(20, seed=1))
        check_display(store, shows_evil=True)
        assert store.to_polars().height == len(store) and len(store.to_pandas()) == len(store)


# ---------------------------------------------------------------------- runners, dead letters
def test_projection_runner_dead_letters_and_lag_status_are_capped_and_escaped(shop):
    store, _, _ = shop
    runner = ProjectionRunner(store, Fragile(), max_attempts=1)
    runner.catch_up()
    assert len(runner.dead_letters) >= 60
    check_display(runner)
    text = check_display(runner.dead_letters, shows_evil=True)
    assert text.count("<tr") <= 11 and "more" in text
    check_display(runner.status())
    assert runner.dead_letters.to_polars().height == len(runner.dead_letters)
    assert len(runner.to_pandas()) == runner.to_polars().height


# ---------------------------------------------------------------------- sagas, traces, faults
def test_saga_runner_instances_faults_and_keys(shop):
    store, _, runner = shop
    check_display(runner)
    compensated = runner.instances().filter(pl.col("status") == "compensated")
    assert compensated.height > 0
    check_display(runner.instance(compensated["instance_id"][0]), shows_evil=True)
    check_display(runner.faults, shows_evil=False)
    check_display(runner.keys)
    check_display(runner.saga)
    t = es.trace(store, compensated["correlation_id"][0])
    check_display(t, shows_evil=True)


def test_a_long_saga_history_and_a_long_trace_are_capped():
    history = pl.DataFrame(
        [("o", "do", "reserve", "ReserveInventory", f"k{i}", i, "ok", float(i), EVIL) for i in range(500)],
        schema=HISTORY_SCHEMA, orient="row",
    )  # fmt: skip
    inst = SagaInstance("o", status="completed", saga="S", steps=("reserve",), step="reserve", state={},
                        failure=EVIL, correlation_id="c", history=history, dead_letter=None)  # fmt: skip
    assert "more attempts" in check_display(inst, shows_evil=True)
    frame = pl.DataFrame({
        "position": range(1, 501), "stream_id": [f"{EVIL}-{i % 7}" for i in range(500)],
        "event_type": ["E"] * 500, "event_id": [str(i) for i in range(500)],
        "caused_by": [None] * 500, "caused_by_position": [None] * 500, "via_command": [EVIL] * 500,
        "depth": [1] * 500, "recorded_at": [datetime(2026, 1, 1, tzinfo=UTC)] * 500,
        "problem": [None] * 500,
    })  # fmt: skip
    assert "more" in check_display(es.Trace("c", frame), shows_evil=True)


def test_command_results_and_aggregates(shop):
    _, bus, _ = shop
    result = bus.dispatch(PlaceOrder(f"{EVIL}x", EVIL))
    check_display(result, shows_evil=True)
    from esnotebook.examples import Order

    check_display(bus.repository(Order).load(f"{EVIL}x"), shows_evil=True)


# ---------------------------------------------------------------------- simulations
def test_simulation_results():
    lag = es.sim.simulate_lag(
        80, service_rate=100, duration=30, replications=3, seed=1, progress=False
    )
    check_display(lag)
    cap = es.sim.required_capacity(
        80, target_p99_time_lag=1.0, duration=30, replications=3, progress=False
    )
    check_display(cap)
    rebuild = es.sim.rebuild_cost(100_000, streams=100, interval=10, apply_cost=1e-6)
    check_display(rebuild)
    sagas = es.sim.simulate_sagas(20, saga="chain", failure=0.2, seed=1, progress=False)
    check_display(sagas)
    for obj in (lag, cap, rebuild, sagas):
        assert isinstance(obj.to_polars(), pl.DataFrame)
        assert len(obj.to_pandas()) == obj.to_polars().height


# ---------------------------------------------------------------------- the face's own results
def test_demo_summary_tour_result_and_browser_page(tmp_path):
    from esnotebook.cli import run_demo
    from esnotebook.widgets import browse

    summary = run_demo(tmp_path / EVIL, orders=30, tour=False)
    check_display(summary, shows_evil=True)
    store = es.InMemoryEventStore()
    store.append("order-1", [es.NewEvent("OrderPlaced", {"order_id": EVIL, "customer": EVIL})] * 1)
    store.append_frame(generate_orders(200, seed=3))
    page = browse(store, page_size=200)
    text = check_display(page, shows_evil=True)
    assert text.count("<tr") == 51 and "150 more rows" in text
    assert page.to_polars().height == 200 and len(page.to_pandas()) == 200


def test_the_tour_result_lists_its_facts(tmp_path):
    from esnotebook.report import Section
    from esnotebook.tour import TourResult

    result = TourResult(tmp_path / EVIL, (), {f"k{i}": EVIL for i in range(100)}, 1.0,
                        (Section("s", facts={"k0": ("label", EVIL)}),))  # fmt: skip
    text = check_display(result, shows_evil=True)
    assert "more rows" in text
