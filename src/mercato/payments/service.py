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
from mercato.payments.errors import PaymentInProgress, UnpayableAmount
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


# Currencies whose smallest unit is not a hundredth (ISO 4217 exponents, as Stripe uses).
ZERO_DECIMAL = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
MAX_MINOR = 2**31 - 1  # the provider's and our column's bound


def minor_units(amount: Decimal, currency: str) -> int:
    """The amount in the currency's smallest unit (yen for JPY, fils for KWD, cents else)."""
    exponent = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    minor = int((amount * 10**exponent).to_integral_value())
    if not 0 < minor <= MAX_MINOR:
        raise UnpayableAmount(details=[{"field": "total", "message": f"{amount} {currency}"}])
    return minor


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
            "amount": minor_units(order["total"], order["currency"]),
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
        if _charged_after_giving_up(payment, intent):
            # We closed this attempt without an answer, but the provider did charge:
            # the money goes back (the reconciliation job refunds it).
            refund_due = {"intent_id": intent.id, "status": "refund_pending", "busy_until": None}
            return await repository.update_payment(conn, payment_id, refund_due)
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


def _charged_after_giving_up(payment: Any, intent: Intent) -> bool:
    return (
        intent.status == "succeeded"
        and payment["intent_id"] is None
        and payment["status"] in ("failed", "canceled")
    )


async def give_up_claim(db: Database, payment_id: uuid.UUID) -> None:
    async with db.transaction() as conn:
        await repository.release(conn, payment_id)


async def refused(db: Database, payment_id: uuid.UUID) -> None:
    """The provider refused to create the intent (a 4xx other than a decline): no money
    moved, and the attempt is over, so the customer can try another payment method.
    Only an attempt still waiting for its first answer is closed this way."""
    async with db.transaction() as conn:
        await repository.fail_unanswered(conn, payment_id, failure_code="provider_refused")


async def mark_refund_due(conn: Executor, order_id: uuid.UUID) -> None:
    """An order that was paid has been cancelled: its money goes back (compensation)."""
    payment = await repository.refundable_payment_of(conn, order_id)
    if payment is not None:
        await repository.update_payment(conn, payment["id"], {"status": "refund_pending"})


async def refund_at_provider(provider: PaymentProvider, payment: Any, amount: int) -> int:
    """Give back `amount` (minor units) of a captured payment; returns what was refunded.
    The key names the cumulative amount: a retry after a crash, before our records were
    updated, repeats the same refund at the provider instead of refunding again."""
    key = f"mercato-refund-{payment['id']}-{payment['refunded_amount'] + amount}"
    result = await provider.refund(payment["intent_id"], amount=amount, idempotency_key=key)
    return result.amount


async def record_refund(conn: Executor, payment_id: uuid.UUID, amount: int) -> Any:
    """In the caller's transaction (with the order's change and the stored answer)."""
    current = await repository.get_payment(conn, payment_id, for_update=True)
    refunded = min(current["amount"], current["refunded_amount"] + amount)
    if refunded >= current["amount"]:
        status = "refunded"
    elif current["status"] == "refund_pending":
        status = "refund_pending"  # compensation still owes the rest
    else:
        status = "partially_refunded"
    changes = {"refunded_amount": refunded, "status": status, "busy_until": None}
    return await repository.update_payment(conn, payment_id, changes)


async def reconcile(
    db: Database, provider: PaymentProvider, *, older_than: timedelta, batch: int = RECONCILE_BATCH
) -> int:
    """Settle attempts whose outcome never arrived (lost webhook, crash, timeout) and
    perform due refunds. Each attempt is claimed just before its provider call, so a slow
    batch never outlives its claims; provider calls reuse each attempt's own keys."""
    async with db.transaction() as conn:
        rows = await repository.unsettled(conn, older_than=older_than, limit=batch)
        open_orders = await order_statuses(conn, [row["order_id"] for row in rows])
    settled = 0
    for row in rows:
        async with db.transaction() as conn:
            if not await repository.claim(conn, row["id"]):
                continue  # another instance has it
        try:
            await _settle(db, provider, row, open_orders.get(row["order_id"]))
            settled += 1
        except ProviderUnavailable:
            log.warning("reconcile_provider_unavailable", payment_id=str(row["id"]))
            await give_up_claim(db, row["id"])
            break  # the provider is down: the rest waits for the next pass
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
        refunded = await refund_at_provider(provider, row, row["amount"] - row["refunded_amount"])
        async with db.transaction() as conn:
            await record_refund(conn, row["id"], refunded)
        return
    if row["intent_id"] is None and order_status != "pending_payment":
        # No answer ever came and the order has closed: do not charge now. Should the
        # first request have charged after all, its webhook (retried by the provider for
        # days) finds this attempt closed and turns it into a refund (apply_intent).
        async with db.transaction() as conn:
            await repository.fail_unanswered(conn, row["id"], failure_code="order_closed")
        return
    intent = await (
        provider.retrieve(row["intent_id"]) if row["intent_id"] else call_provider(provider, row)
    )
    async with db.transaction() as conn:
        await apply_intent(conn, row["id"], intent)
