"""Every query the webhooks context runs: plain SQL, parameterised, on asyncpg.

The delivery job's updates carry the claim token it got with the subscription: when the
lease was lost, or an administrator changed the subscription meanwhile (which clears the
token), they change nothing and return False, and the job lets go of the subscription.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from mercato.core.database import Executor

SUBSCRIPTION_COLUMNS = (
    "id, url, event_types, description, active, secret, previous_secret,"
    " previous_secret_expires_at, delivered_position, failures, next_attempt_at, claim_token,"
    " paused_at, last_error, created_by, created_at, updated_at"
)
# A value for `update_subscription`: the database's clock, so that "due now" is due at
# once for the delivery job's `next_attempt_at <= now()`, whatever this host's clock says.
NOW: Any = object()
DELIVERY_COLUMNS = (
    "id, subscription_id, event_id, event_type, position, attempt, replay, status,"
    " status_code, error, duration_ms, response_excerpt, attempted_at"
)


async def insert_subscription(conn: Executor, fields: dict[str, Any]) -> Any:
    return await conn.fetchrow(
        "INSERT INTO webhooks.subscriptions (id, url, event_types, description, active, secret,"
        " delivered_position, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        f" RETURNING {SUBSCRIPTION_COLUMNS}",
        fields["id"],
        fields["url"],
        fields["event_types"],
        fields["description"],
        fields["active"],
        fields["secret"],
        fields["delivered_position"],
        fields["created_by"],
    )


async def get_subscription(
    conn: Executor, subscription_id: uuid.UUID, *, for_update: bool = False
) -> Any:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {SUBSCRIPTION_COLUMNS} FROM webhooks.subscriptions WHERE id = $1{lock}",
        subscription_id,
    )


async def list_subscriptions(
    conn: Executor, *, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Any]:
    return await conn.fetch(
        f"SELECT {SUBSCRIPTION_COLUMNS} FROM webhooks.subscriptions"
        " WHERE $1::timestamptz IS NULL OR (created_at, id) < ($1, $2)"
        " ORDER BY created_at DESC, id DESC LIMIT $3",
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )


async def update_subscription(
    conn: Executor, subscription_id: uuid.UUID, changes: dict[str, Any], *, interrupt: bool
) -> Any:
    """An administrator's change (columns chosen by the service). With `interrupt`, a
    worker delivering this subscription under the old settings loses its claim (its next
    outcome is not recorded on the row) and the subscription is due again at once, for a
    worker that reads the new settings."""
    values = [value for value in changes.values() if value is not NOW]
    assignments, index = "", 2
    for column, value in changes.items():
        if value is NOW:
            assignments += f"{column} = now(), "
        else:
            assignments += f"{column} = ${index}, "
            index += 1
    if interrupt:
        if "next_attempt_at" not in changes:
            assignments += (
                "next_attempt_at = CASE WHEN claim_token IS NULL THEN next_attempt_at"
                " ELSE now() END, "
            )
        assignments += "claim_token = NULL, "
    return await conn.fetchrow(
        f"UPDATE webhooks.subscriptions SET {assignments}updated_at = now()"
        f" WHERE id = $1 RETURNING {SUBSCRIPTION_COLUMNS}",
        subscription_id,
        *values,
    )


async def delete_subscription(conn: Executor, subscription_id: uuid.UUID) -> bool:
    status = await conn.execute("DELETE FROM webhooks.subscriptions WHERE id = $1", subscription_id)
    return status.endswith(" 1")


async def claim_due(
    conn: Executor, *, last_position: int, limit: int, lease: timedelta
) -> list[Any]:
    """Lease up to `limit` active subscriptions that are due and behind the log's end."""
    return await conn.fetch(
        "UPDATE webhooks.subscriptions SET next_attempt_at = now() + $3::interval,"
        " claim_token = gen_random_uuid()"
        " WHERE id IN (SELECT id FROM webhooks.subscriptions"
        "  WHERE active AND next_attempt_at <= now() AND delivered_position < $1"
        "  ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        f" RETURNING {SUBSCRIPTION_COLUMNS}",
        last_position,
        limit,
        lease,
    )


async def advance(
    conn: Executor, subscription_id: uuid.UUID, token: uuid.UUID, *, to: int, lease: timedelta
) -> bool:
    """The events up to `to` are delivered or skipped; the lease is renewed."""
    status = await conn.execute(
        "UPDATE webhooks.subscriptions SET delivered_position = $3, failures = 0,"
        " last_error = NULL, next_attempt_at = now() + $4::interval"
        " WHERE id = $1 AND claim_token = $2",
        subscription_id,
        token,
        to,
        lease,
    )
    return status.endswith(" 1")


