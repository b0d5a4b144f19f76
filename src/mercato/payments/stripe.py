"""The provider adapter for Stripe's PaymentIntents protocol, over httpx.

The base URL is configuration: the local sandbox (`mercato sandbox-pay`) in development
and tests, `https://api.stripe.com` in production. Every request has a timeout; transient
failures (connection errors, lost answers, 5xx, 429) are retried a few times with backoff,
always with the same Idempotency-Key, so a retry can never charge twice. Around all of it,
a circuit breaker: after repeated failures the provider is not called at all for a while,
and callers get `ProviderUnavailable` at once instead of waiting for timeouts.
"""

from __future__ import annotations

from typing import Any

import httpx
import structlog
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from mercato.payments.provider import Intent, ProviderRefused, ProviderUnavailable, RefundResult

log = structlog.get_logger("mercato.payments.provider")
CIRCUIT = "payment-provider"


class _Transient(Exception):
    """A failure worth retrying with the same idempotency key."""


class StripeProvider:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float,
        breaker_threshold: int,
        breaker_seconds: float,
        attempts: int = 3,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            follow_redirects=False,
        )
        # A refusal (4xx) says the request was wrong, not that the provider is unwell:
        # it must not let one caller's bad input pause payments for everyone.
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=breaker_threshold,
            default_ttl=breaker_seconds,
            exclude=[ProviderRefused],
        )
        self._attempts = attempts

    async def close(self) -> None:
        await self._http.aclose()

    async def create_and_confirm(
        self,
        *,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> Intent:
        form = {
            "amount": str(amount),
            "currency": currency.lower(),
            "payment_method": payment_method,
            "confirm": "true",
            **{f"metadata[{key}]": value for key, value in metadata.items()},
        }
        return _intent(await self._call("POST", "/v1/payment_intents", form, idempotency_key))

    async def retrieve(self, intent_id: str) -> Intent:
        return _intent(await self._call("GET", f"/v1/payment_intents/{intent_id}", None, None))

    async def cancel(self, intent_id: str, *, idempotency_key: str) -> Intent:
        path = f"/v1/payment_intents/{intent_id}/cancel"
        return _intent(await self._call("POST", path, {}, idempotency_key))

    async def refund(self, intent_id: str, *, amount: int, idempotency_key: str) -> RefundResult:
        form = {"payment_intent": intent_id, "amount": str(amount)}
        body = await self._call("POST", "/v1/refunds", form, idempotency_key)
        return RefundResult(id=body["id"], amount=body["amount"], status=body["status"])

    async def _call(
        self, method: str, path: str, form: dict[str, str] | None, idempotency_key: str | None
    ) -> dict[str, Any]:
        try:
            breaker = await self._breakers.get_breaker(CIRCUIT)
            async with breaker:
                return await self._with_retries(method, path, form, idempotency_key)
        except OpenedState as exc:
            raise ProviderUnavailable("The payment provider is failing; calls are paused.") from exc
        except _Transient as exc:
            raise ProviderUnavailable() from exc

    async def _with_retries(
        self, method: str, path: str, form: dict[str, str] | None, idempotency_key: str | None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(multiplier=0.1, max=1.0, jitter=0.1),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    response = await self._http.request(method, path, data=form, headers=headers)
                except httpx.TransportError as exc:  # refused, reset, timed out, dropped
                    log.warning("payment_provider_unreachable", path=path, error=type(exc).__name__)
                    raise _Transient(str(exc)) from exc
                if response.status_code >= 500 or response.status_code in (409, 429):
                    # 409: the same key is still being processed (e.g. after our timeout):
                    # the outcome is unknown, never "refused".
                    log.warning("payment_provider_error", path=path, status=response.status_code)
                    raise _Transient(f"HTTP {response.status_code}")
                return _body(response)
        raise AssertionError("unreachable: tenacity re-raises the last failure")


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body: dict[str, Any] = response.json()
    except ValueError as exc:
        raise ProviderRefused("The payment provider answered something that is not JSON.") from exc
    if response.status_code == 402:  # a card error: the intent is in the error
        intent: dict[str, Any] = body["error"]["payment_intent"]
        error = body["error"]
        intent["last_payment_error"] = {
            "code": error.get("code"),
            "decline_code": error.get("decline_code"),
        }
        return intent
    if response.status_code >= 400:
        error = body.get("error", {})
        if error.get("type") == "idempotency_error":
            # Our key was seen with other parameters: the first request's outcome is
            # unknown here, so the attempt must stay open, not be closed as refused.
            raise _Transient("idempotency_error")
        raise ProviderRefused(
            details=[{"field": error.get("param"), "message": str(error.get("message", ""))[:200]}]
        )
    return body


def _intent(body: dict[str, Any]) -> Intent:
    failure = body.get("last_payment_error") or None
    return Intent(
        id=body["id"],
        status=body["status"],
        amount=body["amount"],
        currency=body["currency"].upper(),
        failure_code=(failure.get("decline_code") or failure.get("code")) if failure else None,
        metadata=body.get("metadata") or {},
    )
