"""Every query the payments context runs: plain SQL, parameterised, on asyncpg."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from mercato.core.database import Executor
from mercato.payments.errors import PaymentInProgress

COLUMNS = (
    "id, order_id, customer_id, amount, currency, payment_method, provider_key, intent_id,"
    " status, failure_code, refunded_amount, busy_until, version, created_at, updated_at"
)
IDEMPOTENCY_TABLE = "payments.idempotency_keys"
BUSY_FOR = timedelta(seconds=60)


async def insert_payment(conn: Executor, fields: dict[str, Any]) -> Any:
    payment_id = uuid.uuid4()
    try:
        return await conn.fetchrow(
            "INSERT INTO payments.payments (id, order_id, customer_id, amount, currency,"
            " payment_method, provider_key, busy_until)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8::interval)"
            f" RETURNING {COLUMNS}",
            payment_id,
            fields["order_id"],
            fields["customer_id"],
            fields["amount"],
            fields["currency"],
            fields["payment_method"],
            f"mercato-payment-{payment_id}",
            BUSY_FOR,
        )
    except asyncpg.UniqueViolationError as exc:
        raise PaymentInProgress() from exc


async def get_payment(conn: Executor, payment_id: uuid.UUID, *, for_update: bool = False) -> Any:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM payments.payments WHERE id = $1{lock}", payment_id
    )


async def payment_by_intent(conn: Executor, intent_id: str) -> Any:
    return await conn.fetchrow(
        # Not locked here: apply_intent locks the order, then this row (one lock order).
        f"SELECT {COLUMNS} FROM payments.payments WHERE intent_id = $1",
        intent_id,
    )


async def open_payment_of(conn: Executor, order_id: uuid.UUID) -> Any:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM payments.payments WHERE order_id = $1"
        " AND status IN ('pending', 'processing', 'succeeded') FOR UPDATE",
        order_id,
    )


async def refundable_payment_of(conn: Executor, order_id: uuid.UUID) -> Any:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM payments.payments WHERE order_id = $1"
        " AND status IN ('succeeded', 'partially_refunded') FOR UPDATE",
        order_id,
    )


async def payments_of(conn: Executor, order_id: uuid.UUID) -> Any:
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM payments.payments WHERE order_id = $1 ORDER BY created_at",
        order_id,
    )


async def update_payment(conn: Executor, payment_id: uuid.UUID, changes: dict[str, Any]) -> Any:
    """Set `changes` (columns chosen by the service) and bump the version."""
    assignments = "".join(f"{column} = ${i}, " for i, column in enumerate(changes, start=2))
    return await conn.fetchrow(
        f"UPDATE payments.payments SET {assignments}version = version + 1, updated_at = now()"
        f" WHERE id = $1 RETURNING {COLUMNS}",
        payment_id,
        *changes.values(),
    )


async def claim(conn: Executor, payment_id: uuid.UUID) -> bool:
    """Take the right to call the provider for this attempt (False: someone has it)."""
    status = await conn.execute(
        "UPDATE payments.payments SET busy_until = now() + $2::interval"
        " WHERE id = $1 AND (busy_until IS NULL OR busy_until < now())",
        payment_id,
        BUSY_FOR,
    )
    return status.endswith(" 1")


async def release(conn: Executor, payment_id: uuid.UUID) -> None:
    await conn.execute("UPDATE payments.payments SET busy_until = NULL WHERE id = $1", payment_id)


async def fail_unanswered(conn: Executor, payment_id: uuid.UUID, *, failure_code: str) -> None:
    """Close an attempt that never had an answer from the provider (and only such one:
    an outcome that arrived meanwhile is not overwritten)."""
    status = "canceled" if failure_code == "order_closed" else "failed"
    await conn.execute(
        "UPDATE payments.payments SET status = $2, failure_code = $3, busy_until = NULL,"
        " version = version + 1, updated_at = now()"
        " WHERE id = $1 AND status = 'pending' AND intent_id IS NULL",
        payment_id,
        status,
        failure_code,
    )


async def record_webhook(conn: Executor, event_id: str, event_type: str) -> bool:
    """True the first time this provider event is seen."""
    status = await conn.execute(
        "INSERT INTO payments.webhook_events (event_id, type) VALUES ($1, $2)"
        " ON CONFLICT (event_id) DO NOTHING",
        event_id,
        event_type,
    )
    return status.endswith(" 1")


async def prune_webhook_events(conn: Executor, *, before: datetime, limit: int) -> int:
    """Forget up to `limit` of the oldest event ids received before `before`; rows another
    instance is deleting are skipped, not waited for."""
    # Deleted by `ctid` (the rows just locked): matched back by `event_id` instead,
    # PostgreSQL's generic plan hash-joined the batch against a scan of the whole table.
    status = await conn.execute(
        "DELETE FROM payments.webhook_events WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM payments.webhook_events WHERE received_at < $1"
        " ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED))",
        before,
        limit,
    )
    return int(status.split()[-1])


async def unsettled(conn: Executor, *, older_than: timedelta, limit: int) -> Any:
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM payments.payments"
        " WHERE status IN ('pending', 'processing', 'refund_pending')"
        " AND updated_at < now() - $1::interval AND (busy_until IS NULL OR busy_until < now())"
        " ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        older_than,
        limit,
    )
