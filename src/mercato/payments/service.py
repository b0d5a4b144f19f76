"""Payment use cases: pay an order, apply what the provider says, reconcile, refund.

Paying runs in three steps so that no database transaction stays open while the provider
is called: (1) record the attempt and claim it, (2) call the provider with the attempt's own
idempotency key, (3) apply the outcome to the attempt and the order in one transaction.
A crash or timeout between the steps leaves an attempt that a retry with the same
Idempotency-Key, a webhook, or the reconciliation job completes, always with the same
provider key: the customer is never charged twice.

Outcomes reach an order exactly once (`orders.settle_order` moves it only from the state
the outcome applies to): paid → `paid`; declined → `cancelled` (stock released). Money that
arrives for an order that can no longer take it (expired, or cancelled by staff) is marked
`refund_pending` and refunded by the reconciliation job.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import structlog

from mercato.core.database import Database, Executor
from mercato.core.security import Principal
from mercato.orders import OrderAction, lock_order, payable_order, settle_order
from mercato.orders import statuses as order_statuses
from mercato.payments import repository
from mercato.payments.errors import PaymentInProgress
from mercato.payments.provider import (
    Intent,
    PaymentProvider,
    ProviderRefused,
    ProviderUnavailable,
)

log = structlog.get_logger("mercato.payments")
FINAL = frozenset(
    {"succeeded", "failed", "canceled", "refund_pending", "refunded", "partially_refunded"}
)
RECONCILE_BATCH = 50


def minor_units(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value())


def payment_json(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "order_id": str(row["order_id"]),
        "status": row["status"],
        "amount": row["amount"],
        "currency": row["currency"],
        "payment_method": row["payment_method"],
        "intent_id": row["intent_id"],
        "failure_code": row["failure_code"],
        "refunded_amount": row["refunded_amount"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def start_payment(
    conn: Executor, principal: Principal, order_id: uuid.UUID, payment_method: str
) -> Any:
    """Step 1: the attempt, claimed by this request. Resumes an unfinished attempt."""
    order = await payable_order(conn, principal, order_id)
    existing = await repository.open_payment_of(conn, order_id)
    if existing is not None:
        if existing["status"] != "pending" or not await repository.claim(conn, existing["id"]):
            raise PaymentInProgress()
        if existing["payment_method"] != payment_method:
            # The earlier attempt may have reached the provider (its answer lost): it is
            # finished with its own method (retry it, or let reconciliation settle it).
            raise PaymentInProgress(
                "An earlier attempt with another payment method is unfinished; retry it "
                "with the same method, or wait for it to be settled."
            )
        return existing
    return await repository.insert_payment(
        conn,
        {
            "order_id": order_id,
            "customer_id": principal.subject_id,
            "amount": minor_units(order["total"]),
            "currency": order["currency"],
            "payment_method": payment_method,
        },
    )


async def call_provider(provider: PaymentProvider, payment: Any) -> Intent:
    """Step 2: create and confirm the intent under the attempt's own idempotency key."""
    return await provider.create_and_confirm(
        amount=payment["amount"],
        currency=payment["currency"],
        payment_method=payment["payment_method"],
        idempotency_key=payment["provider_key"],
        metadata={"payment_id": str(payment["id"]), "order_id": str(payment["order_id"])},
    )


async def apply_intent(conn: Executor, payment_id: uuid.UUID, intent: Intent) -> Any:
    """Step 3 (also webhooks and reconciliation): bring the attempt and its order to what
    the provider says. Applying the same outcome twice changes nothing."""
    order_id = (await repository.get_payment(conn, payment_id))["order_id"]
    await lock_order(conn, order_id)  # the order's row first, as paying takes them
    payment = await repository.get_payment(conn, payment_id, for_update=True)
    if payment["status"] in FINAL:
        return payment
    changes: dict[str, Any] = {"intent_id": intent.id, "busy_until": None}
    if intent.status == "succeeded":
        taken = await settle_order(conn, payment["order_id"], OrderAction.PAY, None)
        changes["status"] = "succeeded" if taken else "refund_pending"
    elif intent.failure_code is not None or intent.status in (
        "canceled",
        "requires_payment_method",
    ):
        changes["status"] = "failed" if intent.status != "canceled" else "canceled"
        changes["failure_code"] = intent.failure_code or intent.status
        reason = f"payment {changes['status']}: {changes['failure_code']}"
        await settle_order(conn, payment["order_id"], OrderAction.CANCEL, reason)
    else:
        changes["status"] = "processing"
    return await repository.update_payment(conn, payment_id, changes)


