"""The payments context's errors, each with its stable code."""

from __future__ import annotations

from mercato.core.errors import Conflict, DomainError, NotFound


class PaymentInProgress(Conflict):
    code = "PAYMENT_IN_PROGRESS"
    message = "This order already has a payment in progress or completed."


class PaymentDeclined(DomainError):
    code = "PAYMENT_DECLINED"
    status = 402
    message = "The payment was declined; the order is cancelled and its stock released."


class PaymentNotFound(NotFound):
    code = "PAYMENT_NOT_FOUND"
    message = "No such payment."


class OrderClosedBeforePayment(Conflict):
    code = "ORDER_CLOSED_BEFORE_PAYMENT"
    message = (
        "The order expired or was cancelled before the payment completed; "
        "the amount taken is being refunded."
    )


class UnpayableAmount(DomainError):
    code = "PAYMENT_AMOUNT_UNSUPPORTED"
    status = 422
    message = "This order's total cannot be charged (free, or beyond the provider's limit)."


class NothingToRefund(Conflict):
    code = "NOTHING_TO_REFUND"
    message = "This order has no captured payment left to refund."
