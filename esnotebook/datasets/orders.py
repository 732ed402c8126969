"""A synthetic, internally consistent order history: the workload every part of esnotebook
is taught, tested and benchmarked on.

Streams are named ``order-<order_id>`` and hold the order domain's events (money is integer
cents)::

    OrderPlaced      {order_id, customer}
    ItemAdded        {order_id, sku, quantity, price}      price: unit price
    ItemRemoved      {order_id, sku, quantity}
    PaymentReceived  {order_id, amount}                    amount: the order total
    PaymentFailed    {order_id, amount, reason}
    OrderShipped     {order_id}
    OrderCancelled   {order_id, reason}

Everything is drawn at once with numpy and assembled with polars: there is no loop over
orders or events, so ten million events take seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import polars as pl

from .._schema import UTC_DATETIME
from ..readmodels.orders import ORDER_FIELDS
from ._draws import (
    alias_choice,
    clock_times,
    nullable,
    outcome_counts,
    placement_times,
    zipf_choice,
)

__all__ = [
    "DEFAULT_START",
    "ORDER_EVENT_TYPES",
    "ORDER_FRAME_SCHEMA",
    "PAYLOAD_FIELDS",
    "expected_events_per_order",
    "generate_orders",
]

#: The order domain's event types; a type's code in the generator is its index here.
ORDER_EVENT_TYPES: tuple[str, ...] = (
    "OrderPlaced",
    "ItemAdded",
    "ItemRemoved",
    "PaymentReceived",
    "PaymentFailed",
    "OrderShipped",
    "OrderCancelled",
)
PLACED, ADDED, REMOVED, PAID, FAILED, SHIPPED, CANCELLED = range(7)

#: Columns and dtypes of :func:`generate_orders`' frame, in order.
ORDER_FRAME_SCHEMA: dict[str, pl.DataType] = {
    "stream_id": pl.String(),
    "version": pl.Int64(),
    "event_type": pl.String(),
    "recorded_at": UTC_DATETIME,
    **ORDER_FIELDS,  # the payload fields the order read models read
    "reason": pl.String(),
}

#: The payload fields of the order domain (the columns after the header).
PAYLOAD_FIELDS: tuple[str, ...] = tuple(ORDER_FRAME_SCHEMA)[4:]

#: A Monday, so that the first day of a default history is an ordinary weekday.
DEFAULT_START = datetime(2026, 1, 5, tzinfo=timezone.utc)

PAYMENT_FAILURE_REASONS = ("card declined", "insufficient funds", "card expired", "fraud check")
_FAILURE_WEIGHTS = (0.55, 0.25, 0.12, 0.08)
CUSTOMER_CANCEL_REASONS = (
    "changed mind",
    "found a better price",
    "ordered by mistake",
    "delivery too slow",
)
_CANCEL_WEIGHTS = (0.4, 0.25, 0.2, 0.15)
GAVE_UP_REASON = "payment failed"

#: At most this many payment attempts per order; an order whose last attempt fails is cancelled.
MAX_PAYMENT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class _Knobs:
    """The validated knobs of one :func:`generate_orders` call."""

    n_orders: int
    start: datetime
    days: float
    customers: int
    skus: int
    items: tuple[int, int]
    p_remove: float
    p_abandon: float
    p_cancel: float
    p_payment_failed: float
    p_retry: float
    p_ship: float
    bursts_per_day: float
    customer_skew: float
    sku_skew: float


def generate_orders(
    n_orders: int,
    *,
    seed: int | np.random.Generator = 0,
    start: datetime = DEFAULT_START,
    days: float = 30,
    customers: int | None = None,
    skus: int = 500,
    items_per_order: int | tuple[int, int] = (1, 6),
    p_remove: float = 0.1,
    p_abandon: float = 0.04,
    p_cancel: float = 0.03,
    p_payment_failed: float = 0.08,
    p_retry: float = 0.7,
    p_ship: float = 0.9,
    bursts_per_day: float = 0.5,
    customer_skew: float = 0.8,
    sku_skew: float = 1.1,
    progress: bool = True,
) -> pl.DataFrame:
    """A realistic, internally consistent order history as an event frame.

    Each order is placed by a customer (a few customers order often: Zipf-like), gets
    1..k items from a catalogue with skewed popularity and fixed prices, sometimes loses
    one again, and then is abandoned (left open), cancelled, or goes to payment. A payment
    attempt may fail; a failed order is retried (up to three attempts) or cancelled. A paid
    order is shipped hours to days later, or is still waiting. Orders are placed with a
    daily rhythm (quiet nights, busy evenings, a little busier at weekends) and occasional
    bursts (flash sales); each order's events follow over minutes to days, in causal order.

    The frame is ready for ``store.append_frame(frame)``.

    Parameters
    ----------
    n_orders
        Number of orders (streams).
    seed
        Seed of the numpy random generator (or a ``numpy.random.Generator``); the same
        seed and knobs give the identical frame.
    start
        When the first order may be placed (timezone-aware).
    days
        Orders are placed within ``days`` after ``start``; their later events (payments,
        shipping) may fall after that window.
    customers
        Number of distinct customers (default: one per three orders, at least one).
    skus
        Number of products in the catalogue.
    items_per_order
        ``ItemAdded`` events per order: an exact count, or an inclusive ``(low, high)``
        range with small orders more common.
    p_remove
        Probability that an order with two or more items has one ``ItemRemoved``.
    p_abandon
        Probability that an order is left open after its items (never paid or cancelled).
    p_cancel
        Probability that an order is cancelled by the customer before any payment.
    p_payment_failed
        Probability that a payment attempt fails.
    p_retry
        Probability that a failed payment is retried (otherwise the order is cancelled).
    p_ship
        Probability that a paid order is shipped (otherwise it is still open).
    bursts_per_day
        Mean number of bursts per day: windows of 10-90 minutes with 3-8 times the usual
        rate of new orders.
    customer_skew, sku_skew
        Zipf exponents of customer activity and product popularity (0: uniform).
    progress
        Show a ``tqdm.auto`` progress bar over the steps of a large generation (from
        200,000 orders; silent when ``TQDM_DISABLE`` is set or output is not a terminal).

    Returns
    -------
    polars.DataFrame
        Columns ``stream_id, version, event_type, recorded_at`` (``Datetime(us, UTC)``),
        then the payload fields ``order_id, customer, sku, quantity, price, amount,
        reason`` (null where an event type lacks the field); rows in ``recorded_at``
        order, ties broken by order and version; versions of each stream ``1..n``.

    Examples
    --------
    >>> from esnotebook.datasets import generate_orders
    >>> frame = generate_orders(1000, seed=7)
    >>> frame.columns[:4]
    ['stream_id', 'version', 'event_type', 'recorded_at']
    >>> frame.filter(pl.col("version") == 1)["event_type"].unique().to_list()
    ['OrderPlaced']

    The benchmark shape, exactly ten events per order (placed, eight items, paid):

    >>> checkout = generate_orders(100, items_per_order=8, p_remove=0, p_abandon=0,
    ...                            p_cancel=0, p_payment_failed=0, p_ship=0)
    >>> checkout.height
    1000
    """
    k = _check_knobs(
        n_orders, start=start, days=days, customers=customers, skus=skus,
        items_per_order=items_per_order, p_remove=p_remove, p_abandon=p_abandon,
        p_cancel=p_cancel, p_payment_failed=p_payment_failed, p_retry=p_retry, p_ship=p_ship,
        bursts_per_day=bursts_per_day, customer_skew=customer_skew, sku_skew=sku_skew,
    )  # fmt: skip
    rng = _rng(seed)
    if k.n_orders == 0:
        return pl.DataFrame(schema=ORDER_FRAME_SCHEMA)
    if not progress or k.n_orders < PROGRESS_FROM:
        return _generate(k, rng, _NoBar())
    from .._progress import progress_bar

    with progress_bar(total=_STEPS, desc=f"generating {k.n_orders:,} orders", unit="step") as bar:
        return _generate(k, rng, bar)


#: Generations of at least this many orders show a progress bar.
PROGRESS_FROM = 200_000
_STEPS = 5


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


def _generate(k: _Knobs, rng: np.random.Generator, bar: Any) -> pl.DataFrame:
    n = k.n_orders
    # --- the catalogue and the customers
    prices = _catalogue_prices(k.skus, rng)
    customer_of = zipf_choice(k.customers, n, k.customer_skew, rng)

    # --- what happens to each order (counts of each kind of event)
    lo, hi = k.items
    n_items = lo + _small_counts(hi - lo, n, rng)
    removes = (n_items >= 2) & (rng.random(n) < k.p_remove)
    u = rng.random(n)
    abandoned = u < k.p_abandon
    cancelled_early = (u >= k.p_abandon) & (u < k.p_abandon + k.p_cancel)
    pays = ~(abandoned | cancelled_early)
    failures, paid = outcome_counts(pays, k.p_payment_failed, k.p_retry, MAX_PAYMENT_ATTEMPTS, rng)
    gave_up = pays & ~paid
    cancelled = cancelled_early | gave_up
    shipped = paid & (rng.random(n) < k.p_ship)

    # --- one row per event: orders one after another, each a run of segments (placed,
    # items, removal, failed attempts, paid or cancelled, shipped) in version order
    lengths = np.stack(
        [np.ones(n, np.int64), n_items, removes, failures, paid | cancelled, shipped], 1
    )
    codes = np.tile(np.array([PLACED, ADDED, REMOVED, FAILED, PAID, SHIPPED], np.int8), (n, 1))
    codes[cancelled, 4] = CANCELLED
    per_order = lengths.sum(axis=1)
    rows = _Rows.lay_out(codes.ravel(), lengths.ravel(), per_order)
    bar.update()

    # --- items, removals and the amounts they add up to
    n_lines = int(n_items.sum())
    line_sku = zipf_choice(k.skus, n_lines, k.sku_skew, rng)
    line_qty = np.minimum(rng.geometric(0.7, n_lines), 9).astype(np.int64)
    line_start = np.cumsum(n_items) - n_items
    gross = np.add.reduceat(prices[line_sku] * line_qty, line_start)
    removing = np.flatnonzero(removes)
    line = line_start[removing] + (rng.random(removing.size) * n_items[removing]).astype(np.int64)
    removed_sku = line_sku[line]
    removed_qty = 1 + (rng.random(removing.size) * line_qty[line]).astype(np.int64)
    order_total = gross
    order_total[removing] -= prices[removed_sku] * removed_qty

    # --- reasons
    failure_reason = alias_choice(np.array(_FAILURE_WEIGHTS), int(failures.sum()), rng)
    cancel_reason = np.where(
        gave_up, len(CUSTOMER_CANCEL_REASONS), alias_choice(np.array(_CANCEL_WEIGHTS), n, rng)
    ).astype(np.uint32)[cancelled]
    bar.update()

    # --- times: placement with the daily rhythm, then causal gaps inside each order
    placed_us = placement_times(
        n, days=k.days, bursts_per_day=k.bursts_per_day, start=k.start, rng=rng
    )
    at_us = clock_times(rows.code, per_order, placed_us, rng)
    bar.update()
    perm = np.argsort(at_us, kind="stable")  # ties keep (order, version) order
    bar.update()

    # --- into time order; each payload value is looked up by the row's rank within its type
    code, order, rank = rows.code[perm], rows.order[perm], rows.rank[perm]
    is_added, is_removed = code == ADDED, code == REMOVED
    is_failed, is_cancelled = code == FAILED, code == CANCELLED
    has_sku = is_added | is_removed
    sku = _lookup([line_sku, removed_sku], rank, is_removed)
    quantity = _lookup([line_qty, removed_qty], rank, is_removed)
    reason = _lookup(
        [failure_reason, cancel_reason + len(PAYMENT_FAILURE_REASONS)], rank, is_cancelled
    )

    width = max(6, len(str(n - 1)))
    order_ids = pl.int_range(n, dtype=pl.Int64, eager=True).cast(pl.String).str.zfill(width)
    reasons = pl.Series([*PAYMENT_FAILURE_REASONS, *CUSTOMER_CANCEL_REASONS, GAVE_UP_REASON])
    # Gathers take polars' native index type (UInt32): an Int64 index costs a conversion.
    o = pl.Series(order)
    frame = pl.DataFrame(
        [
            ("order-" + order_ids).gather(o).alias("stream_id"),
            pl.Series("version", rows.version[perm]),
            pl.Series(ORDER_EVENT_TYPES)
            .gather(pl.Series(code.astype(np.uint32)))
            .alias("event_type"),
            pl.Series("recorded_at", at_us[perm]).cast(pl.Datetime("us", "UTC")),
            order_ids.gather(o).alias("order_id"),
            _names("c", k.customers)
            .gather(nullable(customer_of[order], code == PLACED))
            .alias("customer"),
            _names("sku", k.skus).gather(nullable(sku, has_sku)).alias("sku"),
            nullable(quantity, has_sku).alias("quantity"),
            nullable(prices[sku], is_added).alias("price"),
            nullable(order_total[order], (code == PAID) | is_failed).alias("amount"),
            reasons.gather(nullable(reason, is_failed | is_cancelled)).alias("reason"),
        ]
    )
    bar.update()
    return frame


@dataclass(frozen=True, slots=True)
class _Rows:
    """The event rows of all orders, before sorting by time: orders one after another."""

    code: np.ndarray  # event type code (index into ORDER_EVENT_TYPES)
    order: np.ndarray  # order index
    version: np.ndarray  # 1..n within the order
    rank: np.ndarray  # index among the rows of the same event type, in this order

    @classmethod
    def lay_out(cls, codes: np.ndarray, lengths: np.ndarray, per_order: np.ndarray) -> _Rows:
        """Rows from segments: segment ``s`` is ``lengths[s]`` rows of type ``codes[s]``."""
        total = int(per_order.sum())
        starts = np.cumsum(per_order) - per_order
        order = np.repeat(np.arange(per_order.size, dtype=np.uint32), per_order)
        first_row = np.cumsum(lengths) - lengths
        first_rank = np.zeros(lengths.size, np.int64)
        for c in range(len(ORDER_EVENT_TYPES)):  # over the seven event types, not the rows
            same = codes == c
            first_rank[same] = np.cumsum(lengths[same]) - lengths[same]
        index = np.arange(total, dtype=np.int64)
        return cls(
            code=np.repeat(codes, lengths),
            order=order,
            version=index - np.repeat(starts - 1, per_order),
            rank=(index - np.repeat(first_row - first_rank, lengths)).astype(np.uint32),
        )


def _lookup(tables: list[np.ndarray], rank: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``tables[0][rank]``, or ``tables[1][rank]`` where ``second``; rows that belong to
    neither table get an arbitrary value (the caller masks them as null)."""
    joined = np.concatenate([*tables, np.zeros(1, tables[0].dtype)])
    return joined.take(
        rank + np.where(second, np.uint32(tables[0].size), np.uint32(0)), mode="clip"
    )


