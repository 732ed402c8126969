"""The Payment aggregate: the payment of one order, stream ``payment-<order_id>``.

Events (cents)::

    PaymentCharged   {order_id, amount}
    PaymentFailed    {order_id, amount, reason}   same type and fields as on the Order stream
    PaymentRefunded  {order_id, amount, reason}

Rules: an order is charged at most once, a positive amount; failed attempts may come
before the charge, not after it; refunds follow the charge and never add up to more than
was charged.
"""

from __future__ import annotations

from typing import Any, Literal

from ..aggregates import Aggregate, applies, command, rule
from ..errors import DomainException
from ._checks import check_count, check_money, check_text

__all__ = ["Payment", "PaymentRuleViolated", "PaymentStatus"]

PaymentStatus = Literal["new", "failed", "charged", "refunded"]


class PaymentRuleViolated(DomainException):
    """A command on a Payment broke one of its rules."""


class Payment(Aggregate):
    """The payment of one order (the aggregate id is the order id).

    Examples
    --------
    >>> p = Payment("o-1")
    >>> p.fail(900, "card declined")
    >>> p.charge(900)
    >>> p.refund(400, "one item returned")
    >>> p.status, p.charged, p.refunded
    ('charged', 900, 400)
    """

    stream_prefix = "payment"
    schema_version = 1

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.status: PaymentStatus = "new"
        self.charged = 0
        self.refunded = 0
        self.attempts = 0

    def _must(self, condition: bool, message: str) -> None:
        rule(condition, f"payment of order {self.id!r}: {message}", PaymentRuleViolated)

    @command
    def charge(self, amount: int) -> None:
        """Take ``amount`` cents from the customer."""
        check_count("amount", amount)
        if self.status not in ("new", "failed"):
            self._must(False, f"already {self.status}; an order is charged once")
        self.record("PaymentCharged", order_id=self.id, amount=amount)

    @command
    def fail(self, amount: int, reason: str) -> None:
        """Record a charge attempt of ``amount`` that failed."""
        check_money("amount", amount)
        check_text("reason", reason)
        self._must(self.status in ("new", "failed"), f"already {self.status}; nothing left to fail")
        self.record("PaymentFailed", order_id=self.id, amount=amount, reason=reason)

    @command
    def refund(self, amount: int, reason: str) -> None:
        """Give back ``amount`` cents of the charge."""
        check_count("amount", amount)
        check_text("reason", reason)
        self._must(self.status in ("charged", "refunded"), f"nothing was charged (status {self.status})")
        left = self.charged - self.refunded
        self._must(amount <= left, f"cannot refund {amount}: only {left} of {self.charged} is left to refund")
        self.record("PaymentRefunded", order_id=self.id, amount=amount, reason=reason)

    @applies("PaymentCharged")
    def _charged(self, data: dict[str, Any]) -> None:
        self.status = "charged"
        self.charged = data["amount"]
        self.attempts += 1

    @applies("PaymentFailed")
    def _failed(self, data: dict[str, Any]) -> None:
        self.status = "failed"
        self.attempts += 1

    @applies("PaymentRefunded")
    def _refunded(self, data: dict[str, Any]) -> None:
        self.refunded += data["amount"]
        if self.refunded == self.charged:
            self.status = "refunded"
