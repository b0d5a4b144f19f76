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

from mercato.core.database import Database, Executor
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
    `table` is a fixed, schema-qualified name chosen by the calling context."""
    locked = await conn.fetchval(
        "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))", f"{table}|{owner}|{key}"
    )
    if not locked:
        raise IdempotencyKeyInUse()
    return await stored_answer(
        conn, table=table, owner=owner, key=key, request_fingerprint=request_fingerprint
    )


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
    if stored is None:
        return None
    if stored["fingerprint"] != request_fingerprint:
        raise IdempotencyKeyReused()
    answer = StoredAnswer(stored["status_code"], stored["body"], stored["headers"])
    return answer.response(replayed=True)


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
        f"INSERT INTO {table} (owner, key, fingerprint, status_code, headers, body)"  # noqa: S608
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (owner, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
        " status_code = EXCLUDED.status_code, headers = EXCLUDED.headers,"
        " body = EXCLUDED.body, created_at = now()",
        owner,
        key,
        request_fingerprint,
        answer.status_code,
        answer.headers,
        answer.body,
    )


async def run_once(
    db: Database,
    *,
    table: str,
    owner: str,
    key: str,
    request_fingerprint: bytes,
    action: Callable[[Executor], Awaitable[StoredAnswer]],
) -> Response:
    """Run `action` in one transaction with its stored answer, unless the key has one."""
    async with db.transaction() as conn:
        replayed = await replay(
            conn, table=table, owner=owner, key=key, request_fingerprint=request_fingerprint
        )
        if replayed is not None:
            return replayed
        answer = await action(conn)
        await remember(
            conn,
            table=table,
            owner=owner,
            key=key,
            request_fingerprint=request_fingerprint,
            answer=answer,
        )
    return answer.response()


async def prune(conn: Executor, *, table: str) -> int:
    status = await conn.execute(
        f"DELETE FROM {table} WHERE created_at < now() - $1::interval",  # noqa: S608
        KEEP,
    )
    return int(status.split()[-1])
