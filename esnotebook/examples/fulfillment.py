"""The OrderFulfillment saga: OrderPlaced → reserve inventory → charge payment → ship.

Steps (each command carries the key ``OrderFulfillment:<order_id>:<phase>:<step>:<i>``):

1. ``reserve``: ``ReserveInventory`` for each sku of the order; undone by ``ReleaseInventory``.
2. ``charge``: ``ChargePayment`` of the order total; undone by ``RefundPayment``. When it
   fails, the declined payment is recorded on the order (``FailOrderPayment`` →
   ``PaymentFailed``).
3. ``ship``: ``PayOrder`` (the order records the payment) then ``ShipOrder``.

When a step fails the saga first cancels the order (``CancelOrder``), so nobody acts on it
while it is being undone, then compensates the completed steps newest first. A failed
payment therefore gives ``PaymentFailed``, ``OrderCancelled``, then ``InventoryReleased``:
the stock is back where it was and nothing ships.

The saga reads the order's items when it starts (``OrderPlaced``), through the bus's
repository: place the order and add its items before the saga reaches it.

>>> import esnotebook as es
>>> from esnotebook.examples import AddItem, AddStock, PlaceOrder, order_domain_bus
>>> from esnotebook.faults import FaultPlan
>>> store = es.InMemoryEventStore()
>>> bus = order_domain_bus(store)
>>> for c in (AddStock("sku-1", 5), PlaceOrder("o-1", "c-1"), AddItem("o-1", "sku-1", 2, 300)):
...     _ = bus.dispatch(c)
>>> runner = OrderFulfillment().run(store, faults=FaultPlan().permanent("ChargePayment", reason="card declined"))
>>> [e.event_type for e in store.read_all(from_position=3)]
['InventoryReserved', 'PaymentFailed', 'OrderCancelled', 'InventoryReleased']
"""

from __future__ import annotations

from typing import Any

from ..events import RecordedEvent
from ..sagas import Retry, Saga, Step
from ..sagas.definition import COMPENSATION_RETRY, STEP_RETRY
from .commands import (
    CancelOrder,
    ChargePayment,
    FailOrderPayment,
    PayOrder,
    RefundPayment,
    ReleaseInventory,
    ReserveInventory,
    ShipOrder,
)
from .handlers import order_domain_bus
from .orders import Order

__all__ = ["OrderFulfillment"]


def _order_id(event: RecordedEvent) -> str | None:
    return event.data.get("order_id")


def _start(event: RecordedEvent, bus: Any) -> dict[str, Any]:
    # Read through the bus's kept aggregates when it has them: the saga's PayOrder and
    # ShipOrder then find the order already loaded.
    read = getattr(bus, "_read", None)
    order_id = event.data["order_id"]
    order = read(Order, order_id) if read is not None else bus.repository(Order).load(order_id)
    return {
        "order_id": order.id,
        "customer": order.customer,
        "items": {sku: line["quantity"] for sku, line in sorted(order.items.items())},
        "total": order.total,
    }


def _reserve(s: dict[str, Any]) -> list[ReserveInventory]:
    return [ReserveInventory(sku, s["order_id"], q) for sku, q in s["items"].items()]


def _release(s: dict[str, Any]) -> list[ReleaseInventory]:
    return [ReleaseInventory(sku, s["order_id"]) for sku in s["items"]]


def _charge(s: dict[str, Any]) -> ChargePayment | None:
    return ChargePayment(s["order_id"], s["total"]) if s["total"] > 0 else None


def _refund(s: dict[str, Any]) -> RefundPayment:
    return RefundPayment(s["order_id"], s["total"], _reason(s))


def _record_decline(s: dict[str, Any]) -> FailOrderPayment:
    return FailOrderPayment(s["order_id"], s["total"], _reason(s))


def _ship(s: dict[str, Any]) -> list[Any]:
    return [PayOrder(s["order_id"], s["total"]), ShipOrder(s["order_id"])]


def _cancel(s: dict[str, Any]) -> CancelOrder:
    return CancelOrder(s["order_id"], _reason(s))


def _reason(s: dict[str, Any]) -> str:
    return s.get("failure") or "order fulfillment failed"


class OrderFulfillment(Saga):
    """The shipped fulfillment saga over the order domain (see the module docstring).

    Parameters
    ----------
    name
        The saga's name (default ``"OrderFulfillment"``).
    retry, compensation_retry, step_timeout
        As for :class:`~esnotebook.sagas.Saga`.

    Examples
    --------
    >>> [s.name for s in OrderFulfillment().steps]
    ['reserve', 'charge', 'ship']
    """

    def __init__(
        self,
        *,
        name: str = "OrderFulfillment",
        retry: Retry = STEP_RETRY,
        compensation_retry: Retry = COMPENSATION_RETRY,
        step_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            name,
            starts_on="OrderPlaced",
            key=_order_id,
            start=_start,
            steps=[
                Step("reserve", _reserve, compensation=_release),
                Step("charge", _charge, compensation=_refund, on_failure=_record_decline),
                Step("ship", _ship),
            ],
            fails_on="PaymentFailed",
            abort=_cancel,
            bus=order_domain_bus,
            retry=retry,
            compensation_retry=compensation_retry,
            step_timeout=step_timeout,
        )
