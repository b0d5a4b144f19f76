"""Identity's single-use guarantees under concurrency: many clients, a real pool, real
PostgreSQL transactions racing for the same row."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from mercato.app import create_app
from tests.factories import STRONG_PASSWORD, TestUser, identity_runtime, make_user, unique_email
from tests.identity.conftest import Mailbox, mail_settings

API = "/api/v1"
CLIENTS = 12


@pytest.fixture
async def pooled_client(fresh_db_url: str, mailbox: Mailbox) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(mail_settings(mailbox, database_url=fresh_db_url, db_pool_max=CLIENTS))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def committed_user(database_url: str) -> TestUser:
    async with identity_runtime(database_url) as runtime, runtime.db.transaction() as conn:
        return await make_user(conn, runtime)


async def _all(*calls: Any) -> list[httpx.Response]:
    return list(await asyncio.gather(*calls))


async def test_a_refresh_token_spent_concurrently_wins_once_and_revokes_the_family(
    pooled_client: httpx.AsyncClient, fresh_db_url: str
) -> None:
    user = await committed_user(fresh_db_url)
    login = await pooled_client.post(
        f"{API}/auth/login", json={"email": user.email, "password": user.password}
    )
    token = login.json()["data"]["refresh_token"]
    answers = await _all(
        *(
            pooled_client.post(f"{API}/auth/refresh", json={"refresh_token": token})
            for _ in range(CLIENTS)
        )
    )
    codes = Counter(a.status_code for a in answers)
    assert codes == {200: 1, 401: CLIENTS - 1}
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 401} == {
        "REFRESH_TOKEN_REUSED"
    }
    # The winner's new token belongs to the revoked family too.
    winner = next(a for a in answers if a.status_code == 200).json()["data"]["refresh_token"]
    late = await pooled_client.post(f"{API}/auth/refresh", json={"refresh_token": winner})
    assert late.status_code == 401
    conn = await asyncpg.connect(fresh_db_url)
    try:
        live = await conn.fetchval(
            "SELECT count(*) FROM identity.refresh_tokens WHERE revoked_at IS NULL"
        )
    finally:
        await conn.close()
    assert live == 0


async def test_concurrent_registrations_of_one_address_make_one_account(
    pooled_client: httpx.AsyncClient, fresh_db_url: str, mailbox: Mailbox
) -> None:
    email = unique_email()
    body = {"email": email, "password": STRONG_PASSWORD, "first_name": "Kai", "last_name": "Ito"}
    answers = await _all(
        *(pooled_client.post(f"{API}/auth/register", json=body) for _ in range(CLIENTS))
    )
    assert {a.status_code for a in answers} == {202}
    assert len({a.text for a in answers}) == 1
    conn = await asyncpg.connect(fresh_db_url)
    try:
        accounts = await conn.fetchval("SELECT count(*) FROM identity.users")
    finally:
        await conn.close()
    assert accounts == 1
    await mailbox.wait_for(email, "confirm your email")


async def test_a_reset_link_used_concurrently_sets_one_password(
    pooled_client: httpx.AsyncClient, fresh_db_url: str, mailbox: Mailbox
) -> None:
    user = await committed_user(fresh_db_url)
    await pooled_client.post(f"{API}/auth/password/forgot", json={"email": user.email})
    token = await mailbox.token(user.email, "reset your password")
    passwords = [f"harbour-lantern-{n:02d}-quartz" for n in range(CLIENTS)]
    answers = await _all(
        *(
            pooled_client.post(
                f"{API}/auth/password/reset", json={"token": token, "new_password": password}
            )
            for password in passwords
        )
    )
    assert Counter(a.status_code for a in answers) == {204: 1, 400: CLIENTS - 1}
    chosen = passwords[[a.status_code for a in answers].index(204)]
    logins = await _all(
        *(
            pooled_client.post(f"{API}/auth/login", json={"email": user.email, "password": p})
            for p in (chosen, passwords[0] if chosen != passwords[0] else passwords[1])
        )
    )
    assert [r.status_code for r in logins] == [200, 401]
