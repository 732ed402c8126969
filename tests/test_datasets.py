"""The synthetic order workload (esnotebook.datasets.generate_orders) and the order rules."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from esnotebook.datasets import (
    ORDER_EVENT_TYPES,
    ORDER_FRAME_SCHEMA,
    expected_events_per_order,
    generate_orders,
    order_violations,
)
from esnotebook.datasets.checks import ORDER_RULES, REQUIRED_FIELDS
from esnotebook.datasets.orders import PAYLOAD_FIELDS

CHECKOUT = dict(
    items_per_order=8, p_remove=0, p_abandon=0, p_cancel=0, p_payment_failed=0, p_ship=0
)


@pytest.fixture(scope="module")
def orders() -> pl.DataFrame:
    """A few thousand orders with the default knobs (shared: generating is the slow part)."""
    return generate_orders(4000, seed=11)


def histories(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per stream: its event types in version order."""
    return (
        frame.sort("stream_id", "version")
        .group_by("stream_id", maintain_order=True)
        .agg(pl.col("event_type"))
    )


# ---------------------------------------------------------------------- determinism and shape
def test_same_seed_gives_the_identical_frame():
    assert_frame_equal(generate_orders(300, seed=5), generate_orders(300, seed=5))


def test_different_seeds_give_different_frames():
    a, b = generate_orders(300, seed=5), generate_orders(300, seed=6)
    assert not a.equals(b)
    assert a["recorded_at"].to_list() != b["recorded_at"].to_list()


def test_a_numpy_generator_is_accepted_as_seed():
    a = generate_orders(50, seed=np.random.default_rng(3))
    b = generate_orders(50, seed=np.random.default_rng(3))
    assert_frame_equal(a, b)


def test_columns_and_dtypes_are_the_order_frame_schema(orders):
    assert orders.schema == pl.Schema(ORDER_FRAME_SCHEMA)
    assert list(orders.columns[:4]) == ["stream_id", "version", "event_type", "recorded_at"]


def test_each_event_type_carries_exactly_its_fields(orders):
    """Required fields are set; every other payload field is null for that type."""
    payload = [
        c
        for c in ORDER_FRAME_SCHEMA
        if c not in ("stream_id", "version", "event_type", "recorded_at")
    ]
    assert set(orders["event_type"].unique()) == set(ORDER_EVENT_TYPES)
    for event_type, fields in REQUIRED_FIELDS.items():
        part = orders.filter(pl.col("event_type") == event_type)
        for col in payload:
            nulls = part[col].null_count()
            if col in fields:
                assert nulls == 0, f"{event_type}.{col} has {nulls} nulls"
            else:
                assert nulls == part.height, f"{event_type}.{col} should be null"


def test_zero_orders_give_an_empty_frame_with_the_schema():
    empty = generate_orders(0)
    assert empty.height == 0
    assert empty.schema == pl.Schema(ORDER_FRAME_SCHEMA)


def test_streams_are_named_order_and_the_order_id(orders):
    assert (orders["stream_id"] == "order-" + orders["order_id"]).all()
    assert orders["stream_id"].n_unique() == 4000


# ---------------------------------------------------------------------- validity
def test_every_generated_history_is_valid(orders):
    violations = order_violations(orders)
    assert violations.height == 0, violations.head(10)


def test_every_fate_of_an_order_occurs(orders):
    """Paid and shipped, paid and waiting, abandoned, cancelled before payment, paid after a
    failed attempt, and cancelled after failed attempts all appear with default knobs."""
    h = histories(orders).with_columns(
        last=pl.col("event_type").list.last(),
        failed=pl.col("event_type").list.contains("PaymentFailed"),
        paid=pl.col("event_type").list.contains("PaymentReceived"),
    )
    fates = {
        "shipped": h.filter(pl.col("last") == "OrderShipped").height,
        "paid, waiting": h.filter(pl.col("last") == "PaymentReceived").height,
        "abandoned": h.filter(pl.col("last").is_in(["ItemAdded", "ItemRemoved"])).height,
        "cancelled early": h.filter(
            (pl.col("last") == "OrderCancelled") & ~pl.col("failed")
        ).height,
        "paid after a failure": h.filter(pl.col("failed") & pl.col("paid")).height,
        "gave up after failures": h.filter(
            pl.col("failed") & (pl.col("last") == "OrderCancelled")
        ).height,
    }
    assert all(n > 0 for n in fates.values()), fates
    assert fates["shipped"] > 0.7 * 4000  # most orders are paid and shipped
    assert fates["abandoned"] < 0.1 * 4000  # a few are left open


