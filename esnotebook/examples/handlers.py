"""Handlers for the order domain's commands, and a bus with all of them registered.

Each handler is the classic three steps - load, call, (the bus) saves - in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..commands import CommandBus, Middleware, UnitOfWork
from . import commands as c
from .inventory import Inventory
from .orders import Order
from .payments import Payment

__all__ = ["order_domain_bus", "register_order_domain"]


def _place(cmd: c.PlaceOrder, uow: UnitOfWork) -> None:
    uow.new(Order, cmd.order_id).place(cmd.customer)


def _add_item(cmd: c.AddItem, uow: UnitOfWork) -> None:
    uow.load(Order, cmd.order_id).add_item(cmd.sku, cmd.quantity, cmd.price)


def _remove_item(cmd: c.RemoveItem, uow: UnitOfWork) -> None:
    uow.load(Order, cmd.order_id).remove_item(cmd.sku, cmd.quantity)


def _pay(cmd: c.PayOrder, uow: UnitOfWork) -> None:
    uow.load(Order, cmd.order_id).pay(cmd.amount)


def _fail_order_payment(cmd: c.FailOrderPayment, uow: UnitOfWork) -> None:
    uow.load(Order, cmd.order_id).fail_payment(cmd.amount, cmd.reason)


def _ship(cmd: c.ShipOrder, uow: UnitOfWork) -> None:
    uow.load(Order, cmd.order_id).ship()


def _cancel(cmd: c.CancelOrder, uow: UnitOfWork) -> None:
    uow.load(Order, cmd.order_id).cancel(cmd.reason)


def _add_stock(cmd: c.AddStock, uow: UnitOfWork) -> None:
    uow.load_or_new(Inventory, cmd.sku).add_stock(cmd.quantity)


def _reserve(cmd: c.ReserveInventory, uow: UnitOfWork) -> None:
    # An unknown SKU has no stock: the aggregate rejects the reservation itself.
    uow.load_or_new(Inventory, cmd.sku).reserve(cmd.order_id, cmd.quantity)


def _release(cmd: c.ReleaseInventory, uow: UnitOfWork) -> None:
    uow.load_or_new(Inventory, cmd.sku).release(cmd.order_id, cmd.quantity)


def _charge(cmd: c.ChargePayment, uow: UnitOfWork) -> None:
    uow.load_or_new(Payment, cmd.order_id).charge(cmd.amount)


def _fail_payment(cmd: c.FailPayment, uow: UnitOfWork) -> None:
    uow.load_or_new(Payment, cmd.order_id).fail(cmd.amount, cmd.reason)


def _refund(cmd: c.RefundPayment, uow: UnitOfWork) -> None:
    uow.load_or_new(Payment, cmd.order_id).refund(cmd.amount, cmd.reason)


_HANDLERS: dict[type, Any] = {
    c.PlaceOrder: _place,
    c.AddItem: _add_item,
    c.RemoveItem: _remove_item,
    c.PayOrder: _pay,
    c.FailOrderPayment: _fail_order_payment,
    c.ShipOrder: _ship,
    c.CancelOrder: _cancel,
    c.AddStock: _add_stock,
    c.ReserveInventory: _reserve,
    c.ReleaseInventory: _release,
    c.ChargePayment: _charge,
    c.FailPayment: _fail_payment,
    c.RefundPayment: _refund,
}


def register_order_domain(bus: CommandBus) -> CommandBus:
    """Register the handlers of every order-domain command on ``bus``; return it."""
    for command_type, handler in _HANDLERS.items():
        bus.register(command_type, handler)
    return bus


def order_domain_bus(
    store: Any,
    *,
    retries: int = 3,
    middleware: Sequence[Middleware] = (),
    snapshot_every: int | None = None,
    cache_size: int = 1024,
) -> CommandBus:
    """A :class:`~esnotebook.commands.CommandBus` on ``store`` that handles the order domain.

    The options are those of :class:`~esnotebook.commands.CommandBus`.

    Examples
    --------
    >>> import esnotebook as es
    >>> from esnotebook.examples import AddStock, ReserveInventory, order_domain_bus
    >>> bus = order_domain_bus(es.InMemoryEventStore())
    >>> _ = bus.dispatch(AddStock("sku-1", 5))
    >>> bus.dispatch(ReserveInventory("sku-1", "o-1", 9), on_reject="return").status
    'rejected'
    """
    bus = CommandBus(
        store, retries=retries, middleware=middleware, snapshot_every=snapshot_every, cache_size=cache_size
    )
    return register_order_domain(bus)
