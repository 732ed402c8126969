"""The order domain's commands: one frozen dataclass per intention."""

from __future__ import annotations

from dataclasses import dataclass

from ..commands import Command

__all__ = [
    "AddItem",
    "AddStock",
    "CancelOrder",
    "ChargePayment",
    "FailOrderPayment",
    "FailPayment",
    "PayOrder",
    "PlaceOrder",
    "RefundPayment",
    "ReleaseInventory",
    "RemoveItem",
    "ReserveInventory",
    "ShipOrder",
]


# ---------------------------------------------------------------------- Order
@dataclass(frozen=True, slots=True)
class PlaceOrder(Command):
    order_id: str
    customer: str


@dataclass(frozen=True, slots=True)
class AddItem(Command):
    order_id: str
    sku: str
    quantity: int
    price: int


@dataclass(frozen=True, slots=True)
class RemoveItem(Command):
    order_id: str
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class PayOrder(Command):
    order_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class FailOrderPayment(Command):
    order_id: str
    amount: int
    reason: str


@dataclass(frozen=True, slots=True)
class ShipOrder(Command):
    order_id: str


@dataclass(frozen=True, slots=True)
class CancelOrder(Command):
    order_id: str
    reason: str


# ---------------------------------------------------------------------- Inventory
@dataclass(frozen=True, slots=True)
class AddStock(Command):
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class ReserveInventory(Command):
    sku: str
    order_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class ReleaseInventory(Command):
    """Release what ``order_id`` holds of ``sku`` (all of it when ``quantity`` is None)."""

    sku: str
    order_id: str
    quantity: int | None = None


# ---------------------------------------------------------------------- Payment
@dataclass(frozen=True, slots=True)
class ChargePayment(Command):
    order_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class FailPayment(Command):
    order_id: str
    amount: int
    reason: str


@dataclass(frozen=True, slots=True)
class RefundPayment(Command):
    order_id: str
    amount: int
    reason: str