def test_payment_amounts_are_the_order_total(orders):
    """Failed attempts also ask for the exact total, so a retry pays the same amount."""
    totals = (
        orders.filter(pl.col("event_type").is_in(["ItemAdded", "ItemRemoved"]))
        .with_columns(price=pl.col("price").forward_fill().over("stream_id", "sku"))
        .group_by("stream_id")
        .agg(
            total=(
                pl.when(pl.col("event_type") == "ItemAdded").then(1).otherwise(-1)
                * pl.col("quantity")
                * pl.col("price")
            ).sum()
        )
    )
    payments = orders.filter(pl.col("event_type").is_in(["PaymentReceived", "PaymentFailed"]))
    joined = payments.join(totals, on="stream_id", how="left")
    assert joined.height > 0
    assert (joined["amount"] == joined["total"]).all()
    assert (joined["amount"] > 0).all()


def test_a_sku_has_one_fixed_price(orders):
    prices = (
        orders.filter(pl.col("event_type") == "ItemAdded")
        .group_by("sku")
        .agg(pl.col("price").n_unique())
    )
    assert (prices["price"] == 1).all()


def test_versions_run_1_to_n_in_time_order(orders):
    checked = orders.sort("stream_id", "version").select(
        gapless=pl.col("version") == pl.int_range(1, pl.len() + 1).over("stream_id"),
        # Strictly later: each event comes after the one that caused it.
        later=(pl.col("recorded_at") > pl.col("recorded_at").shift(1))
        .over("stream_id")
        .fill_null(True),
    )
    assert checked["gapless"].all()
    assert checked["later"].all()


def test_rows_are_in_recorded_at_order_with_ties_by_stream_and_version():
    frame = generate_orders(2000, seed=2)
    assert frame["recorded_at"].is_sorted()
    ties = frame.with_row_index().filter(pl.col("recorded_at").is_duplicated())
    # Ties are rare with microsecond times; where they occur, rows follow (order, version).
    assert (
        ties.sort("recorded_at", "stream_id", "version")["index"].to_list()
        == ties["index"].to_list()
    )


def test_orders_are_placed_inside_the_window():
    start = datetime(2025, 3, 1, 6, 30, 17, 500_000, tzinfo=timezone.utc)  # mid-minute
    frame = generate_orders(3000, seed=4, start=start, days=2.5001)
    placed = frame.filter(pl.col("event_type") == "OrderPlaced")["recorded_at"]
    assert placed.min() >= start
    assert placed.max() < start + timedelta(days=2.5001)
    # Later events follow their orders, hours to days after the window at most.
    assert frame["recorded_at"].max() < start + timedelta(days=2.5 + 10)


def test_a_start_in_another_time_zone_is_the_same_instant():
    cet = timezone(timedelta(hours=1))
    a = generate_orders(100, seed=1, start=datetime(2026, 1, 5, 1, 0, tzinfo=cet))
    b = generate_orders(100, seed=1, start=datetime(2026, 1, 5, 0, 0, tzinfo=timezone.utc))
    assert_frame_equal(a, b)


# ---------------------------------------------------------------------- realism
def test_night_hours_are_quieter_than_evening_hours():
    frame = generate_orders(20_000, seed=8, bursts_per_day=0)
    by_hour = (
        frame.filter(pl.col("event_type") == "OrderPlaced")
        .group_by(hour=pl.col("recorded_at").dt.hour())
        .len()
    )
    counts = dict(by_hour.iter_rows())
    night = sum(counts.get(h, 0) for h in range(2, 6))
    evening = sum(counts.get(h, 0) for h in range(19, 23))
    assert evening > 5 * night, counts


