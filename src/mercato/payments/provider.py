"""The payment-provider port: what the payments context needs from a provider.

Amounts are in minor units (cents). Every call that moves money carries an idempotency key
the caller derives from its own records, so a retry after a lost answer, a timeout or a
crash can never charge twice: the provider answers the repeat with the first result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from mercato.core.errors import DomainError


@dataclass(frozen=True, slots=True)
class Intent:
    id: str
    status: str  # requires_payment_method, requires_confirmation, processing, succeeded, canceled
    amount: int
    currency: str
    failure_code: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        return self.status in ("succeeded", "canceled") or self.failure_code is not None


@dataclass(frozen=True, slots=True)
class RefundResult:
    id: str
    amount: int
    status: str


class ProviderUnavailable(DomainError):
    code = "PAYMENT_PROVIDER_UNAVAILABLE"
    status = 503
    message = (
        "The payment provider cannot be reached right now; the order stays pending payment. "
        "Retry with the same Idempotency-Key."
    )


class ProviderRefused(DomainError):
    """The provider refused the request itself (not a card decline): a bug or bad state."""

    code = "PAYMENT_PROVIDER_REFUSED"
    status = 502
    message = "The payment provider refused the request."


class PaymentProvider(Protocol):
    async def create_and_confirm(
        self,
        *,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> Intent: ...

    async def retrieve(self, intent_id: str) -> Intent: ...

    async def cancel(self, intent_id: str, *, idempotency_key: str) -> Intent: ...

    async def refund(
        self, intent_id: str, *, amount: int, idempotency_key: str
    ) -> RefundResult: ...

    async def close(self) -> None: ...
