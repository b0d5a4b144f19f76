"""The catalog's stock port over HTTP, for an order service running apart from the catalog.

Every call carries the order id as the reservation id, so each is idempotent at the catalog
and safe to send again. Each has a connect and a read timeout; transport failures, 429 and
5xx are retried a few times with backoff (the same id each time). Around all of it, a
circuit breaker: after repeated failures the catalog is not called for a while, and callers
get `StockServiceUnavailable` at once. The catalog's refusals (out of stock, not for sale,
a lapsed reservation) are answers, not failures: they pass through and never open it.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
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

from mercato.catalog import OutOfStock, ProductUnavailable, ReservedProduct, StockLine
from mercato.core.errors import DomainError
from mercato.orders.errors import StockServiceUnavailable

log = structlog.get_logger("mercato.orders.catalog")
CIRCUIT = "catalog-stock"
RESERVATIONS = "/api/v1/stock/reservations"


class ReservationLapsed(Exception):
    """The catalog no longer holds the reservation: released at its deadline, or never made."""


class _Transient(Exception):
    """A failure worth retrying with the same reservation id."""


# What the catalog answers that refuses the request, not a sign of ill health: raised with
# the codes the in-process port uses, so the customer sees the same errors either way.
REFUSALS: dict[str, type[DomainError]] = {
    OutOfStock.code: OutOfStock,
    ProductUnavailable.code: ProductUnavailable,
}
LAPSED = frozenset({"STOCK_RESERVATION_RELEASED", "STOCK_RESERVATION_NOT_FOUND"})


class CatalogStockClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        connect_timeout: float,
        timeout: float,
        breaker_threshold: int,
        breaker_seconds: float,
        attempts: int = 3,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            follow_redirects=False,
        )
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=breaker_threshold,
            default_ttl=breaker_seconds,
            exclude=[*REFUSALS.values(), ReservationLapsed],
        )
        self._attempts = attempts

    async def close(self) -> None:
        await self._http.aclose()

    async def reserve(
        self, reservation_id: uuid.UUID, lines: list[StockLine]
    ) -> list[ReservedProduct]:
        body = {"lines": [{"product_id": str(s.product_id), "quantity": s.quantity} for s in lines]}
        answer = await self._call("PUT", f"{RESERVATIONS}/{reservation_id}", body)
        return [
            ReservedProduct(
                product_id=uuid.UUID(line["product_id"]),
                sku=line["sku"],
                name=line["name"],
                unit_price=Decimal(line["unit_price"]),
                currency=line["currency"],
                quantity=line["quantity"],
            )
            for line in answer["lines"]
        ]

    async def confirm(self, reservation_id: uuid.UUID) -> None:
        await self._call("POST", f"{RESERVATIONS}/{reservation_id}/confirm", None)

    async def release(self, reservation_id: uuid.UUID) -> None:
        await self._call("POST", f"{RESERVATIONS}/{reservation_id}/release", None)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        try:
            breaker = await self._breakers.get_breaker(CIRCUIT)
            async with breaker:
                return await self._with_retries(method, path, body)
        except OpenedState as exc:
            raise StockServiceUnavailable(
                "The catalog is failing; stock calls are paused for a moment. "
                "No order was placed; retry with the same Idempotency-Key."
            ) from exc
        except _Transient as exc:
            raise StockServiceUnavailable() from exc

    async def _with_retries(
        self, method: str, path: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(multiplier=0.05, max=0.5, jitter=0.05),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    response = await self._http.request(method, path, json=body)
                except httpx.TransportError as exc:  # refused, reset, timed out, dropped
                    log.warning("catalog_unreachable", path=path, error=type(exc).__name__)
                    raise _Transient(str(exc)) from exc
                if response.status_code >= 500 or response.status_code == 429:
                    log.warning("catalog_error", path=path, status=response.status_code)
                    raise _Transient(f"HTTP {response.status_code}")
                return _data(response, path)
        raise AssertionError("unreachable: tenacity re-raises the last failure")


def _data(response: httpx.Response, path: str) -> dict[str, Any]:
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {}
    if response.is_success and "data" in body:
        data: dict[str, Any] = body["data"]
        return data
    error = body.get("error") or {}
    if error.get("code") in LAPSED:
        raise ReservationLapsed(error["code"])
    refusal = REFUSALS.get(error.get("code", ""))
    if refusal is not None:
        raise refusal(error.get("message"), details=error.get("details") or [])
    # A wrong or unauthorised API key, or a request the catalog does not understand: a
    # misconfiguration, logged as such, and unavailable to the customer.
    log.error("catalog_refused", path=path, status=response.status_code, code=error.get("code"))
    raise StockServiceUnavailable()
