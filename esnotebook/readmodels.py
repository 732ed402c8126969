"""Read models of the order domain, shipped ready to run.

- :class:`OrderSummary` (handler form) and :class:`OrderSummaryFrame` (vectorised form): one
  row per order. Both give the identical frame for every valid history.
- :class:`RevenueByDaySku` (vectorised): paid revenue per UTC day and SKU.
- :class:`CustomerValue` (vectorised): orders, paid orders and lifetime value per customer.

Money is integer cents. An ``ItemRemoved`` carries no price: the removed units are valued
at the price of the latest ``ItemAdded`` of that SKU in the order, which is why the order
summary keeps the latest prices of an order (hidden column ``open_prices``) until it is paid.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import polars as pl

from ._order_arrays import order_deltas, with_row_numbers
from ._schema import UTC_DATETIME
from .events import RecordedEvent
from .projections import Engine, Projection, ProjectionError, VectorisedProjection, check_engine

__all__ = ["CustomerValue", "OrderSummary", "OrderSummaryFrame", "RevenueByDaySku"]

PRICE = pl.Struct({"sku": pl.String(), "price": pl.Int64()})

ORDER_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "order_id": pl.String(),
    "customer": pl.String(),
    "status": pl.String(),
    "item_count": pl.Int64(),
    "total": pl.Int64(),
    "amount_paid": pl.Int64(),
    "failed_payments": pl.Int64(),
    "placed_at": UTC_DATETIME,
    "updated_at": UTC_DATETIME,
    "first_position": pl.Int64(),
    "last_position": pl.Int64(),
    "open_prices": pl.List(PRICE),
}

ORDER_EVENTS = (
    "ItemAdded",
    "ItemRemoved",
    "OrderCancelled",
    "OrderPlaced",
    "OrderShipped",
    "PaymentFailed",
    "PaymentReceived",
)

#: The status an event puts an order in; item events leave the status as it was.
STATUS_AFTER = {
    "OrderPlaced": "placed",
    "PaymentFailed": "payment_failed",
    "PaymentReceived": "paid",
    "OrderShipped": "shipped",
    "OrderCancelled": "cancelled",
}
#: Statuses in which items may still be added or removed.
OPEN = ("placed", "payment_failed")
_STATUS_CODE = {t: i for i, t in enumerate(STATUS_AFTER, start=1)}
_CODE_STATUS = {i: STATUS_AFTER[t] for t, i in _STATUS_CODE.items()}
#: The order event types as an Enum (physical codes 0..6 in this order) and, per code, the
#: status code it sets (null for the item events).
_KINDS = pl.Enum(ORDER_EVENTS)
_KIND_STATUS = pl.Series([_STATUS_CODE.get(t) for t in ORDER_EVENTS], dtype=pl.Int64)

ORDER_FIELDS: dict[str, pl.DataType] = {
    "order_id": pl.String(),
    "customer": pl.String(),
    "sku": pl.String(),
    "quantity": pl.Int64(),
    "price": pl.Int64(),
    "amount": pl.Int64(),
}


class OrderSummary(Projection):
    """One row per order, built event by event (the handler form).

    Columns: ``order_id, customer, status`` (placed, payment_failed, paid, shipped,
    cancelled), ``item_count, total`` (cents), ``amount_paid``, ``failed_payments``,
    ``placed_at`` (when the order was placed), ``updated_at`` (the latest recorded time of
    its events), ``first_position`` (its OrderPlaced) and ``last_position``. Rows are in
    the order the orders were placed (by ``first_position``). The state also keeps ``open_prices`` (hidden from the
    result): the latest unit price per SKU while items may still change, to value removals;
    a dict ``{sku: price}`` in the rows the handlers see, a list of ``{sku, price}`` sorted
    by SKU in the frame.

    Examples
    --------
    >>> import esnotebook as es
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append("order-1", [
    ...     es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "ada"}),
    ...     es.NewEvent("ItemAdded", {"order_id": "1", "sku": "tea", "quantity": 2, "price": 350}),
    ... ])
    >>> OrderSummary().rebuild(store.read_all()).select("order_id", "item_count", "total").row(0)
    ('1', 2, 700)
    """

    key = "order_id"
    order_by = "first_position"
    schema = ORDER_SUMMARY_SCHEMA
    hidden = ("open_prices",)

    def key_of(self, event: RecordedEvent) -> Any:
        return event.data["order_id"]

    def to_frame(self, state: Mapping[Hashable, Mapping[str, Any]]) -> pl.DataFrame:
        """The state as a frame; ``open_prices`` becomes the declared list, sorted by SKU."""
        return super().to_frame({key: _stored(row) for key, row in state.items()})

    def from_frame(self, frame: pl.DataFrame) -> dict[Hashable, dict[str, Any]]:
        """The state a frame made by :meth:`to_frame` stands for."""
        state = super().from_frame(frame)
        for row in state.values():
            if row["open_prices"] is not None:
                row["open_prices"] = {p["sku"]: p["price"] for p in row["open_prices"]}
        return state

    @staticmethod
    def _touch(row: dict[str, Any], event: RecordedEvent) -> dict[str, Any]:
        at = event.recorded_at
        # A clock that stepped back must not move it back; an `if`, since max() costs a call.
        if at > row["updated_at"]:  # noqa: PLR1730
            row["updated_at"] = at
        row["last_position"] = event.position
        return row

    # The checks below are inline `if`s that call these only to fail: a call per event
    # for a check that passes would cost more than the update itself.
    @staticmethod
    def _never_placed(event: RecordedEvent) -> ProjectionError:
        return ProjectionError(
            f"{event.event_type} at position {event.position} for order "
            f"{event.data['order_id']!r}, which was never placed (expected an OrderPlaced first)"
        )

    @staticmethod
    def _closed(row: dict[str, Any], event: RecordedEvent) -> ProjectionError:
        return ProjectionError(
            f"{event.event_type} at position {event.position}: order "
            f"{event.data['order_id']!r} is {row['status']}; items change only before payment"
        )

    def on_OrderPlaced(self, row: dict[str, Any] | None, event: RecordedEvent) -> dict[str, Any]:
        if row is not None:
            raise ProjectionError(
                f"OrderPlaced at position {event.position}: order {event.data['order_id']!r} "
                f"was already placed (at position {row['last_position']} or before)"
            )
        d, at = event.data, event.recorded_at
        return {
            "order_id": d["order_id"], "customer": d["customer"], "status": "placed",
            "item_count": 0, "total": 0, "amount_paid": 0, "failed_payments": 0,
            "placed_at": at, "updated_at": at, "first_position": event.position,
            "last_position": event.position, "open_prices": {},
        }  # fmt: skip

    def on_ItemAdded(self, row: dict[str, Any] | None, event: RecordedEvent) -> dict[str, Any]:
        if row is None:
            raise self._never_placed(event)
        if row["open_prices"] is None:
            raise self._closed(row, event)
        d = event.data
        sku, qty, price = d["sku"], d["quantity"], d["price"]
        # A new dict, not an update of the old one: the stored row still holds the old one.
        row["open_prices"] = {**row["open_prices"], sku: price}
        row["item_count"] += qty
        row["total"] += qty * price
        return self._touch(row, event)

    def on_ItemRemoved(self, row: dict[str, Any] | None, event: RecordedEvent) -> dict[str, Any]:
        if row is None:
            raise self._never_placed(event)
        prices = row["open_prices"]
        if prices is None:
            raise self._closed(row, event)
        d = event.data
        sku, qty = d["sku"], d["quantity"]
        if sku not in prices:
            raise ProjectionError(
                f"ItemRemoved at position {event.position}: order {d['order_id']!r} never had "
                f"SKU {sku!r} (SKUs added: {sorted(prices)})"
            )
        row["item_count"] -= qty
        row["total"] -= qty * prices[sku]
        return self._touch(row, event)

    def _closing(self, row: dict[str, Any], event: RecordedEvent) -> dict[str, Any]:
        row["status"] = status = STATUS_AFTER[event.event_type]
        if status not in OPEN:
            row["open_prices"] = None  # items no longer change: no removal to value
        return self._touch(row, event)

    def on_PaymentReceived(self, row: dict[str, Any] | None, event: RecordedEvent) -> dict[str, Any]:
        if row is None:
            raise self._never_placed(event)
        row["amount_paid"] += event.data["amount"]
        return self._closing(row, event)

    def on_PaymentFailed(self, row: dict[str, Any] | None, event: RecordedEvent) -> dict[str, Any]:
        if row is None:
            raise self._never_placed(event)
        row["failed_payments"] += 1
        return self._closing(row, event)

    def on_OrderShipped(self, row: dict[str, Any] | None, event: RecordedEvent) -> dict[str, Any]:
        if row is None:
            raise self._never_placed(event)
        return self._closing(row, event)

    def on_OrderCancelled(self, row: dict[str, Any] | None, event: RecordedEvent) -> dict[str, Any]:
        if row is None:
            raise self._never_placed(event)
        return self._closing(row, event)


def _stored(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """An OrderSummary row as its frame holds it: a dict of open prices, the fastest to
    update while applying, becomes the declared list of ``{sku, price}``, sorted by SKU."""
    prices = row["open_prices"]
    if prices is None:
        return row
    return {**row, "open_prices": [{"sku": sku, "price": prices[sku]} for sku in sorted(prices)]}


def _is(*types: str) -> pl.Expr:
    return pl.col("event_type").is_in(types) if len(types) > 1 else pl.col("event_type") == types[0]


class OrderSummaryFrame(VectorisedProjection):
    """:class:`OrderSummary` as polars expressions (the vectorised form); same frame.

    Every aggregation is a plain sum, min or max over per-event columns (polars' fast
    path), and none depends on row order (the latest event is found by its position).

    Examples
    --------
    >>> import esnotebook as es
    >>> store = es.InMemoryEventStore()
    >>> _ = store.append("order-1", [
    ...     es.NewEvent("OrderPlaced", {"order_id": "1", "customer": "ada"}),
    ...     es.NewEvent("ItemAdded", {"order_id": "1", "sku": "tea", "quantity": 2, "price": 350}),
    ... ])
    >>> OrderSummaryFrame().rebuild(store.scan()).select("order_id", "item_count", "total").row(0)
    ('1', 2, 700)
    """

    name = "OrderSummary"
    key = "order_id"
    order_by = "first_position"
    keyed_by_stream = True
    partition_key = "order_id"
    schema = ORDER_SUMMARY_SCHEMA
    hidden = ("open_prices",)
    event_types = ORDER_EVENTS
    fields = ORDER_FIELDS

    def run(self, state: pl.DataFrame, events: pl.LazyFrame | pl.DataFrame, *, engine: Engine = "auto") -> pl.DataFrame:
        """Fold ``events`` into ``state`` (see :meth:`VectorisedProjection.run`).

        With the in-memory engine, the batch's per-order numbers are array reductions keyed
        by the store's stream number (:mod:`esnotebook.per_stream`), several times faster
        than the group-by on ``order_id`` of :meth:`fold`; the streaming engine runs
        :meth:`fold`, whose memory polars bounds. Both give the same frame.
        """
        if engine == "streaming" or type(self).fold is not OrderSummaryFrame.fold:
            # A subclass that changes the fold gets its fold.
            return super().run(state, events, engine=engine)
        check_engine(engine)
        lf = self.conform(events)
        keys = [c for c in ("stream_number", "stream_id") if c in lf.collect_schema().names()]
        order_events = self._order_events(lf, keys[:1], as_enum=False)
        ev = with_row_numbers(order_events, kinds=ORDER_EVENTS, status_codes=_STATUS_CODE).collect()
        ev, delta, groups, item_event = order_deltas(
            ev, kinds=ORDER_EVENTS, status_after=STATUS_AFTER, status_codes=_STATUS_CODE
        )
        # Item lines are needed only by orders with a removal or still open; an order without
        # a status change in this batch may be open in the state, so it is a candidate too.
        status = delta.get_column("new_status")
        candidates = (delta.get_column("has_removal") | status.is_in(OPEN) | status.is_null()).to_numpy()
        items = ev.filter(pl.Series(groups.rows_of(candidates) & item_event))
        new = self._merge(state.lazy(), delta.lazy(), items.lazy()).collect()
        return self._finish(new)

    def fold(self, state: pl.LazyFrame, events: pl.LazyFrame) -> pl.LazyFrame:
        # One pass over every event, one group-by of plain sums, mins and maxes (polars' fast
        # path). The event type becomes an Enum once, so the type tests compare small ints.
        ev = self._order_events(events).with_columns(
            # The latest status-changing event wins: max(position * 8 + code) finds it in any order.
            (pl.col("position") * 8 + pl.lit(_KIND_STATUS).gather(pl.col("event_type").to_physical()))
            .alias("status_code"),
        )  # fmt: skip
        added, removed, placed = _is("ItemAdded"), _is("ItemRemoved"), _is("OrderPlaced")
        delta = ev.group_by("order_id").agg(
            pl.when(placed).then(pl.col("customer")).max().alias("new_customer"),
            pl.when(placed).then(pl.col("recorded_at")).min().alias("new_placed_at"),
            pl.when(placed).then(pl.col("position")).min().alias("new_first_position"),
            pl.col("status_code").max().mod(8).alias("new_status"),
            pl.when(added).then(pl.col("quantity")).when(removed).then(-pl.col("quantity")).sum().alias("d_items"),
            pl.when(added).then(pl.col("quantity") * pl.col("price")).sum().alias("d_added"),
            pl.when(_is("PaymentReceived")).then(pl.col("amount")).sum().alias("d_paid"),
            _is("PaymentFailed").sum().cast(pl.Int64).alias("d_failed"),
            removed.any().alias("has_removal"),
            pl.col("recorded_at").max().alias("new_updated_at"),
            pl.col("position").max().alias("new_position"),
        ).with_columns(
            pl.col("new_status").replace_strict(_CODE_STATUS, default=None, return_dtype=pl.String)
        )  # fmt: skip
        return self._merge(state, delta, ev.filter(_is("ItemAdded", "ItemRemoved")))

    @staticmethod
    def _order_events(events: pl.LazyFrame, keys: Sequence[str] = (), *, as_enum: bool = True) -> pl.LazyFrame:
        kind = pl.col("event_type")
        return events.select(
            *keys, "order_id", "position", "recorded_at", "customer", "sku", "quantity", "price", "amount",
            kind.cast(_KINDS, strict=False) if as_enum else kind,
        )  # fmt: skip

    def _merge(self, state: pl.LazyFrame, delta: pl.LazyFrame, items: pl.LazyFrame) -> pl.LazyFrame:
        """The new state: ``delta`` (a batch's numbers per order) merged into ``state``.

        ``items`` holds the batch's item events of (at least) the orders that need their
        lines: those with a removal, and those still open.
        """
        empty = self._empty(state)
        if empty:
            nulls = (pl.lit(None, dt).alias(c) for c, dt in self.schema.items() if c != "order_id")
            delta = delta.with_columns(nulls)
        else:
            delta = delta.join(state, on="order_id", how="left")
        status = pl.coalesce("new_status", "status")
        updated = delta.select(
            "order_id",
            pl.coalesce("customer", "new_customer").alias("customer"),
            status.alias("status"),
            (pl.col("item_count").fill_null(0) + pl.col("d_items")).alias("item_count"),
            (pl.col("total").fill_null(0) + pl.col("d_added")).alias("total"),
            (pl.col("amount_paid").fill_null(0) + pl.col("d_paid")).alias("amount_paid"),
            (pl.col("failed_payments").fill_null(0) + pl.col("d_failed")).alias("failed_payments"),
            pl.coalesce("placed_at", "new_placed_at").alias("placed_at"),
            pl.max_horizontal("updated_at", "new_updated_at").alias("updated_at"),
            pl.coalesce("first_position", "new_first_position").alias("first_position"),
            pl.col("new_position").alias("last_position"),
            "open_prices",
            # Only these orders need their item lines: one that removed items (valued at the
            # SKU's latest added price) or one still open (it keeps its latest prices).
            (pl.col("has_removal") | status.is_in(OPEN).fill_null(False)).alias("needs_lines"),
        ).cache()  # three branches below read it: group the events once
        plain = (
            updated.filter(~pl.col("needs_lines"))
            .with_columns(pl.lit(None, pl.List(PRICE)).alias("open_prices"))
            .select(list(self.schema))
        )
        special = updated.filter(pl.col("needs_lines"))
        merged = pl.concat([plain, self._with_lines(state, items, special, empty)])
        if empty:
            return merged
        untouched = state.join(delta.select("order_id"), on="order_id", how="anti")
        return pl.concat([untouched, merged], how="vertical_relaxed")

    def _with_lines(
        self, state: pl.LazyFrame, items: pl.LazyFrame, special: pl.LazyFrame, empty: bool
    ) -> pl.LazyFrame:
        """The orders that need their item lines, with removals valued and open prices kept.

        They are few in a rebuild (orders with a removal, orders still open), so their item
        events are picked out with a semi join on that small key set.
        """
        removed = _is("ItemRemoved")
        items = (
            items.join(special.select("order_id"), on="order_id", how="semi", maintain_order="left")
            .select(
                "order_id", "sku", "position", removed.alias("is_removal"), "quantity",
                pl.when(~removed).then(pl.col("price")).alias("price"),
            )
        )
        if not empty:
            # Prices known before this batch, for the open orders this batch touches.
            prior = (
                state.select("order_id", "open_prices")
                .filter(pl.col("open_prices").is_not_null())
                .join(special.select("order_id"), on="order_id", how="semi")
                .explode("open_prices")
                .unnest("open_prices")
                .drop_nulls("sku")
                .select(
                    "order_id", "sku", pl.lit(0, pl.Int64).alias("position"),
                    pl.lit(False).alias("is_removal"), pl.lit(0, pl.Int64).alias("quantity"), "price",
                )
            )
            items = pl.concat([prior, items])
        # A removal is valued at its SKU's latest added price before it: the item events are
        # in position order (the prior prices first), so a forward fill per order and SKU
        # finds it without a sort.
        lines = items.with_columns(pl.col("price").forward_fill().over("order_id", "sku").alias("latest_price"))
        removed_value = (
            lines.filter(pl.col("is_removal"))
            .group_by("order_id")
            .agg((pl.col("quantity") * pl.col("latest_price")).sum().alias("d_removed"))
        )
        # Only orders still open keep their prices (few in a rebuild).
        still_open = special.filter(pl.col("status").is_in(OPEN)).select("order_id")
        open_prices = (
            lines.filter(~pl.col("is_removal"))
            .join(still_open, on="order_id", how="semi", maintain_order="left")
            .group_by("order_id", "sku", maintain_order=True)
            .agg(pl.col("price").last())
            .group_by("order_id", maintain_order=True)
            .agg(pl.struct("sku", "price").sort_by("sku").alias("new_open_prices"))
        )
        return (
            special.join(removed_value, on="order_id", how="left", maintain_order="left")
            .join(open_prices, on="order_id", how="left", maintain_order="left")
            .with_columns(
                (pl.col("total") - pl.col("d_removed").fill_null(0)).alias("total"),
                pl.when(pl.col("status").is_in(OPEN))
                .then(pl.col("new_open_prices").fill_null(pl.lit([], pl.List(PRICE))))
                .alias("open_prices"),
            )
            .select(list(self.schema))
        )

    @staticmethod
    def _empty(state: pl.LazyFrame) -> bool:
        # A rebuild starts from an empty state: skipping the merge with it saves a hash pass
        # over every event.
        return state.limit(1).collect().height == 0

    def validate(self, state: pl.DataFrame) -> None:
        orphans = state.filter(pl.col("customer").is_null())["order_id"]
        if orphans.len():
            raise ProjectionError(
                f"events for {orphans.len()} order(s) that were never placed (expected an "
                f"OrderPlaced first): {orphans.head(5).to_list()}"
            )


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