def _names(prefix: str, n: int) -> pl.Series:
    width = max(4, len(str(n - 1)))
    return (
        prefix + "-" + pl.int_range(n, dtype=pl.Int64, eager=True).cast(pl.String).str.zfill(width)
    )


def _catalogue_prices(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit prices in cents: log-normal around 20 EUR, ending in .99 like a shop's."""
    euros = np.exp(rng.normal(math.log(20.0), 0.9, n))
    return np.maximum(np.floor(euros), 0).astype(np.int64) * 100 + 99


def _small_counts(span: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws from ``0..span``, each value 0.6 times as likely as the one before."""
    if span == 0:
        return np.zeros(n, np.int64)
    weights = 0.6 ** np.arange(span + 1)
    return alias_choice(weights, n, rng).astype(np.int64)


def expected_events_per_order(
    *,
    items_per_order: int | tuple[int, int] = (1, 6),
    p_remove: float = 0.1,
    p_abandon: float = 0.04,
    p_cancel: float = 0.03,
    p_payment_failed: float = 0.08,
    p_retry: float = 0.7,
    p_ship: float = 0.9,
) -> float:
    """The mean number of events per order :func:`generate_orders` produces for these knobs.

    Use it to size a workload by events: ``n_orders = round(events / expected_events_per_order())``.

    Examples
    --------
    >>> expected_events_per_order(items_per_order=8, p_remove=0, p_abandon=0, p_cancel=0,
    ...                           p_payment_failed=0, p_ship=0)
    10.0
    """
    k = _check_knobs(
        1, start=DEFAULT_START, days=1, customers=None, skus=1, items_per_order=items_per_order,
        p_remove=p_remove, p_abandon=p_abandon, p_cancel=p_cancel,
        p_payment_failed=p_payment_failed, p_retry=p_retry, p_ship=p_ship,
        bursts_per_day=0, customer_skew=0, sku_skew=0,
    )  # fmt: skip
    lo, hi = k.items
    weights = 0.6 ** np.arange(hi - lo + 1)
    weights /= weights.sum()
    mean_items = lo + float((np.arange(hi - lo + 1) * weights).sum())
    p_two_or_more = 1.0 if lo >= 2 else 1.0 - float(weights[0]) if hi >= 2 else 0.0
    f, r = k.p_payment_failed, k.p_retry
    # Attempt a (1-based) happens with probability (f r)^(a-1); each attempt that fails adds
    # an event; the order is paid when an attempt succeeds.
    reach = [(f * r) ** a for a in range(MAX_PAYMENT_ATTEMPTS)]
    mean_failures = f * sum(reach)
    p_paid = (1 - f) * sum(reach)
    goes_to_payment = 1 - k.p_abandon - k.p_cancel
    paid = goes_to_payment * p_paid
    cancelled = k.p_cancel + goes_to_payment * (1 - p_paid)
    return (
        1 + mean_items + k.p_remove * p_two_or_more + goes_to_payment * mean_failures
        + paid + cancelled + paid * k.p_ship
    )  # fmt: skip


# ---------------------------------------------------------------------- argument checks
def _rng(seed: object) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"'seed' must be an int >= 0 or a numpy.random.Generator (got {seed!r})")
    return np.random.default_rng(int(seed))


def _int_at_least(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"'{name}' must be an int >= {minimum} (got {value!r})")
    return int(value)


def _probability(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.number))
        or not 0 <= value <= 1
    ):
        raise ValueError(f"'{name}' must be a probability between 0 and 1 (got {value!r})")
    return float(value)


def _non_negative(name: str, value: object) -> float:
    if (
        isinstance(value, bool) or not isinstance(value, (int, float, np.number))
        or not math.isfinite(value) or value < 0
    ):  # fmt: skip
        raise ValueError(f"'{name}' must be a finite number >= 0 (got {value!r})")
    return float(value)


def _items(value: object) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        n = _int_at_least("items_per_order", value, 1)
        return n, n
    if isinstance(value, (tuple, list)) and len(value) == 2:
        lo = _int_at_least("items_per_order[0]", value[0], 1)
        hi = _int_at_least("items_per_order[1]", value[1], lo)
        return lo, hi
    raise ValueError(
        f"'items_per_order' must be an int >= 1 or a (low, high) pair with 1 <= low <= high "
        f"(got {value!r})"
    )


def _check_knobs(
    n_orders: object,
    *,
    start: object,
    days: object,
    customers: object,
    skus: object,
    items_per_order: object,
    p_remove: object,
    p_abandon: object,
    p_cancel: object,
    p_payment_failed: object,
    p_retry: object,
    p_ship: object,
    bursts_per_day: object,
    customer_skew: object,
    sku_skew: object,
) -> _Knobs:
    n = _int_at_least("n_orders", n_orders, 0)
    if not isinstance(start, datetime) or start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(
            f"'start' must be a timezone-aware datetime, e.g. datetime(2026, 1, 5, "
            f"tzinfo=timezone.utc) (got {start!r})"
        )
    span = _non_negative("days", days)
    if span == 0:
        raise ValueError(f"'days' must be > 0 (got {days!r})")
    if customers is None:
        customers = max(1, n // 3)
    p_abandon_, p_cancel_ = _probability("p_abandon", p_abandon), _probability("p_cancel", p_cancel)
    if p_abandon_ + p_cancel_ > 1:
        raise ValueError(
            "'p_abandon' + 'p_cancel' must be <= 1: they are exclusive fates of an order "
            f"(got {p_abandon_} + {p_cancel_} = {p_abandon_ + p_cancel_})"
        )
    return _Knobs(
        n_orders=n,
        start=start.astimezone(timezone.utc),
        days=span,
        customers=_int_at_least("customers", customers, 1),
        skus=_int_at_least("skus", skus, 1),
        items=_items(items_per_order),
        p_remove=_probability("p_remove", p_remove),
        p_abandon=p_abandon_,
        p_cancel=p_cancel_,
        p_payment_failed=_probability("p_payment_failed", p_payment_failed),
        p_retry=_probability("p_retry", p_retry),
        p_ship=_probability("p_ship", p_ship),
        bursts_per_day=_non_negative("bursts_per_day", bursts_per_day),
        customer_skew=_non_negative("customer_skew", customer_skew),
        sku_skew=_non_negative("sku_skew", sku_skew),
    )