def test_bursts_make_short_windows_much_busier():
    def busiest_ten_minutes(bursts_per_day: float) -> int:
        frame = generate_orders(20_000, seed=9, days=10, bursts_per_day=bursts_per_day)
        placed = frame.filter(pl.col("event_type") == "OrderPlaced")
        return placed.group_by(pl.col("recorded_at").dt.truncate("10m")).len()["len"].max()

    assert busiest_ten_minutes(2.0) > 1.8 * busiest_ten_minutes(0.0)


def test_customers_repeat_and_a_few_order_a_lot(orders):
    per_customer = orders.filter(pl.col("event_type") == "OrderPlaced").group_by("customer").len()
    counts = np.sort(per_customer["len"].to_numpy())[::-1]
    assert (counts >= 2).sum() > 0.2 * counts.size  # repeat purchases are common
    top = counts[: math.ceil(0.1 * counts.size)].sum()
    assert top > 0.25 * counts.sum()  # the top tenth of customers place a quarter or more


def test_a_few_products_sell_most(orders):
    lines = orders.filter(pl.col("event_type") == "ItemAdded").group_by("sku").len()
    counts = np.sort(lines["len"].to_numpy())[::-1]
    assert counts[: math.ceil(0.1 * 500)].sum() > 0.35 * counts.sum()


def test_checkout_shape_gives_exactly_ten_events_per_order():
    """items_per_order=8 with no removals, failures, cancellations or shipping: the
    benchmark shape, OrderPlaced + 8 x ItemAdded + PaymentReceived."""
    frame = generate_orders(500, seed=1, **CHECKOUT)
    assert frame.height == 10 * 500
    expected = ["OrderPlaced", *["ItemAdded"] * 8, "PaymentReceived"]
    assert (histories(frame)["event_type"].to_list()) == [expected] * 500
    assert expected_events_per_order(**CHECKOUT) == 10.0


@pytest.mark.parametrize(
    "knobs",
    [{}, CHECKOUT, dict(items_per_order=(2, 9), p_remove=0.5, p_payment_failed=0.4, p_retry=0.5)],
    ids=["default", "checkout", "eventful"],
)
def test_expected_events_per_order_matches_the_generated_mean(knobs):
    frame = generate_orders(20_000, seed=3, **knobs)
    mean = frame.height / 20_000
    assert mean == pytest.approx(expected_events_per_order(**knobs), rel=0.02)


# ---------------------------------------------------------------------- properties
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 60),
    seed=st.integers(0, 2**32),
    items=st.one_of(
        st.integers(1, 4),
        st.tuples(st.integers(1, 3), st.integers(0, 4)).map(lambda t: (t[0], t[0] + t[1])),
    ),
    p_remove=st.floats(0, 1),
    fates=st.tuples(st.floats(0, 0.5), st.floats(0, 0.5)),
    p_fail=st.floats(0, 1),
    p_retry=st.floats(0, 1),
    p_ship=st.floats(0, 1),
    days=st.floats(0.01, 5),
)
def test_any_knobs_give_valid_histories(
    n, seed, items, p_remove, fates, p_fail, p_retry, p_ship, days
):
    frame = generate_orders(
        n, seed=seed, items_per_order=items, p_remove=p_remove, p_abandon=fates[0],
        p_cancel=fates[1], p_payment_failed=p_fail, p_retry=p_retry, p_ship=p_ship, days=days,
        skus=7, customers=5,
    )  # fmt: skip
    assert order_violations(frame).height == 0
    assert frame["stream_id"].n_unique() == n
    assert frame["recorded_at"].is_sorted()
    lo, hi = (items, items) if isinstance(items, int) else items
    added = histories(frame)["event_type"].list.count_matches("ItemAdded")
    assert added.min() >= lo and added.max() <= hi


