"""The Order aggregate: stream ``order-<id>``, the event schema every part of esnotebook uses.

Events (money in integer cents)::

    OrderPlaced      {order_id, customer}
    ItemAdded        {order_id, sku, quantity, price}     price = unit price
    ItemRemoved      {order_id, sku, quantity}
    PaymentReceived  {order_id, amount}                   amount = the order total
    PaymentFailed    {order_id, amount, reason}
    OrderShipped     {order_id}
    OrderCancelled   {order_id, reason}

Rules: an order starts with OrderPlaced; items change only before payment; a sku keeps one
unit price within an order; a removal never takes more of a sku than the order holds; the
one successful payment is for the exact total of a non-empty order; a failed payment may be
followed by another attempt; only a paid order ships; an order can be cancelled until it
ships; nothing happens after shipping or cancelling.
"""

from __future__ import annotations

from typing import Any, Literal

from ..aggregates import Aggregate, applies, command, rule
from ..errors import DomainException
from ._checks import check_count, check_money, check_text

__all__ = ["Order", "OrderRuleViolated", "OrderStatus"]

OrderStatus = Literal["new", "placed", "paid", "shipped", "cancelled"]


class OrderRuleViolated(DomainException):
    """A command on an Order broke one of its rules."""


class Order(Aggregate):
    """A customer's order.

    Examples
    --------
    >>> order = Order("o-1")
    >>> order.place("c-7")
    >>> order.add_item("sku-1", 2, 450)
    >>> order.pay(900)
    >>> order.status, order.total
    ('paid', 900)
    >>> order.add_item("sku-2", 1, 100)
    Traceback (most recent call last):
    ...
    esnotebook.examples.orders.OrderRuleViolated: order 'o-1': items can change only before payment (the order is paid)
    """

    stream_prefix = "order"
    schema_version = 1

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.status: OrderStatus = "new"
        self.customer: str | None = None
        self.items: dict[str, dict[str, int]] = {}  # sku -> {"quantity", "price"}
        self.amount_paid = 0
        self.failed_payments = 0
        self.cancel_reason: str | None = None

    @property
    def total(self) -> int:
        """The sum of quantity x unit price over the items, in cents."""
        return sum(line["quantity"] * line["price"] for line in self.items.values())

    def _must(self, condition: bool, message: str) -> None:
        rule(condition, f"order {self.id!r}: {message}", OrderRuleViolated)

    def _must_be_open(self, action: str) -> None:
        # Messages are built only when a rule breaks: commands run in hot loops.
        if self.status == "new":
            self._must(False, f"cannot {action} before the order is placed")
        if self.status in ("shipped", "cancelled"):
            self._must(False, f"cannot {action}: the order is {self.status}")

    # ------------------------------------------------------------------ commands
    @command
    def place(self, customer: str) -> None:
        """Open the order for ``customer``."""
        check_text("customer", customer)
        if self.status != "new":
            self._must(False, f"is already placed (status {self.status})")
        self.record("OrderPlaced", order_id=self.id, customer=customer)

    @command
    def add_item(self, sku: str, quantity: int, price: int) -> None:
        """Add ``quantity`` units of ``sku`` at unit ``price`` (cents)."""
        check_text("sku", sku)
        check_count("quantity", quantity)
        check_money("price", price)
        self._must_be_open("add items")
        if self.status != "placed":
            self._must(False, f"items can change only before payment (the order is {self.status})")
        line = self.items.get(sku)
        if line is not None and line["price"] != price:
            self._must(False, f"sku {sku!r} is already in the order at unit price {line['price']}, not {price}")
        self.record("ItemAdded", order_id=self.id, sku=sku, quantity=quantity, price=price)

    @command
    def remove_item(self, sku: str, quantity: int) -> None:
        """Take ``quantity`` units of ``sku`` out of the order."""
        check_text("sku", sku)
        check_count("quantity", quantity)
        self._must_be_open("remove items")
        self._must(self.status == "placed", f"items can change only before payment (the order is {self.status})")
        held = self.items.get(sku, {}).get("quantity", 0)
        self._must(quantity <= held, f"cannot remove {quantity} of sku {sku!r}: the order holds {held}")
        self.record("ItemRemoved", order_id=self.id, sku=sku, quantity=quantity)

    @command
    def pay(self, amount: int) -> None:
        """Record the payment of the exact total."""
        check_money("amount", amount)
        self._must_be_open("pay")
        if self.status != "placed":
            self._must(False, f"is already {self.status}; it can be paid only once")
        self._must(bool(self.items), "an order with no items cannot be paid")
        if amount != self.total:
            self._must(False, f"payment must be the exact total {self.total} (got {amount})")
        self.record("PaymentReceived", order_id=self.id, amount=amount)

    @command
    def fail_payment(self, amount: int, reason: str) -> None:
        """Record a payment attempt that failed; the order can be paid later."""
        check_money("amount", amount)
        check_text("reason", reason)
        self._must_be_open("fail a payment")
        self._must(self.status == "placed", f"is already {self.status}; no payment is pending")
        self.record("PaymentFailed", order_id=self.id, amount=amount, reason=reason)

    @command
    def ship(self) -> None:
        """Ship a paid order."""
        self._must_be_open("ship")
        if self.status != "paid":
            self._must(False, f"only a paid order can ship (the order is {self.status})")
        self.record("OrderShipped", order_id=self.id)

    @command
    def cancel(self, reason: str) -> None:
        """Cancel an order that has not shipped."""
        check_text("reason", reason)
        self._must_be_open("cancel")
        self.record("OrderCancelled", order_id=self.id, reason=reason)

    # ------------------------------------------------------------------ events
    @applies("OrderPlaced")
    def _placed(self, data: dict[str, Any]) -> None:
        self.status = "placed"
        self.customer = data["customer"]

    @applies("ItemAdded")
    def _item_added(self, data: dict[str, Any]) -> None:
        line = self.items.get(data["sku"])
        if line is None:
            self.items[data["sku"]] = {"quantity": data["quantity"], "price": data["price"]}
        else:
            line["quantity"] += data["quantity"]

    @applies("ItemRemoved")
    def _item_removed(self, data: dict[str, Any]) -> None:
        line = self.items[data["sku"]]
        line["quantity"] -= data["quantity"]
        if line["quantity"] == 0:
            del self.items[data["sku"]]

    @applies("PaymentReceived")
    def _paid(self, data: dict[str, Any]) -> None:
        self.status = "paid"
        self.amount_paid = data["amount"]

    @applies("PaymentFailed")
    def _payment_failed(self, data: dict[str, Any]) -> None:
        self.failed_payments += 1

    @applies("OrderShipped")
    def _shipped(self, data: dict[str, Any]) -> None:
        self.status = "shipped"

    @applies("OrderCancelled")
    def _cancelled(self, data: dict[str, Any]) -> None:
        self.status = "cancelled"
        self.cancel_reason = data["reason"]
