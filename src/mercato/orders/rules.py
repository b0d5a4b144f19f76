"""Order rules as plain data and functions: the state machine and the totals."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from mercato.orders.errors import InvalidTransition


class Status(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


class Action(StrEnum):
    PAY = "pay"
    FULFIL = "fulfil"
    CANCEL = "cancel"
    EXPIRE = "expire"
    REFUND = "refund"
    REFUND_PART = "refund_part"


# The whole state machine: (from, action) → to. Anything not listed is refused.
TRANSITIONS: dict[tuple[Status, Action], Status] = {
    (Status.PENDING_PAYMENT, Action.PAY): Status.PAID,
    (Status.PENDING_PAYMENT, Action.CANCEL): Status.CANCELLED,
    (Status.PENDING_PAYMENT, Action.EXPIRE): Status.EXPIRED,
    (Status.PAID, Action.FULFIL): Status.FULFILLED,
    (Status.FULFILLED, Action.REFUND): Status.REFUNDED,  # returns after delivery
    (Status.FULFILLED, Action.REFUND_PART): Status.PARTIALLY_REFUNDED,
    (Status.PAID, Action.CANCEL): Status.CANCELLED,  # compensation refunds the payment
    (Status.PAID, Action.REFUND): Status.REFUNDED,
    (Status.PAID, Action.REFUND_PART): Status.PARTIALLY_REFUNDED,
    (Status.PARTIALLY_REFUNDED, Action.REFUND_PART): Status.PARTIALLY_REFUNDED,
    (Status.PARTIALLY_REFUNDED, Action.REFUND): Status.REFUNDED,
}

# Statuses in which the order still holds reserved stock that is not yet sold.
HOLDS_RESERVATION = frozenset({Status.PENDING_PAYMENT})

CENT = Decimal("0.01")


def next_status(current: Status, action: Action) -> Status:
    target = TRANSITIONS.get((current, action))
    if target is None:
        raise InvalidTransition(
            f"An order that is {current.value} cannot {action.value.replace('_', ' ')}.",
            details=[{"field": "status", "message": current.value}],
        )
    return target


def line_total(unit_price: Decimal, quantity: int) -> Decimal:
    return (unit_price * quantity).quantize(CENT, rounding=ROUND_HALF_UP)
