"""Sales read models over the order events: revenue per day and SKU, value per customer."""

from __future__ import annotations

from typing import Any

import polars as pl

from .._schema import UTC_DATETIME
from ..projections import VectorisedProjection
from .orders import ORDER_FIELDS, _is

__all__ = ["CustomerValue", "RevenueByDaySku"]

REVENUE_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "sku": pl.String(),
    "units": pl.Int64(),
    "revenue": pl.Int64(),
    "orders": pl.UInt32(),
}


class RevenueByDaySku(VectorisedProjection):
    """Paid revenue per UTC day and SKU: units sold, revenue (cents) and orders.

    An order's lines count on the day its ``PaymentReceived`` was recorded, at the unit
    price they were added at (removals valued at the SKU's latest price, as in
    :class:`OrderSummary`). It keeps the open orders' lines in its state, keyed by
    ``order_id`` with ``day`` null, until they are paid; :meth:`report` drops them.

    Examples
    --------
    >>> import esnotebook as es
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append("order-1", [
    ...     es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "ada"}),
    ...     es.NewEvent("ItemAdded", {"order_id": "1", "sku": "tea", "quantity": 2, "price": 350}),
    ...     es.NewEvent("PaymentReceived", {"order_id": "1", "amount": 700}),
    ... ])
    >>> p = RevenueByDaySku()
    >>> p.report(p.rebuild(store.scan())).select("sku", "units", "revenue").row(0)
    ('tea', 2, 700)
    """

    key = "sku"
    schema = {**REVENUE_SCHEMA, "order_id": pl.String(), "price": pl.Int64()}
    event_types = ("ItemAdded", "ItemRemoved", "PaymentReceived")
    fields = ORDER_FIELDS

    def fold(self, state: pl.LazyFrame, events: pl.LazyFrame) -> pl.LazyFrame:
        paid_rows = state.filter(pl.col("day").is_not_null())
        open_rows = state.filter(pl.col("day").is_null()).select(
            "order_id", "sku", pl.lit(0, pl.Int64).alias("position"),
            pl.col("units").alias("quantity"), "price", pl.col("revenue").alias("value"),
        )  # fmt: skip
        items = events.filter(_is("ItemAdded", "ItemRemoved")).select(
            "order_id", "sku", "position",
            pl.when(_is("ItemAdded")).then(pl.col("quantity")).otherwise(-pl.col("quantity")).alias("quantity"),
            pl.when(_is("ItemAdded")).then(pl.col("price")).alias("price"),
            pl.lit(None, pl.Int64).alias("value"),
        )  # fmt: skip
        lines = (
            pl.concat([open_rows, items])
            .with_columns(pl.col("price").forward_fill().over(["order_id", "sku"], order_by="position"))
            # A carried-over open line brings its value so far; new rows are valued here.
            .with_columns(pl.coalesce("value", pl.col("quantity") * pl.col("price")).alias("value"))
            .group_by("order_id", "sku")
            .agg(
                pl.col("quantity").sum().alias("units"),
                pl.col("price").last(),
                pl.col("value").sum().alias("revenue"),
            )
        )
        payments = events.filter(_is("PaymentReceived")).select(
            "order_id", pl.col("recorded_at").dt.date().alias("day")
        )
        lines = lines.join(payments, on="order_id", how="left")
        still_open = lines.filter(pl.col("day").is_null()).select(
            pl.lit(None, pl.Date).alias("day"), "sku", "units", "revenue",
            pl.lit(0, pl.UInt32).alias("orders"), "order_id", "price",
        )  # fmt: skip
        sold = lines.filter(pl.col("day").is_not_null() & (pl.col("units") != 0)).select(
            "day", "sku", "units", "revenue", pl.lit(1, pl.UInt32).alias("orders"),
            pl.lit(None, pl.String).alias("order_id"), pl.lit(None, pl.Int64).alias("price"),
        )  # fmt: skip
        merged = (
            pl.concat([paid_rows, sold])
            .group_by("day", "sku")
            .agg(pl.col("units").sum(), pl.col("revenue").sum(), pl.col("orders").sum())
            .select(
                *REVENUE_SCHEMA,
                pl.lit(None, pl.String).alias("order_id"), pl.lit(None, pl.Int64).alias("price"),
            )  # fmt: skip
        )
        return pl.concat([merged, still_open]).sort("day", "sku", "order_id", nulls_last=True)

    def run(self, state: pl.DataFrame, events: pl.LazyFrame | pl.DataFrame, **kwargs: Any) -> pl.DataFrame:
        out = super().run(state, events, **kwargs)
        return out.sort("day", "sku", "order_id", nulls_last=True)

    @staticmethod
    def report(state: pl.DataFrame) -> pl.DataFrame:
        """The paid rows only: ``day, sku, units, revenue, orders``."""
        return state.filter(pl.col("day").is_not_null()).select(list(REVENUE_SCHEMA))


