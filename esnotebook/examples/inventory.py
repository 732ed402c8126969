"""The Inventory aggregate: the stock of one SKU, stream ``inventory-<sku>``.

Events::

    InventoryAdded     {sku, quantity}             goods arrived
    InventoryReserved  {sku, order_id, quantity}   held for an order
    InventoryReleased  {sku, order_id, quantity}   a hold given back

Rules: quantities are positive; a reservation never exceeds the available stock (on hand
minus reserved), so availability never drops below zero; an order releases at most what it
holds.
"""

from __future__ import annotations

from typing import Any

from ..aggregates import Aggregate, applies, command, rule
from ..errors import DomainException
from ._checks import check_count, check_text

__all__ = ["Inventory", "InsufficientStock", "InventoryRuleViolated"]


class InventoryRuleViolated(DomainException):
    """A command on an Inventory broke one of its rules."""


class InsufficientStock(InventoryRuleViolated):
    """A reservation asked for more than is available."""


class Inventory(Aggregate):
    """The stock of one SKU (the aggregate id is the SKU).

    Examples
    --------
    >>> stock = Inventory("sku-1")
    >>> stock.add_stock(5)
    >>> stock.reserve("o-1", 3)
    >>> stock.available
    2
    >>> stock.reserve("o-2", 3)
    Traceback (most recent call last):
    ...
    esnotebook.examples.inventory.InsufficientStock: sku 'sku-1': cannot reserve 3 for order 'o-2': only 2 available
    """

    stream_prefix = "inventory"
    schema_version = 1

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.on_hand = 0
        self.reserved = 0
        self.reservations: dict[str, int] = {}  # order_id -> quantity held

    @property
    def available(self) -> int:
        """Units that can still be reserved."""
        return self.on_hand - self.reserved

    @command
    def add_stock(self, quantity: int) -> None:
        """Receive ``quantity`` units into stock."""
        check_count("quantity", quantity)
        self.record("InventoryAdded", sku=self.id, quantity=quantity)

    @command
    def reserve(self, order_id: str, quantity: int) -> None:
        """Hold ``quantity`` units for ``order_id``."""
        check_text("order_id", order_id)
        check_count("quantity", quantity)
        if quantity > self.available:  # the message is built only when the rule breaks
            raise InsufficientStock(
                f"sku {self.id!r}: cannot reserve {quantity} for order {order_id!r}: only "
                f"{self.available} available"
            )
        self.record("InventoryReserved", sku=self.id, order_id=order_id, quantity=quantity)

    @command
    def release(self, order_id: str, quantity: int | None = None) -> None:
        """Give back ``quantity`` units held for ``order_id`` (default: all it holds)."""
        check_text("order_id", order_id)
        held = self.reservations.get(order_id, 0)
        rule(held > 0, f"sku {self.id!r}: order {order_id!r} holds no reservation", InventoryRuleViolated)
        if quantity is None:
            quantity = held
        check_count("quantity", quantity)
        rule(
            quantity <= held,
            f"sku {self.id!r}: cannot release {quantity} for order {order_id!r}: it holds {held}",
            InventoryRuleViolated,
        )
        self.record("InventoryReleased", sku=self.id, order_id=order_id, quantity=quantity)

    @applies("InventoryAdded")
    def _added(self, data: dict[str, Any]) -> None:
        self.on_hand += data["quantity"]

    @applies("InventoryReserved")
    def _reserved(self, data: dict[str, Any]) -> None:
        q = data["quantity"]
        self.reserved += q
        self.reservations[data["order_id"]] = self.reservations.get(data["order_id"], 0) + q

    @applies("InventoryReleased")
    def _released(self, data: dict[str, Any]) -> None:
        q = data["quantity"]
        self.reserved -= q
        left = self.reservations[data["order_id"]] - q
        if left:
            self.reservations[data["order_id"]] = left
        else:
            del self.reservations[data["order_id"]]