async def retry_later(
    conn: Executor,
    subscription_id: uuid.UUID,
    token: uuid.UUID,
    *,
    skipped_to: int,
    failures: int,
    delay: timedelta,
    error: str,
) -> bool:
    status = await conn.execute(
        "UPDATE webhooks.subscriptions SET delivered_position = $3, failures = $4,"
        " next_attempt_at = now() + $5::interval, last_error = $6, claim_token = NULL"
        " WHERE id = $1 AND claim_token = $2",
        subscription_id,
        token,
        skipped_to,
        failures,
        delay,
        error,
    )
    return status.endswith(" 1")


async def stop_delivering(
    conn: Executor,
    subscription_id: uuid.UUID,
    token: uuid.UUID,
    *,
    skipped_to: int,
    failures: int,
    paused: bool,
    error: str,
) -> bool:
    """Deactivate: paused (retries exhausted) or disabled (the receiver answered 410)."""
    status = await conn.execute(
        "UPDATE webhooks.subscriptions SET active = false, delivered_position = $3,"
        " failures = $4, last_error = $5, claim_token = NULL,"
        " paused_at = CASE WHEN $6 THEN now() ELSE paused_at END, updated_at = now()"
        " WHERE id = $1 AND claim_token = $2",
        subscription_id,
        token,
        skipped_to,
        failures,
        error,
        paused,
    )
    return status.endswith(" 1")


async def release(conn: Executor, subscription_id: uuid.UUID, token: uuid.UUID) -> None:
    """Give the lease back: due again at once (it may still be behind the log)."""
    await conn.execute(
        "UPDATE webhooks.subscriptions SET next_attempt_at = now(), claim_token = NULL"
        " WHERE id = $1 AND claim_token = $2",
        subscription_id,
        token,
    )


async def insert_delivery(conn: Executor, fields: dict[str, Any]) -> Any:
    return await conn.fetchrow(
        "INSERT INTO webhooks.deliveries (subscription_id, event_id, event_type, position,"
        " attempt, replay, status, status_code, error, duration_ms, response_excerpt,"
        " attempted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        f" RETURNING {DELIVERY_COLUMNS}",
        fields["subscription_id"],
        uuid.UUID(str(fields["event_id"])),
        fields["event_type"],
        fields["position"],
        fields["attempt"],
        fields["replay"],
        fields["status"],
        fields["status_code"],
        fields["error"],
        fields["duration_ms"],
        fields["response_excerpt"],
        fields["attempted_at"],
    )


async def get_delivery(conn: Executor, delivery_id: uuid.UUID) -> Any:
    return await conn.fetchrow(
        f"SELECT {DELIVERY_COLUMNS} FROM webhooks.deliveries WHERE id = $1", delivery_id
    )


async def list_deliveries(
    conn: Executor,
    *,
    subscription_id: uuid.UUID | None,
    status: str | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Any]:
    return await conn.fetch(
        f"SELECT {DELIVERY_COLUMNS} FROM webhooks.deliveries"
        " WHERE ($1::uuid IS NULL OR subscription_id = $1) AND ($2::text IS NULL OR status = $2)"
        " AND ($3::timestamptz IS NULL OR (attempted_at, id) < ($3, $4))"
        " ORDER BY attempted_at DESC, id DESC LIMIT $5",
        subscription_id,
        status,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )


async def attempts_at(conn: Executor, subscription_id: uuid.UUID, event_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM webhooks.deliveries WHERE subscription_id = $1 AND event_id = $2",
        subscription_id,
        event_id,
    )
    return count


async def prune_deliveries(conn: Executor, *, before: datetime, limit: int) -> int:
    status = await conn.execute(
        "DELETE FROM webhooks.deliveries WHERE id IN (SELECT id FROM webhooks.deliveries"
        " WHERE attempted_at < $1 ORDER BY attempted_at LIMIT $2)",
        before,
        limit,
    )
    return int(status.split()[-1])


async def sealed_secrets(conn: Executor, *, after: uuid.UUID | None, limit: int) -> list[Any]:
    """A page of subscriptions' sealed secrets, for re-sealing under a new data key."""
    return await conn.fetch(
        "SELECT id, secret, previous_secret FROM webhooks.subscriptions"
        " WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2 FOR UPDATE",
        after,
        limit,
    )


async def reseal(
    conn: Executor, subscription_id: uuid.UUID, secret: bytes, previous: bytes | None
) -> None:
    await conn.execute(
        "UPDATE webhooks.subscriptions SET secret = $2, previous_secret = $3 WHERE id = $1",
        subscription_id,
        secret,
        previous,
    )
