"""Idempotency keys for unsafe requests, as Stripe defines them.

The first request with a key runs its use case and, in the same transaction, stores the
answer under (caller, key). Later requests with that key get the stored answer replayed
(`Idempotent-Replayed: true`) if their body is the same, and 422 if it differs. A request
that arrives while another with the same key is still running gets 409 at once: the key is
held by a transaction-scoped advisory lock, which PostgreSQL releases if the process dies,
so a crash never leaves a key stuck. A use case that fails stores nothing: retrying with
the same key runs it again. Keys are kept 24 hours (`prune`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from mercato.core.database import Database, Executor, WriteBatch
from mercato.core.errors import BadRequest, Conflict, DomainError

HEADER = "idempotency-key"
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
KEEP = timedelta(hours=24)


class IdempotencyKeyRequired(BadRequest):
    code = "IDEMPOTENCY_KEY_REQUIRED"
    message = "Send an Idempotency-Key header (1-255 printable ASCII characters)."


class IdempotencyKeyInUse(Conflict):
    code = "IDEMPOTENCY_KEY_IN_USE"
    message = "A request with this Idempotency-Key is still in progress; retry shortly."


class IdempotencyKeyReused(DomainError):
    code = "IDEMPOTENCY_KEY_REUSED"
    status = 422
    message = "This Idempotency-Key was used with a different request."


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status_code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, *, replayed: bool = False) -> Response:
        headers = {**self.headers, **({"idempotent-replayed": "true"} if replayed else {})}
        return Response(
            self.body, status_code=self.status_code, media_type="application/json", headers=headers
        )


def idempotency_key(request: Request) -> str:
    key = request.headers.get(HEADER)
    if key is None or not KEY_PATTERN.match(key):
        raise IdempotencyKeyRequired()
    return key


def fingerprint(*parts: Any) -> bytes:
    """What makes two requests "the same": the caller passes the route and validated body."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\x00")
    return digest.digest()


async def replay(
    conn: Executor, *, table: str, owner: str, key: str, request_fingerprint: bytes
) -> Response | None:
    """Inside the caller's transaction: hold the key (409 if another request does) and
    return the stored answer (422 if it was for another request), or None to go ahead.
    `table` is a fixed, schema-qualified name chosen by the calling context.

    One statement takes the key and reads the answer, so its snapshot may predate the
    commit of a request that held the key a moment ago: `run_once` stores its answer only
    if none was stored meanwhile, and replays that one if so."""
    row = await conn.fetchrow(
        "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked,"  # noqa: S608
        " s.fingerprint, s.status_code, s.headers, s.body FROM (SELECT) AS one"
        f" LEFT JOIN {table} AS s ON s.owner = $2 AND s.key = $3"
        " AND s.created_at > now() - $4::interval",
        f"{table}|{owner}|{key}",
        owner,
        key,
        KEEP,
    )
    if not row["locked"]:
        raise IdempotencyKeyInUse()
    return _replayed(row, request_fingerprint)


def _replayed(stored: Any, request_fingerprint: bytes) -> Response | None:
    if stored is None or stored["fingerprint"] is None:
        return None
    if stored["fingerprint"] != request_fingerprint:
        raise IdempotencyKeyReused()
    answer = StoredAnswer(stored["status_code"], stored["body"], stored["headers"])
    return answer.response(replayed=True)


async def stored_answer(
    db: Executor, *, table: str, owner: str, key: str, request_fingerprint: bytes
) -> Response | None:
    """The stored answer to replay (422 if it was for another request), or None; without
    holding the key. `run_once` checks again under the key: this lets a use case that acts
    before its transaction (a saga's first step) skip requests that were already answered."""
    stored = await db.fetchrow(
        f"SELECT fingerprint, status_code, headers, body FROM {table}"  # noqa: S608
        " WHERE owner = $1 AND key = $2 AND created_at > now() - $3::interval",
        owner,
        key,
        KEEP,
    )
    return _replayed(stored, request_fingerprint)


REMEMBER = (
    "INSERT INTO {table} (owner, key, fingerprint, status_code, headers, body)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
    " ON CONFLICT (owner, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
    " status_code = EXCLUDED.status_code, headers = EXCLUDED.headers,"
    " body = EXCLUDED.body, created_at = now()"
)
# ... unless a live answer is stored: then the write is skipped (and counted as none).
UNLESS_ANSWERED = " WHERE {table}.created_at <= now() - $7::interval"


def _remember_args(
    owner: str, key: str, request_fingerprint: bytes, answer: StoredAnswer
) -> tuple[Any, ...]:
    return (owner, key, request_fingerprint, answer.status_code, answer.headers, answer.body)


async def remember(
    conn: Executor,
    *,
    table: str,
    owner: str,
    key: str,
    request_fingerprint: bytes,
    answer: StoredAnswer,
) -> None:
    await conn.execute(
        REMEMBER.format(table=table), *_remember_args(owner, key, request_fingerprint, answer)
    )


class _AnsweredMeanwhile(Exception):
    """Another request with the key committed its answer after this one's first look."""


Action = Callable[[Executor, WriteBatch], Awaitable[StoredAnswer]]


async def run_once(
    db: Database,
    *,
    table: str,
    owner: str,
    key: str,
    request_fingerprint: bytes,
    action: Action,
) -> Response:
    """Run `action` in one transaction with its stored answer, unless the key has one.

    `action` may queue writes that need no answer in `writes`: they are sent with the
    stored answer, as one statement (one round trip)."""
    scope: dict[str, Any] = {
        "table": table,
        "owner": owner,
        "key": key,
        "request_fingerprint": request_fingerprint,
    }
    try:
        async with db.transaction() as conn:
            replayed = await replay(conn, **scope)
            if replayed is not None:
                return replayed
            writes = WriteBatch()
            answer = await action(conn, writes)
            stored = writes.add(
                REMEMBER.format(table=table) + UNLESS_ANSWERED.format(table=table),
                *_remember_args(owner, key, request_fingerprint, answer),
                KEEP,
            )
            if (await writes.send(conn))[stored] == 0:
                raise _AnsweredMeanwhile()
    except _AnsweredMeanwhile:
        # Rolled back; the answer that won is replayed (or 422 if it was another request's).
        replayed = await stored_answer(db.reader, **scope)
        if replayed is None:
            raise IdempotencyKeyInUse() from None
        return replayed
    return answer.response()


async def prune(conn: Executor, *, table: str) -> int:
    status = await conn.execute(
        f"DELETE FROM {table} WHERE created_at < now() - $1::interval",  # noqa: S608
        KEEP,
    )
    return int(status.split()[-1])
