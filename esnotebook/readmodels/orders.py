"""The order read model's shared pieces and its handler form, :class:`OrderSummary`.

Money is integer cents. An ``ItemRemoved`` carries no price: the removed units are valued
at the price of the latest ``ItemAdded`` of that SKU in the order, which is why the order
summary keeps the latest prices of an order (hidden column ``open_prices``) until it is paid.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import polars as pl

from .._schema import UTC_DATETIME
from ..events import RecordedEvent
from ..projections import Projection, ProjectionError

__all__ = ["OPEN", "ORDER_EVENTS", "ORDER_FIELDS", "ORDER_SUMMARY_SCHEMA", "PRICE", "STATUS_AFTER", "OrderSummary"]

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
