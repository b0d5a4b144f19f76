"""Webhook use cases: subscribe, change, rotate the secret, rewind, and replay one delivery.

A signing secret is generated here, shown to the caller once, and stored only sealed
with the data key ring, bound to its row and column. A new subscription starts at the
log's current end: it receives the events recorded from then on.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from mercato.core.crypto import DataKeyRing, version_of
from mercato.core.database import Database, Executor
from mercato.events import last_position, oldest_retained_position, read_events
from mercato.webhooks import repository, rules
from mercato.webhooks.errors import (
    DeliveryNotFound,
    EventNotRetained,
    ReplayOutOfRange,
    SubscriptionNotFound,
    UnknownEventType,
)
from mercato.webhooks.sender import Attempt, Sender
from mercato.webhooks.signature import new_secret


def _context(subscription_id: uuid.UUID, column: str) -> bytes:
    return f"webhooks.subscriptions.{column}:{subscription_id}".encode()


def seal_secret(ring: DataKeyRing, subscription_id: uuid.UUID, secret: str, column: str) -> bytes:
    return ring.seal(secret, context=_context(subscription_id, column))


def secrets_in_use(ring: DataKeyRing, row: Any, *, now: datetime | None = None) -> list[str]:
    """The secrets a message is signed with: the current one, then the previous one while
    its rotation overlap lasts."""
    subscription_id = row["id"]
    found = [ring.open(row["secret"], context=_context(subscription_id, "secret"))]
    expires = row["previous_secret_expires_at"]
    in_overlap = expires is not None and expires > (now or datetime.now(UTC))
    if row["previous_secret"] is not None and in_overlap:
        context = _context(subscription_id, "previous_secret")
        found.append(ring.open(row["previous_secret"], context=context))
    return found


def checked_event_types(requested: Sequence[str], known: Collection[str]) -> list[str]:
    unknown = rules.unknown_types(requested, known)
    if unknown:
        raise UnknownEventType(
            details=[
                {"field": "body.event_types", "message": f"unknown type {t!r}"} for t in unknown
            ]
        )
    return list(dict.fromkeys(requested))  # without repeats, in the caller's order


def subscription_json(row: Any) -> dict[str, Any]:
    """A subscription as the API shows it: never a secret, sealed or not."""
    expires = row["previous_secret_expires_at"]
    return {
        "id": str(row["id"]),
        "url": row["url"],
        "event_types": list(row["event_types"]),
        "description": row["description"],
        "active": row["active"],
        "paused_at": _iso(row["paused_at"]),
        "failures": row["failures"],
        "next_attempt_at": _iso(row["next_attempt_at"]) if row["failures"] else None,
        "last_error": row["last_error"],
        "delivered_position": row["delivered_position"],
        "previous_secret_expires_at": _iso(expires) if row["previous_secret"] else None,
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def delivery_json(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "subscription_id": str(row["subscription_id"]),
        "event_id": str(row["event_id"]),
        "event_type": row["event_type"],
        "position": row["position"],
        "attempt": row["attempt"],
        "replay": row["replay"],
        "status": row["status"],
        "status_code": row["status_code"],
        "error": row["error"],
        "duration_ms": row["duration_ms"],
        "response_excerpt": row["response_excerpt"],
        "attempted_at": row["attempted_at"].isoformat(),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def create_subscription(
    conn: Executor,
    ring: DataKeyRing,
    *,
    url: str,
    event_types: list[str],
    description: str | None,
    active: bool,
    created_by: uuid.UUID | None,
) -> tuple[Any, str]:
    """The new subscription and its secret (to show once)."""
    subscription_id = uuid.uuid4()
    secret = new_secret()
    row = await repository.insert_subscription(
        conn,
        {
            "id": subscription_id,
            "url": url,
            "event_types": event_types,
            "description": description,
            "active": active,
            "secret": seal_secret(ring, subscription_id, secret, "secret"),
            "delivered_position": await last_position(conn),
            "created_by": created_by,
        },
    )
    return row, secret


async def _locked(conn: Executor, subscription_id: uuid.UUID) -> Any:
    row = await repository.get_subscription(conn, subscription_id, for_update=True)
    if row is None:
        raise SubscriptionNotFound()
    return row


async def change_subscription(
    conn: Executor, subscription_id: uuid.UUID, changes: dict[str, Any]
) -> Any:
    """Apply the fields the caller sent (url and event types already checked).

    Activating (also a paused or backing-off subscription) resumes delivery at once with
    the failure count reset, from the event it stopped at."""
    row = await _locked(conn, subscription_id)
    updates = {k: v for k, v in changes.items() if k in ("url", "event_types", "description")}
    if "url" in changes and changes["url"] != row["url"]:
        updates.update(failures=0, next_attempt_at=repository.NOW, last_error=None)
    if changes.get("active") is True:
        updates.update(
            active=True,
            paused_at=None,
            failures=0,
            next_attempt_at=repository.NOW,
            last_error=None,
        )
    elif changes.get("active") is False:
        updates["active"] = False
    if not updates:
        return row
    interrupt = bool(updates.keys() - {"description"})
    return await repository.update_subscription(conn, subscription_id, updates, interrupt=interrupt)


async def rotate_secret(
    conn: Executor, ring: DataKeyRing, subscription_id: uuid.UUID, *, overlap: timedelta
) -> tuple[Any, str]:
    """A new secret (to show once). The current one keeps signing too until the overlap
    ends, so receivers can switch without missing a message; an older one is dropped."""
    row = await _locked(conn, subscription_id)
    current = secrets_in_use(ring, row)[0]
    secret = new_secret()
    keep_old = overlap > timedelta(0)
    updates = {
        "secret": seal_secret(ring, subscription_id, secret, "secret"),
        "previous_secret": (
            seal_secret(ring, subscription_id, current, "previous_secret") if keep_old else None
        ),
        "previous_secret_expires_at": datetime.now(UTC) + overlap if keep_old else None,
    }
    changed = await repository.update_subscription(conn, subscription_id, updates, interrupt=True)
    return changed, secret


async def rewind(conn: Executor, subscription_id: uuid.UUID, *, from_position: int) -> Any:
    """Deliver everything from `from_position` on again, in order (or skip ahead to it)."""
    await _locked(conn, subscription_id)
    oldest, last = await oldest_retained_position(conn), await last_position(conn)
    if not oldest <= from_position <= last + 1:
        raise ReplayOutOfRange(
            f"The log holds positions {oldest} to {last}; replay from one of them."
        )
    updates = {
        "delivered_position": from_position - 1,
        "failures": 0,
        "last_error": None,
        "next_attempt_at": repository.NOW,
    }
    return await repository.update_subscription(conn, subscription_id, updates, interrupt=True)


async def delete_subscription(conn: Executor, subscription_id: uuid.UUID) -> None:
    if not await repository.delete_subscription(conn, subscription_id):
        raise SubscriptionNotFound()


async def logged_event(db: Executor, *, position: int, event_id: uuid.UUID) -> dict[str, Any]:
    events = await read_events(db, after=position - 1, limit=1)
    if not events or events[0]["position"] != position or events[0]["event_id"] != str(event_id):
        raise EventNotRetained()
    return events[0]


def attempt_fields(
    *,
    subscription_id: uuid.UUID,
    event: dict[str, Any],
    attempt_number: int,
    outcome: Attempt,
    status: str,
    attempted_at: datetime,
    replay: bool = False,
) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "event_id": event["event_id"],
        "event_type": event["type"],
        "position": event["position"],
        "attempt": attempt_number,
        "replay": replay,
        "status": status,
        "status_code": outcome.status_code,
        "error": outcome.error,
        "duration_ms": outcome.duration_ms,
        "response_excerpt": outcome.response_excerpt,
        "attempted_at": attempted_at,
    }


async def replay_delivery(
    db: Database, ring: DataKeyRing, sender: Sender, delivery_id: uuid.UUID
) -> Any:
    """Send a delivery's event again now, as a new attempt with the same webhook-id. It
    does not touch the subscription's cursor or failure count: the FIFO delivery goes on
    as it was (receivers dedupe on webhook-id)."""
    delivery = await repository.get_delivery(db.reader, delivery_id)
    if delivery is None:
        raise DeliveryNotFound()
    subscription = await repository.get_subscription(db.reader, delivery["subscription_id"])
    if subscription is None:
        raise SubscriptionNotFound()
    event = await logged_event(
        db.reader, position=delivery["position"], event_id=delivery["event_id"]
    )
    attempted_at = datetime.now(UTC)
    outcome = await sender.send(subscription["url"], secrets_in_use(ring, subscription), event)
    async with db.transaction() as conn:
        number = await repository.attempts_at(conn, subscription["id"], delivery["event_id"])
        return await repository.insert_delivery(
            conn,
            attempt_fields(
                subscription_id=subscription["id"],
                event=event,
                attempt_number=number + 1,
                outcome=outcome,
                status="succeeded" if rules.acknowledged(outcome.status_code) else "failed",
                attempted_at=attempted_at,
                replay=True,
            ),
        )


async def reseal_secrets(db: Database, ring: DataKeyRing, *, batch: int = 200) -> int:
    """Re-seal every subscription's secrets under the ring's newest data key: run after
    adding a key (`mercato webhooks reseal`), before dropping the old one."""
    resealed = 0
    after: uuid.UUID | None = None
    while True:
        async with db.transaction() as conn:
            rows = await repository.sealed_secrets(conn, after=after, limit=batch)
            for row in rows:
                sealed = [v for v in (row["secret"], row["previous_secret"]) if v is not None]
                if all(version_of(value) == ring.active_version for value in sealed):
                    continue
                subscription_id = row["id"]
                secret = ring.open(row["secret"], context=_context(subscription_id, "secret"))
                previous = ring.open_optional(
                    row["previous_secret"], context=_context(subscription_id, "previous_secret")
                )
                await repository.reseal(
                    conn,
                    subscription_id,
                    seal_secret(ring, subscription_id, secret, "secret"),
                    None
                    if previous is None
                    else seal_secret(ring, subscription_id, previous, "previous_secret"),
                )
                resealed += 1
        if len(rows) < batch:
            return resealed
        after = rows[-1]["id"]
