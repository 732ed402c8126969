"""The order domain shipped with esnotebook: Order, Inventory and Payment aggregates, their
commands, and a command bus that handles them.

Streams: ``order-<order_id>``, ``inventory-<sku>``, ``payment-<order_id>``.

>>> import esnotebook as es
>>> from esnotebook.examples import AddItem, Order, PlaceOrder, order_domain_bus
>>> bus = order_domain_bus(es.InMemoryEventStore())
>>> _ = bus.dispatch(PlaceOrder("o-1", "c-1"))
>>> _ = bus.dispatch(AddItem("o-1", "sku-1", 2, 450))
>>> bus.repository(Order).load("o-1").total
900
"""

from .commands import (
    AddItem,
    AddStock,
    CancelOrder,
    ChargePayment,
    FailOrderPayment,
    FailPayment,
    PayOrder,
    PlaceOrder,
    RefundPayment,
    ReleaseInventory,
    RemoveItem,
    ReserveInventory,
    ShipOrder,
)
from .fulfillment import OrderFulfillment
from .handlers import order_domain_bus, register_order_domain
from .inventory import InsufficientStock, Inventory, InventoryRuleViolated
from .orders import Order, OrderRuleViolated
from .payments import Payment, PaymentRuleViolated

__all__ = [
    "AddItem",
    "AddStock",
    "CancelOrder",
    "ChargePayment",
    "FailOrderPayment",
    "FailPayment",
    "InsufficientStock",
    "Inventory",
    "InventoryRuleViolated",
    "Order",
    "OrderFulfillment",
    "OrderRuleViolated",
    "PayOrder",
    "Payment",
    "PaymentRuleViolated",
    "PlaceOrder",
    "RefundPayment",
    "ReleaseInventory",
    "RemoveItem",
    "ReserveInventory",
    "ShipOrder",
    "order_domain_bus",
    "register_order_domain",
]
