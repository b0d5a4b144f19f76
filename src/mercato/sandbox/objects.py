"""The sandbox's objects as Stripe shows them, and the test payment methods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Card:
    """What confirming with a test payment method does."""

    outcome: str  # succeed | decline | delay | drop
    decline_code: str | None = None
    message: str = ""


TEST_PAYMENT_METHODS = {
    "pm_card_visa": Card("succeed"),
    "pm_card_mastercard": Card("succeed"),
    "pm_card_chargeDeclined": Card("decline", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": Card(
        "decline", "insufficient_funds", "Your card has insufficient funds."
    ),
    "pm_card_delayed": Card("delay"),
    "pm_card_networkFailure": Card("drop"),
}


@dataclass(slots=True)
class Intent:
    id: str
    amount: int
    currency: str
    created: int
    client_secret: str
    metadata: dict[str, str]
    description: str | None
    status: str = "requires_payment_method"
    payment_method: str | None = None
    last_payment_error: dict[str, Any] | None = None
    latest_charge: str | None = None
    canceled_at: int | None = None
    cancellation_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_received": self.amount if self.status == "succeeded" else 0,
            "currency": self.currency,
            "status": self.status,
            "payment_method": self.payment_method,
            "metadata": dict(self.metadata),
            "description": self.description,
            "created": self.created,
            "livemode": False,
            "capture_method": "automatic",
            "confirmation_method": "automatic",
            "last_payment_error": dict(self.last_payment_error)
            if self.last_payment_error
            else None,
            "latest_charge": self.latest_charge,
            "canceled_at": self.canceled_at,
            "cancellation_reason": self.cancellation_reason,
            "client_secret": self.client_secret,
        }


@dataclass(slots=True)
class Charge:
    id: str
    payment_intent: str
    amount: int
    currency: str
    created: int
    amount_refunded: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "charge",
            "payment_intent": self.payment_intent,
            "amount": self.amount,
            "amount_refunded": self.amount_refunded,
            "currency": self.currency,
            "created": self.created,
        }


@dataclass(frozen=True, slots=True)
class Stored:
    """The first answer under an idempotency key, and what the request was."""

    endpoint: str  # "POST /v1/payment_intents"
    fingerprint: str  # of the parameters
    status: int
    body: bytes
