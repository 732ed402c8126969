"""The rules of a valid order history, checked over a whole event frame at once.

Useful on generated data, on a store's ``to_polars()``, and on whatever a command handler or
an import wrote: every broken rule comes back as a row naming the event and the rule.
"""

from __future__ import annotations

import polars as pl

from .orders import ORDER_EVENT_TYPES, ORDER_FRAME_SCHEMA, PAYLOAD_FIELDS

__all__ = ["ORDER_RULES", "order_violations"]

#: Payload fields each order event type must carry (not null).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "OrderPlaced": ("order_id", "customer"),
    "ItemAdded": ("order_id", "sku", "quantity", "price"),
    "ItemRemoved": ("order_id", "sku", "quantity"),
    "PaymentReceived": ("order_id", "amount"),
    "PaymentFailed": ("order_id", "amount", "reason"),
    "OrderShipped": ("order_id",),
    "OrderCancelled": ("order_id", "reason"),
}

#: Each rule's name and what it means; :func:`order_violations` reports these names.
ORDER_RULES: dict[str, str] = {
    "unknown event type": "the event type is not one of the order domain's",
    "missing field": "a field the event type requires is null or absent",
    "stream and order_id disagree": "an order's stream is named order-<order_id>",
    "versions not 1..n": "a stream's versions run 1, 2, ... without gaps",
    "does not start with OrderPlaced": "the first event of a stream is OrderPlaced",
    "OrderPlaced after the start": "OrderPlaced is only the first event",
    "quantity not positive": "items are added and removed in quantities >= 1",
    "price negative": "a unit price is >= 0 cents",
    "item change after payment": "items are added or removed only before PaymentReceived",
    "removes more than the order holds": (
        "ItemRemoved never removes more of a sku than is in the order"
    ),
    "second PaymentReceived": "an order is paid at most once",
    "amount is not the order total": "PaymentReceived's amount is the order total at that moment",
    "shipped before payment": "OrderShipped comes only after PaymentReceived",
    "event after OrderCancelled": "nothing follows OrderCancelled",
    "event after OrderShipped": "nothing follows OrderShipped",
    "time goes backwards": "an order's events are recorded in non-decreasing time",
}


def order_violations(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Every event of ``frame`` that breaks a rule of a valid order history.

    ``frame`` is an event frame of order streams (from :func:`generate_orders` or a
    store's ``to_polars()``): ``stream_id, version, event_type`` and the payload fields
    ``order_id, customer, sku, quantity, price, amount, reason`` (``recorded_at`` too, if
    time order is to be checked). Rows may come in any order. The rules are listed in
    :data:`ORDER_RULES`; the value of an ``ItemRemoved`` is its quantity times the price
    the same sku was last added at in that order.

    Returns
    -------
    polars.DataFrame
        One row per broken rule per event: ``stream_id, version, event_type, rule``,
        sorted by stream and version. Empty when every history is valid.

    Examples
    --------
    >>> from esnotebook.datasets import generate_orders, order_violations
    >>> order_violations(generate_orders(200, seed=3)).height
    0
    """
    lf = frame.lazy()
    names = lf.collect_schema().names()
    missing = [c for c in ("stream_id", "version", "event_type") if c not in names]
    if missing:
        raise ValueError(
            f"order_violations needs the columns stream_id, version and event_type "
            f"(missing: {', '.join(missing)}; got {', '.join(names)})"
        )
    payload = {name: ORDER_FRAME_SCHEMA[name] for name in PAYLOAD_FIELDS}
    lf = lf.with_columns(
        pl.lit(None, dtype).alias(name) for name, dtype in payload.items() if name not in names
    ).sort("stream_id", "version")

    stream = "stream_id"
    kind = pl.col("event_type")

    def is_(t: str) -> pl.Expr:
        return kind == t

    def seen_before(t: str) -> pl.Expr:
        """How many events of type ``t`` came earlier in the same stream."""
        mark = is_(t).cast(pl.Int64)
        return mark.cum_sum().over(stream) - mark

    added, removed = is_("ItemAdded"), is_("ItemRemoved")
    qty = pl.col("quantity").fill_null(0)
    held = (
        pl.when(added).then(qty).when(removed).then(-qty).otherwise(0)
        .cum_sum().over([stream, "sku"])
    )  # fmt: skip
    added_price = pl.when(added).then(pl.col("price")).forward_fill().over([stream, "sku"])
    value = (
        pl.when(added).then(qty * pl.col("price").fill_null(0))
        .when(removed).then(-qty * added_price.fill_null(0))
        .otherwise(0)
    )  # fmt: skip
    total_before = value.cum_sum().over(stream) - value
    missing_field = pl.lit(False)
    for t, fields in REQUIRED_FIELDS.items():
        missing_field = missing_field | (
            is_(t) & pl.any_horizontal(pl.col(f).is_null() for f in fields)
        )

    rules: dict[str, pl.Expr] = {
        "unknown event type": ~kind.is_in(ORDER_EVENT_TYPES),
        "missing field": missing_field,
        "stream and order_id disagree": pl.col("order_id").is_not_null()
        & (pl.col(stream) != pl.lit("order-") + pl.col("order_id")),
        "versions not 1..n": pl.col("version") != pl.int_range(1, pl.len() + 1).over(stream),
        "does not start with OrderPlaced": (pl.col("version") == 1) & ~is_("OrderPlaced"),
        "OrderPlaced after the start": is_("OrderPlaced") & (pl.col("version") != 1),
        "quantity not positive": (added | removed) & (pl.col("quantity") <= 0),
        "price negative": added & (pl.col("price") < 0),
        "item change after payment": (added | removed) & (seen_before("PaymentReceived") > 0),
        "removes more than the order holds": removed & (held < 0),
        "second PaymentReceived": is_("PaymentReceived") & (seen_before("PaymentReceived") > 0),
        "amount is not the order total": is_("PaymentReceived")
        & (pl.col("amount") != total_before),
        "shipped before payment": is_("OrderShipped") & (seen_before("PaymentReceived") == 0),
        "event after OrderCancelled": seen_before("OrderCancelled") > 0,
        "event after OrderShipped": seen_before("OrderShipped") > 0,
    }
    if "recorded_at" in names:
        rules["time goes backwards"] = pl.col("recorded_at") < pl.col("recorded_at").shift(1).over(
            stream
        )
    assert set(rules) <= set(ORDER_RULES)

    flagged = lf.select(
        stream, "version", "event_type",
        *(expr.fill_null(False).alias(rule) for rule, expr in rules.items()),
    )  # fmt: skip
    return (
        flagged.unpivot(index=[stream, "version", "event_type"], variable_name="rule")
        .filter(pl.col("value"))
        .drop("value")
        .sort(stream, "version", "rule")
        .collect()
    )