async def give_up_claim(db: Database, payment_id: uuid.UUID) -> None:
    async with db.transaction() as conn:
        await repository.release(conn, payment_id)


async def refused(db: Database, payment_id: uuid.UUID) -> None:
    """The provider refused to create the intent (a 4xx): no money moved, and the attempt
    is over, so the customer can try again with another payment method."""
    async with db.transaction() as conn:
        await repository.update_payment(
            conn,
            payment_id,
            {"status": "failed", "failure_code": "provider_refused", "busy_until": None},
        )


async def mark_refund_due(conn: Executor, order_id: uuid.UUID) -> None:
    """An order that was paid has been cancelled: its money goes back (compensation)."""
    payment = await repository.open_payment_of(conn, order_id)
    if payment is not None and payment["status"] == "succeeded":
        await repository.update_payment(conn, payment["id"], {"status": "refund_pending"})


async def refund(db: Database, provider: PaymentProvider, payment: Any, amount: int) -> Any:
    """Give back `amount` (minor units) of a captured payment: one provider call (outside
    any transaction), then one update. The key names the cumulative amount, so a retry of
    this refund repeats it at the provider instead of refunding twice."""
    key = f"mercato-refund-{payment['id']}-{payment['refunded_amount'] + amount}"
    result = await provider.refund(payment["intent_id"], amount=amount, idempotency_key=key)
    async with db.transaction() as conn:
        current = await repository.get_payment(conn, payment["id"], for_update=True)
        refunded = max(current["refunded_amount"], payment["refunded_amount"] + result.amount)
        status = "refunded" if refunded >= current["amount"] else "partially_refunded"
        return await repository.update_payment(
            conn, payment["id"], {"refunded_amount": refunded, "status": status, "busy_until": None}
        )


async def reconcile(
    db: Database, provider: PaymentProvider, *, older_than: timedelta, batch: int = RECONCILE_BATCH
) -> int:
    """Settle attempts whose outcome never arrived (lost webhook, crash, timeout) and
    perform due refunds. Provider calls use each attempt's own keys: safe to repeat."""
    async with db.transaction() as conn:
        rows = await repository.unsettled(conn, older_than=older_than, limit=batch)
        for row in rows:
            await repository.claim(conn, row["id"])
        open_orders = await order_statuses(conn, [row["order_id"] for row in rows])
    settled = 0
    for number, row in enumerate(rows):
        try:
            await _settle(db, provider, row, open_orders.get(row["order_id"]))
            settled += 1
        except ProviderUnavailable:
            log.warning("reconcile_provider_unavailable", payment_id=str(row["id"]))
            for unsettled in rows[number:]:  # the provider is down: try again next pass
                await give_up_claim(db, unsettled["id"])
            break
        except ProviderRefused:
            log.warning("reconcile_provider_refused", payment_id=str(row["id"]))
            if row["status"] == "pending" and row["intent_id"] is None:
                await refused(db, row["id"])
            else:  # a refund or lookup refused: a human must look; keep it visible
                await give_up_claim(db, row["id"])
    return settled


async def _settle(
    db: Database, provider: PaymentProvider, row: Any, order_status: str | None
) -> None:
    if row["status"] == "refund_pending":
        await refund(db, provider, row, row["amount"] - row["refunded_amount"])
        return
    if row["intent_id"] is None and order_status != "pending_payment":
        # The provider never answered and the order has closed: do not charge now.
        async with db.transaction() as conn:
            await repository.update_payment(
                conn,
                row["id"],
                {"status": "canceled", "failure_code": "order_closed", "busy_until": None},
            )
        return
    intent = await (
        provider.retrieve(row["intent_id"]) if row["intent_id"] else call_provider(provider, row)
    )
    async with db.transaction() as conn:
        await apply_intent(conn, row["id"], intent)