# ---------------------------------------------------------------------- the rule checker itself
def _valid() -> pl.DataFrame:
    """Two orders: o1 placed, two items, one removed, failed once, paid, shipped; o2 cancelled."""
    t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
    rows = [
        ("order-1", "OrderPlaced", dict(customer="c-1")),
        ("order-1", "ItemAdded", dict(sku="a", quantity=2, price=500)),
        ("order-1", "ItemAdded", dict(sku="b", quantity=1, price=250)),
        ("order-1", "ItemRemoved", dict(sku="a", quantity=1)),
        ("order-1", "PaymentFailed", dict(amount=750, reason="card declined")),
        ("order-1", "PaymentReceived", dict(amount=750)),
        ("order-1", "OrderShipped", {}),
        ("order-2", "OrderPlaced", dict(customer="c-2")),
        ("order-2", "ItemAdded", dict(sku="a", quantity=1, price=500)),
        ("order-2", "OrderCancelled", dict(reason="changed mind")),
    ]
    return _frame(rows, t0)


def _frame(rows, t0=datetime(2026, 1, 5, tzinfo=timezone.utc)) -> pl.DataFrame:
    version: dict[str, int] = {}
    out = []
    for i, (sid, etype, data) in enumerate(rows):
        version[sid] = version.get(sid, 0) + 1
        out.append({
            "stream_id": sid, "version": version[sid], "event_type": etype,
            "recorded_at": t0 + timedelta(minutes=i), "order_id": sid.removeprefix("order-"),
            **{k: data.get(k) for k in PAYLOAD_FIELDS if k != "order_id"},
        })  # fmt: skip
    return pl.DataFrame(out, schema=ORDER_FRAME_SCHEMA)


def test_the_checker_accepts_a_hand_written_valid_history():
    assert order_violations(_valid()).height == 0


def _rows_of(frame):
    return [
        (
            r["stream_id"],
            r["event_type"],
            {
                k: r[k]
                for k in ("customer", "sku", "quantity", "price", "amount", "reason")
                if r[k] is not None
            },
        )
        for r in frame.iter_rows(named=True)
    ]


def _broken(kind: str) -> pl.DataFrame:
    rows = _rows_of(_valid())
    if kind == "does not start with OrderPlaced":
        rows = rows[1:]
    elif kind == "item change after payment":
        rows.insert(6, ("order-1", "ItemAdded", dict(sku="c", quantity=1, price=10)))
    elif kind == "removes more than the order holds":
        rows[3] = ("order-1", "ItemRemoved", dict(sku="b", quantity=2))
    elif kind == "second PaymentReceived":
        rows.insert(6, ("order-1", "PaymentReceived", dict(amount=750)))
    elif kind == "amount is not the order total":
        rows[5] = ("order-1", "PaymentReceived", dict(amount=751))
    elif kind == "shipped before payment":
        rows.insert(4, ("order-1", "OrderShipped", {}))
    elif kind == "event after OrderCancelled":
        rows.append(("order-2", "ItemAdded", dict(sku="b", quantity=1, price=250)))
    elif kind == "event after OrderShipped":
        rows.append(("order-1", "OrderCancelled", dict(reason="too late")))
    elif kind == "missing field":
        rows[1] = ("order-1", "ItemAdded", dict(sku="a", quantity=2))
    elif kind == "unknown event type":
        rows.insert(2, ("order-1", "ItemLiked", {}))
    elif kind == "quantity not positive":
        rows[2] = ("order-1", "ItemAdded", dict(sku="b", quantity=0, price=250))
    elif kind == "OrderPlaced after the start":
        rows.insert(2, ("order-1", "OrderPlaced", dict(customer="c-1")))
    else:
        raise AssertionError(kind)
    return _frame(rows)


@pytest.mark.parametrize(
    "rule",
    [
        "does not start with OrderPlaced", "item change after payment",
        "removes more than the order holds", "second PaymentReceived",
        "amount is not the order total", "shipped before payment", "event after OrderCancelled",
        "event after OrderShipped", "missing field", "unknown event type",
        "quantity not positive", "OrderPlaced after the start",
    ],
)  # fmt: skip
def test_the_checker_reports_each_broken_rule(rule):
    assert rule in ORDER_RULES
    found = order_violations(_broken(rule))
    assert rule in found["rule"].to_list(), found


