"""The orders context's errors, each with its stable code."""

from __future__ import annotations

from mercato.core.errors import Conflict, DomainError, NotFound, ValidationFailed


class OrderNotFound(NotFound):
    # Also the answer when the order exists but is someone else's: its existence is
    # not the caller's business either.
    code = "ORDER_NOT_FOUND"
    message = "No such order."


class InvalidTransition(Conflict):
    code = "ORDER_INVALID_TRANSITION"
    message = "The order's status does not allow this."


class MixedCurrencies(ValidationFailed):
    code = "ORDER_MIXED_CURRENCIES"
    message = "All lines of an order must be priced in one currency."


class StockServiceUnavailable(DomainError):
    code = "STOCK_SERVICE_UNAVAILABLE"
    status = 503
    message = (
        "Stock cannot be reserved right now (the catalog does not answer); no order was "
        "placed. Retry with the same Idempotency-Key."
    )
