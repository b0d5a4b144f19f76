"""The payments context's HTTP routes: pay an order, list its payments, refund, and the
provider's webhook."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from mercato.core import idempotency
from mercato.core.access import (
    AUTHENTICATED,
    PUBLIC,
    current_principal,
    requires,
    route_adder,
)
from mercato.core.deps import database
from mercato.core.errors import DomainError, Forbidden, ValidationFailed
from mercato.core.http import envelope
from mercato.core.idempotency import StoredAnswer
from mercato.core.observability import request_id_var
from mercato.core.security import Principal
from mercato.orders import (
    READ_ANY_ORDER,
    WRITE_ANY_ORDER,
    OrderAction,
    lock_order_status,
    order_owner,
    settle_order,
)
from mercato.payments import repository, service, signature
from mercato.payments.errors import (
    NothingToRefund,
    OrderClosedBeforePayment,
    PaymentDeclined,
    PaymentInProgress,
    PaymentNotFound,
)
from mercato.payments.provider import Intent, PaymentProvider, ProviderRefused

log = structlog.get_logger("mercato.payments.api")
PRIVATE = {"cache-control": "no-store"}
INTENT_EVENTS = {
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.processing",
}


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_method: Annotated[str, StringConstraints(pattern=r"^pm_[A-Za-z0-9_]{1,64}$")]


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: (
        Annotated[int, Field(gt=0, description="Minor units; the rest when omitted.")] | None
    ) = None


class PaymentOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    status: str
    amount: int
    currency: str
    payment_method: str
    intent_id: str | None
    failure_code: str | None
    refunded_amount: int
    created_at: str
    updated_at: str


class PaymentEnvelope(BaseModel):
    data: PaymentOut


class PaymentList(BaseModel):
    data: list[PaymentOut]


def provider_of(request: Request) -> PaymentProvider:
    provider: PaymentProvider = request.app.state.payment_provider
    return provider


def _idempotency_scope(
    request: Request, principal: Principal, *request_parts: Any
) -> dict[str, Any]:
    """Where a payment request's answer is stored: this context's table, the caller, the
    Idempotency-Key, and what makes two requests the same."""
    return {
        "table": repository.IDEMPOTENCY_TABLE,
        "owner": f"{principal.kind}:{principal.subject_id}",
        "key": idempotency.idempotency_key(request),
        "request_fingerprint": idempotency.fingerprint(*request_parts),
    }


def _answer(payment: Any) -> StoredAnswer:
    data = service.payment_json(payment)
    refusal: DomainError | None = None
    if payment["status"] in ("failed", "canceled"):
        refusal = PaymentDeclined(
            details=[{"field": "payment_method", "message": data["failure_code"]}]
        )
    elif payment["status"] == "refund_pending":
        refusal = OrderClosedBeforePayment()
    if refusal is not None:
        body = {
            "error": {
                "code": refusal.code,
                "message": refusal.detail_message,
                "details": refusal.details,
                "request_id": request_id_var.get(),
                "payment": data,
            }
        }
        return StoredAnswer(refusal.status, orjson.dumps(body), PRIVATE)
    status = 202 if payment["status"] in ("pending", "processing") else 201
    return StoredAnswer(status, orjson.dumps(envelope(data)), PRIVATE)


async def pay_order(request: Request, order_id: uuid.UUID, data: PaymentCreate) -> Response:
    """Three steps (see service.py); the answer is stored under the Idempotency-Key only
    once the outcome is known, so a retry after a failure resumes the same attempt."""
    principal = current_principal(request)
    if principal.kind != "user":
        raise Forbidden("Orders are paid by their customers.")
    db = database(request)
    key = _idempotency_scope(request, principal, "pay", order_id, data.payment_method)
    async with db.transaction() as conn:
        replayed = await idempotency.replay(conn, **key)
        if replayed is not None:
            return replayed
        payment = await service.start_payment(conn, principal, order_id, data.payment_method)
    try:
        intent = await service.call_provider(provider_of(request), payment)
    except ProviderRefused:
        await service.refused(db, payment["id"])
        raise
    except Exception:
        await service.give_up_claim(db, payment["id"])
        raise
    async with db.transaction() as conn:
        settled = await service.apply_intent(conn, payment["id"], intent)
        answer = _answer(settled)
        await idempotency.remember(conn, **key, answer=answer)
    return answer.response()


async def list_payments(request: Request, order_id: uuid.UUID) -> Response:
    principal = current_principal(request)
    reader = database(request).reader
    owner = await order_owner(reader, order_id)
    if owner is None or not (principal.owns(owner) or principal.can(READ_ANY_ORDER)):
        raise PaymentNotFound("No such order.")
    rows = await repository.payments_of(reader, order_id)
    body = orjson.dumps(envelope([service.payment_json(row) for row in rows]))
    return Response(body, media_type="application/json", headers=PRIVATE)


async def refund_order(request: Request, order_id: uuid.UUID, data: RefundCreate) -> Response:
    principal = current_principal(request)
    db = database(request)
    key = _idempotency_scope(request, principal, "refund", order_id, data.amount)
    async with db.transaction() as conn:
        replayed = await idempotency.replay(conn, **key)
        if replayed is not None:
            return replayed
        order_status = await lock_order_status(conn, order_id)
        if order_status in ("cancelled", "expired"):
            raise NothingToRefund("This order was closed; its payment is refunded automatically.")
        payment = await repository.refundable_payment_of(conn, order_id)
        if payment is None:
            raise NothingToRefund()
        left = payment["amount"] - payment["refunded_amount"]
        amount = data.amount if data.amount is not None else left
        if amount > left:
            raise ValidationFailed(details=[{"field": "body.amount", "message": f"at most {left}"}])
        # One refund of a payment at a time: two at once would each read the same total.
        if not await repository.claim(conn, payment["id"]):
            raise PaymentInProgress("Another refund of this payment is in progress.")
    try:
        refunded_amount = await service.refund_at_provider(provider_of(request), payment, amount)
    except Exception:
        await service.give_up_claim(db, payment["id"])
        raise
    # The payment, the order and the stored answer change together: a retry after a crash
    # either finds the answer or repeats the same provider refund (same key), never a new one.
    async with db.transaction() as conn:
        refunded = await service.record_refund(conn, payment["id"], refunded_amount)
        full = refunded["status"] == "refunded"
        action = OrderAction.REFUND if full else OrderAction.REFUND_PART
        await settle_order(conn, order_id, action, None)
        answer = StoredAnswer(200, orjson.dumps(envelope(service.payment_json(refunded))), PRIVATE)
        await idempotency.remember(conn, **key, answer=answer)
    return answer.response()


async def provider_webhook(request: Request) -> Response:
    """Events from the provider, verified by their signature and applied once each."""
    payload = await request.body()
    secret = request.app.state.settings.payment_webhook_secret
    signature.verify(request.headers.get("stripe-signature"), payload, secret.get_secret_value())
    try:
        event = orjson.loads(payload)
        event_id, event_type = str(event["id"]), str(event["type"])
        obj: dict[str, Any] = event["data"]["object"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValidationFailed("Not a provider event.") from exc
    async with database(request).transaction() as conn:
        if not await repository.record_webhook(conn, event_id, event_type):
            return _received(duplicate=True)
        if event_type in INTENT_EVENTS:
            await _apply_intent_event(conn, obj)
    return _received(duplicate=False)


async def _apply_intent_event(conn: Any, obj: dict[str, Any]) -> None:
    payment = await repository.payment_by_intent(conn, obj["id"])
    if payment is None and "payment_id" in (obj.get("metadata") or {}):
        # The webhook can arrive before our own request has stored the intent's id.
        try:
            payment = await repository.get_payment(conn, uuid.UUID(obj["metadata"]["payment_id"]))
        except ValueError:
            payment = None
    if payment is None:
        log.warning("webhook_for_unknown_intent", intent_id=obj.get("id"))
        return
    failure = obj.get("last_payment_error") or None
    intent = Intent(
        id=obj["id"],
        status=obj["status"],
        amount=obj["amount"],
        currency=str(obj["currency"]).upper(),
        failure_code=(failure.get("decline_code") or failure.get("code")) if failure else None,
    )
    await service.apply_intent(conn, payment["id"], intent)


def _received(*, duplicate: bool) -> Response:
    return Response(
        orjson.dumps({"received": True, "duplicate": duplicate}), media_type="application/json"
    )


def register_routes(app: FastAPI, *, prefix: str) -> None:
    add = route_adder(
        app, prefix=prefix, tag="payments", errors=(400, 401, 402, 403, 404, 409, 422, 429, 503)
    )

    add(
        "/orders/{order_id}/payments",
        pay_order,
        "POST",
        AUTHENTICATED,
        "Pay an order (Idempotency-Key required): 201 paid, 202 processing, 402 declined",
        status_code=201,
        response_model=PaymentEnvelope,
    )
    add(
        "/orders/{order_id}/payments",
        list_payments,
        "GET",
        AUTHENTICATED,
        "List an order's payment attempts",
        response_model=PaymentList,
    )
    add(
        "/orders/{order_id}/refunds",
        refund_order,
        "POST",
        requires(WRITE_ANY_ORDER),
        "Refund a paid order, fully or in part (Idempotency-Key required)",
        response_model=PaymentEnvelope,
    )
    # Public, because the provider calls it; it accepts only what its signature proves.
    add(
        "/payments/webhook",
        provider_webhook,
        "POST",
        PUBLIC,
        "Provider events (Stripe-Signature verified)",
    )
