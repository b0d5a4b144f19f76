"""The orders context's errors, each with its stable code."""

from __future__ import annotations

from mercato.core.errors import Conflict, NotFound, ValidationFailed


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