CUSTOMER_SCHEMA: dict[str, pl.DataType] = {
    "customer": pl.String(),
    "orders": pl.UInt32(),
    "paid_orders": pl.UInt32(),
    "lifetime_value": pl.Int64(),
    "first_order_at": UTC_DATETIME,
    "last_paid_at": UTC_DATETIME,
}


class CustomerValue(VectorisedProjection):
    """Per customer: orders placed, orders paid, lifetime value (cents paid), first/last dates.

    Payments carry the order id, not the customer, so the state remembers which customer
    placed each order that is not paid yet (rows with ``customer`` null, ``pending_order``
    set); :meth:`report` drops them.

    Examples
    --------
    >>> import esnotebook as es
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append("order-1", [
    ...     es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "ada"}),
    ...     es.NewEvent("PaymentReceived", {"order_id": "1", "amount": 700}),
    ... ])
    >>> p = CustomerValue()
    >>> p.report(p.rebuild(store.scan())).select("customer", "paid_orders", "lifetime_value").row(0)
    ('ada', 1, 700)
    """

    key = "customer"
    schema = {**CUSTOMER_SCHEMA, "pending_order": pl.String(), "pending_customer": pl.String()}
    event_types = ("OrderPlaced", "PaymentReceived")
    fields = ORDER_FIELDS

    def fold(self, state: pl.LazyFrame, events: pl.LazyFrame) -> pl.LazyFrame:
        known = state.filter(pl.col("customer").is_not_null())
        pending = pl.concat([
            state.filter(pl.col("customer").is_null()).select(
                pl.col("pending_order").alias("order_id"), pl.col("pending_customer").alias("who")
            ),
            events.filter(_is("OrderPlaced")).select("order_id", pl.col("customer").alias("who")),
        ])  # fmt: skip
        paid = events.filter(_is("PaymentReceived")).select("order_id", "amount", "recorded_at")
        settled = paid.join(pending, on="order_id", how="inner")
        placed = events.filter(_is("OrderPlaced")).group_by("customer").agg(
            pl.len().alias("d_orders"), pl.col("recorded_at").min().alias("first")
        )
        pay = settled.group_by(pl.col("who").alias("customer")).agg(
            pl.len().alias("d_paid"), pl.col("amount").sum().alias("d_value"),
            pl.col("recorded_at").max().alias("last"),
        )  # fmt: skip
        delta = placed.join(pay, on="customer", how="full", coalesce=True)
        merged = delta.join(known, on="customer", how="full", coalesce=True).select(
            "customer",
            (pl.col("orders").fill_null(0) + pl.col("d_orders").fill_null(0)).alias("orders"),
            (pl.col("paid_orders").fill_null(0) + pl.col("d_paid").fill_null(0)).alias("paid_orders"),
            (pl.col("lifetime_value").fill_null(0) + pl.col("d_value").fill_null(0)).alias("lifetime_value"),
            pl.min_horizontal("first_order_at", "first").alias("first_order_at"),
            pl.max_horizontal("last_paid_at", "last").alias("last_paid_at"),
            pl.lit(None, pl.String).alias("pending_order"),
            pl.lit(None, pl.String).alias("pending_customer"),
        )
        waiting = pending.join(paid, on="order_id", how="anti").select(
            pl.lit(None, pl.String).alias("customer"), pl.lit(0, pl.UInt32).alias("orders"),
            pl.lit(0, pl.UInt32).alias("paid_orders"), pl.lit(0, pl.Int64).alias("lifetime_value"),
            pl.lit(None, UTC_DATETIME).alias("first_order_at"),
            pl.lit(None, UTC_DATETIME).alias("last_paid_at"),
            pl.col("order_id").alias("pending_order"), pl.col("who").alias("pending_customer"),
        )  # fmt: skip
        return pl.concat([merged, waiting], how="vertical_relaxed")

    def run(self, state: pl.DataFrame, events: pl.LazyFrame | pl.DataFrame, **kwargs: Any) -> pl.DataFrame:
        out = super().run(state, events, **kwargs)
        return out.sort("customer", "pending_order", nulls_last=True)

    @staticmethod
    def report(state: pl.DataFrame) -> pl.DataFrame:
        """The customer rows only."""
        return state.filter(pl.col("customer").is_not_null()).select(list(CUSTOMER_SCHEMA))
