"""run_once against real concurrency: the first look at a key and its answer are one
statement, so an answer committed just after that look must still win."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from mercato.core.database import Database, Executor, WriteBatch
from mercato.core.idempotency import (
    IdempotencyKeyReused,
    StoredAnswer,
    fingerprint,
    run_once,
)
from mercato.events import EventDraft, add_events

TABLE = "orders.idempotency_keys"


@pytest.fixture
async def database(fresh_db_url: str) -> AsyncIterator[Database]:
    db = await Database.connect(fresh_db_url, min_size=1, max_size=2)
    yield db
    await db.close()


def _scope(key: str, body: Any) -> dict[str, Any]:
    return {
        "table": TABLE,
        "owner": "user:test",
        "key": key,
        "request_fingerprint": fingerprint("POST", "/things", body),
    }


async def _store(conn: asyncpg.Connection, scope: dict[str, Any], body: bytes, age: str) -> None:
    await conn.execute(
        f"INSERT INTO {TABLE} (owner, key, fingerprint, status_code, headers, body, created_at)"
        " VALUES ($1, $2, $3, 201, '{}', $4, now() - $5::text::interval)",
        scope["owner"],
        scope["key"],
        scope["request_fingerprint"],
        body,
        age,
    )


def _action(marker: uuid.UUID, before: Any = None) -> Any:
    """A use case whose one write is an event marked `marker`."""

    async def action(conn: Executor, writes: WriteBatch) -> StoredAnswer:
        if before is not None:
            await before()
        draft = EventDraft("thing.made", "thing", str(marker), 1, {"id": str(marker)})
        add_events(writes, [draft])
        return StoredAnswer(201, orjson.dumps({"made": str(marker)}))

    return action


async def _events_of(database: Database, marker: uuid.UUID) -> int:
    count: int = await database.reader.fetchval(
        "SELECT count(*) FROM events.outbox WHERE aggregate_id = $1", str(marker)
    )
    return count


async def test_an_answer_committed_after_the_first_look_is_replayed_and_the_work_undone(
    database: Database, fresh_db_url: str
) -> None:
    scope = _scope("raced", {"n": 1})
    other = await asyncpg.connect(fresh_db_url)
    marker = uuid.uuid4()

    async def another_request_commits() -> None:
        # What a request holding the key a moment ago leaves behind: its committed answer,
        # which this request's first look (an earlier snapshot) did not see.
        await _store(other, scope, b'{"made": "by the winner"}', "0 seconds")

    try:
        response = await run_once(
            database, action=_action(marker, another_request_commits), **scope
        )
    finally:
        await other.close()
    assert response.status_code == 201
    assert response.body == b'{"made": "by the winner"}'
    assert response.headers["idempotent-replayed"] == "true"
    assert await _events_of(database, marker) == 0  # rolled back with the losing attempt


async def test_an_answer_raced_in_for_another_body_is_refused(
    database: Database, fresh_db_url: str
) -> None:
    scope = _scope("raced-other", {"n": 1})
    other = await asyncpg.connect(fresh_db_url)

    async def another_body_commits() -> None:
        await _store(other, {**scope, "request_fingerprint": b"another"}, b"{}", "0 seconds")

    try:
        with pytest.raises(IdempotencyKeyReused):
            await run_once(database, action=_action(uuid.uuid4(), another_body_commits), **scope)
    finally:
        await other.close()


async def test_the_answer_is_stored_with_the_writes_and_replayed(database: Database) -> None:
    scope = _scope("plain", {"n": 2})
    marker = uuid.uuid4()
    first = await run_once(database, action=_action(marker), **scope)
    again = await run_once(database, action=_action(uuid.uuid4()), **scope)
    assert first.status_code == again.status_code == 201
    assert again.body == first.body
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert await _events_of(database, marker) == 1


async def test_an_expired_answer_is_replaced(database: Database, fresh_db_url: str) -> None:
    scope = _scope("old", {"n": 3})
    conn = await asyncpg.connect(fresh_db_url)
    try:
        await _store(conn, scope, b'{"made": "yesterday"}', "25 hours")
    finally:
        await conn.close()
    marker = uuid.uuid4()
    response = await run_once(database, action=_action(marker), **scope)
    assert "idempotent-replayed" not in response.headers
    assert orjson.loads(response.body) == {"made": str(marker)}
    assert await _events_of(database, marker) == 1
    stored = await database.reader.fetchval(
        f"SELECT body FROM {TABLE} WHERE owner = $1 AND key = $2", scope["owner"], scope["key"]
    )
    assert orjson.loads(stored) == {"made": str(marker)}