def test_the_checker_reports_gaps_in_versions_and_time_going_back():
    frame = _valid()
    gap = frame.with_columns(
        version=pl.when(pl.col("version") >= 3)
        .then(pl.col("version") + 1)
        .otherwise(pl.col("version"))
    )
    assert "versions not 1..n" in order_violations(gap)["rule"].to_list()
    back = frame.with_columns(
        recorded_at=pl.when((pl.col("stream_id") == "order-1") & (pl.col("version") == 3))
        .then(pl.col("recorded_at") - timedelta(hours=1))
        .otherwise(pl.col("recorded_at"))
    )
    found = order_violations(back)
    assert found.select("stream_id", "version", "rule").rows() == [
        ("order-1", 3, "time goes backwards")
    ]


def test_the_checker_names_missing_columns():
    with pytest.raises(ValueError, match="missing: version"):
        order_violations(pl.DataFrame({"stream_id": ["order-1"], "event_type": ["OrderPlaced"]}))


# ---------------------------------------------------------------------- into the stores
def test_the_frame_appends_into_a_store_and_reads_back_equal(store, orders):
    positions = store.append_frame(orders)
    assert positions == range(1, orders.height + 1)
    back = store.to_polars()
    assert_frame_equal(back.select(orders.columns), orders)
    assert back["position"].to_list() == list(range(1, orders.height + 1))
    assert len(store.streams()) == 4000
    assert (
        store.stream_version("order-000000")
        == orders.filter(pl.col("stream_id") == "order-000000").height
    )
    # Each type is stored with exactly its own fields.
    assert set(store.schema("OrderShipped")) == {"order_id"}
    assert set(store.schema("ItemAdded")) == {"order_id", "sku", "quantity", "price"}


def test_read_stream_returns_an_orders_history(store):
    frame = generate_orders(50, seed=1)
    store.append_frame(frame)
    sid = frame["stream_id"][0]
    events = store.read_stream(sid)
    expected = frame.filter(pl.col("stream_id") == sid)
    assert [e.event_type for e in events] == expected["event_type"].to_list()
    assert events[0].data["customer"] == expected["customer"][0]


# ---------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_orders=-1), r"'n_orders' must be an int >= 0 \(got -1\)"),
        (dict(n_orders=2.5), r"'n_orders' must be an int >= 0 \(got 2.5\)"),
        (dict(seed=-3), r"'seed' must be an int >= 0 or a numpy.random.Generator \(got -3\)"),
        (dict(seed="x"), r"'seed' must be .* \(got 'x'\)"),
        (dict(start=datetime(2026, 1, 1)), r"'start' must be a timezone-aware datetime"),
        (dict(days=0), r"'days' must be > 0 \(got 0\)"),
        (dict(days=float("nan")), r"'days' must be a finite number >= 0 \(got nan\)"),
        (dict(customers=0), r"'customers' must be an int >= 1 \(got 0\)"),
        (dict(skus=0), r"'skus' must be an int >= 1 \(got 0\)"),
        (dict(items_per_order=0), r"'items_per_order' must be an int >= 1 \(got 0\)"),
        (dict(items_per_order=(3, 2)), r"'items_per_order\[1\]' must be an int >= 3 \(got 2\)"),
        (
            dict(items_per_order="8"),
            r"'items_per_order' must be an int >= 1 or a \(low, high\) pair",
        ),
        (dict(p_remove=1.5), r"'p_remove' must be a probability between 0 and 1 \(got 1.5\)"),
        (dict(p_ship=-0.1), r"'p_ship' must be a probability between 0 and 1 \(got -0.1\)"),
        (dict(p_abandon=0.6, p_cancel=0.5), r"'p_abandon' \+ 'p_cancel' must be <= 1"),
        (dict(bursts_per_day=-1), r"'bursts_per_day' must be a finite number >= 0 \(got -1\)"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(kwargs, message):
    kwargs = {"n_orders": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_orders(kwargs.pop("n_orders"), **kwargs)


def test_the_progress_bar_does_not_change_the_frame(monkeypatch):
    import esnotebook.datasets.orders as orders_module

    monkeypatch.setattr(orders_module, "PROGRESS_FROM", 10)
    assert_frame_equal(
        generate_orders(200, seed=4, progress=True), generate_orders(200, seed=4, progress=False)
    )
