"""Personal data over time: re-sealed under a new data key, erased after deletion, tokens pruned."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from mercato.core.crypto import DataKeyRing, UndecryptableValue, version_of
from mercato.identity import IdentityRuntime
from mercato.identity.accounts import SEALED_FIELDS, open_fields
from mercato.identity.jobs import (
    erase_deleted_accounts,
    prune_spent_tokens,
    reseal_personal_data,
)
from mercato.identity.tokens import signing_key_context
from tests.database import SingleConnectionDatabase
from tests.factories import (
    STRONG_PASSWORD,
    TestUser,
    identity_runtime,
    make_user,
)
from tests.identity.conftest import outbox

USER_AGENT = "AuditProbe/2.1 (pytest; +https://example.com/probe)"
NEW_PASSWORD = "quartz-meadow-falcon-4412"
ADDRESS = {
    "line1": "Xylophonweg 42",
    "line2": "Hinterhaus Zwo",
    "city": "Quedlinburgheim",
    "postal_code": "D-98765",
    "country": "DE",
}
PHONE = "+4915112345678"


def distinctive_email() -> str:
    return f"Zebulon.Quackenbush.{uuid.uuid4().hex[:8]}@Example.com"


async def register(
    client: httpx.AsyncClient,
    email: str,
    *,
    first_name: str = "Ottoline",
    last_name: str = "Vanderpump",
    **extra: Any,
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/register",
        json={
            "email": email,
            "password": STRONG_PASSWORD,
            "first_name": first_name,
            "last_name": last_name,
            **extra,
        },
    )


async def live_user_id(conn: asyncpg.Connection, runtime: IdentityRuntime, email: str) -> Any:
    return await conn.fetchval(
        "SELECT id FROM identity.users WHERE email_index = $1 AND deleted_at IS NULL",
        runtime.blind_index.email(email),
    )


async def delete_me(client: httpx.AsyncClient, user: TestUser) -> httpx.Response:
    return await client.request(
        "DELETE", "/api/v1/me", json={"password": user.password}, headers=user.headers
    )


async def audit_rows(conn: asyncpg.Connection, action: str, *, subject_id: Any = None) -> list[Any]:
    if subject_id is None:
        rows = await conn.fetch(
            "SELECT * FROM identity.audit_log WHERE action = $1 ORDER BY id", action
        )
    else:
        rows = await conn.fetch(
            "SELECT * FROM identity.audit_log WHERE action = $1 AND subject_id = $2 ORDER BY id",
            action,
            subject_id,
        )
    return list(rows)


# --- data key rotation ------------------------------------------------------------------


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def test_data_keys_rotate_without_losing_anything(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    users = [
        await make_user(conn, runtime, first_name=f"Rota{n}", last_name=f"Tion{n}")
        for n in range(3)
    ]
    await client.patch(
        "/api/v1/me", json={"phone": PHONE, "address": ADDRESS}, headers=users[0].headers
    )
    doomed = await make_user(conn, runtime, first_name="Soon", last_name="Gone")
    assert (await delete_me(client, doomed)).status_code == 204  # deleted, not yet erased

    before = {
        row["id"]: open_fields(runtime, row)
        for row in await conn.fetch("SELECT * FROM identity.users")
    }
    assert {
        row["data_key_version"] for row in await conn.fetch("SELECT * FROM identity.users")
    } == {1}

    old_spec = runtime.settings.data_keys.get_secret_value()  # type: ignore[union-attr]
    key2 = new_key()
    runtime.ring = DataKeyRing.parse(f"{old_spec},2:{key2}")
    resealed = await reseal_personal_data(runtime)
    signing_keys = await conn.fetchval("SELECT count(*) FROM identity.signing_keys")
    assert resealed == len(before) + signing_keys

    rows = await conn.fetch("SELECT * FROM identity.users")
    assert {row["data_key_version"] for row in rows} == {2}
    for row in rows:
        for field in SEALED_FIELDS:
            if row[field] is not None:
                assert version_of(row[field]) == 2, field

    me = await client.get("/api/v1/me", headers=users[0].headers)
    assert me.status_code == 200
    data = me.json()["data"]
    assert (data["first_name"], data["last_name"], data["phone"], data["address"]) == (
        "Rota0",
        "Tion0",
        PHONE,
        ADDRESS,
    )

    # Once every row is resealed, the old key can go.
    runtime.ring = DataKeyRing.parse(f"2:{key2}")
    assert {row["id"]: open_fields(runtime, row) for row in rows} == before
    for key_row in await conn.fetch("SELECT kid, private_key FROM identity.signing_keys"):
        runtime.ring.open(key_row["private_key"], context=signing_key_context(key_row["kid"]))
    with pytest.raises(UndecryptableValue):  # and the old key really is gone
        DataKeyRing.parse(old_spec).open(rows[0]["first_name"], context=b"x")

    (entry,) = await audit_rows(conn, "data_keys.rotated")
    assert entry["details"] == {"active_version": 2, "resealed": resealed}

    # Writes under the new ring keep working, and running the job again finds nothing.
    patched = await client.patch(
        "/api/v1/me", json={"first_name": "Rotated"}, headers=users[1].headers
    )
    assert patched.status_code == 200
    assert patched.json()["data"]["last_name"] == "Tion1"
    assert await reseal_personal_data(runtime) == 0


async def test_a_profile_update_reseals_the_whole_row_under_the_new_key(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime, first_name="Partial", last_name="Update")
    await client.patch("/api/v1/me", json={"phone": PHONE}, headers=user.headers)
    key2 = new_key()
    runtime.ring = DataKeyRing.parse(
        f"{runtime.settings.data_keys.get_secret_value()},2:{key2}"  # type: ignore[union-attr]
    )

    response = await client.patch("/api/v1/me", json={"last_name": "Done"}, headers=user.headers)
    assert response.status_code == 200, response.text

    row = await conn.fetchrow("SELECT * FROM identity.users WHERE id = $1", user.id)
    assert row["data_key_version"] == 2
    runtime.ring = DataKeyRing.parse(f"2:{key2}")
    assert open_fields(runtime, row) == {
        "email": user.email,
        "first_name": "Partial",
        "last_name": "Done",
        "phone": PHONE,
        "address": None,
    }


async def test_key_rotation_does_not_leave_rows_locked_by_traffic_behind(
    fresh_db_url: str,
) -> None:
    async with identity_runtime(fresh_db_url) as runtime:
        async with runtime.db.transaction() as setup:
            users = [await make_user(setup, runtime) for _ in range(3)]
        runtime.ring = DataKeyRing.parse(
            f"{runtime.settings.data_keys.get_secret_value()},2:{new_key()}"  # type: ignore[union-attr]
        )
        busy = await asyncpg.connect(fresh_db_url)
        try:
            # A request holds one account's row (say, a role assignment or password change
            # that does not touch the sealed columns) while the job runs.
            lock = busy.transaction()
            await lock.start()
            await busy.execute("SELECT 1 FROM identity.users WHERE id = $1 FOR UPDATE", users[0].id)
            job = asyncio.create_task(reseal_personal_data(runtime))
            await asyncio.sleep(0.5)
            assert not job.done()  # it waits for the held row rather than skipping it
            await lock.rollback()
            assert await job == 4  # three accounts and the signing key
            left = await busy.fetchval(
                "SELECT count(*) FROM identity.users WHERE data_key_version <> 2"
            )
        finally:
            await busy.close()
        assert left == 0


# --- erasure ----------------------------------------------------------------------------


async def test_deleted_accounts_are_erased_after_the_grace_period(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    db: SingleConnectionDatabase,
    runtime: IdentityRuntime,
) -> None:
    email = distinctive_email()
    user = await make_user(conn, runtime, email=email, first_name="Erika", last_name="Mustermann")
    await client.patch(
        "/api/v1/me", json={"phone": PHONE, "address": ADDRESS}, headers=user.headers
    )
    await client.post("/api/v1/auth/login", json={"email": email, "password": user.password})
    keeper = await make_user(conn, runtime)
    assert (await delete_me(client, user)).status_code == 204

    # Within the grace period nothing is erased.
    assert await erase_deleted_accounts(db, grace=timedelta(days=1)) == 0  # type: ignore[arg-type]
    row = await conn.fetchrow("SELECT * FROM identity.users WHERE id = $1", user.id)
    assert row["erased_at"] is None
    assert row["first_name"] is not None

    erased = await erase_deleted_accounts(db, grace=timedelta(0))  # type: ignore[arg-type]
    assert erased == 1

    row = await conn.fetchrow("SELECT * FROM identity.users WHERE id = $1", user.id)
    for column in ("email", "first_name", "last_name", "phone", "address", "email_index"):
        assert row[column] is None, column
    assert row["erased_at"] is not None
    assert row["deleted_at"] is not None
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM identity.refresh_tokens WHERE user_id = $1", user.id
        )
        == 0
    )
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM identity.one_time_tokens WHERE user_id = $1", user.id
        )
        == 0
    )

    (entry,) = await audit_rows(conn, "user.erased", subject_id=user.id)
    assert entry["actor_id"] is None
    assert entry["outcome"] == "success"

    kept = await conn.fetchrow("SELECT * FROM identity.users WHERE id = $1", keeper.id)
    assert kept["erased_at"] is None
    assert kept["email"] is not None

    # Erasing again finds nothing, and key rotation passes erased rows by.
    assert await erase_deleted_accounts(db, grace=timedelta(0)) == 0  # type: ignore[arg-type]

    # The address is free again.
    again = await register(client, email, first_name="Erika", last_name="Neu")
    assert again.status_code == 202, again.text
    new_id = await live_user_id(conn, runtime, email)
    assert new_id is not None
    assert new_id != user.id
    assert await outbox(conn, "user.registered", new_id)
    login = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD}
    )
    assert login.status_code == 200, login.text
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {login.json()['data']['access_token']}"}
    )
    assert me.json()["data"]["id"] == str(new_id)
    assert me.json()["data"]["last_name"] == "Neu"


async def test_a_deleted_account_can_register_again_before_erasure(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime)
    assert (await delete_me(client, user)).status_code == 204
    response = await register(client, user.email)
    assert response.status_code == 202
    new_id = await live_user_id(conn, runtime, user.email)
    assert new_id is not None
    assert new_id != user.id


async def test_spent_tokens_are_pruned_a_day_after_they_end(
    client: httpx.AsyncClient,
    customer: TestUser,
    conn: asyncpg.Connection,
    db: SingleConnectionDatabase,
) -> None:
    login = {"email": customer.email, "password": customer.password}
    first = (await client.post("/api/v1/auth/login", json=login)).json()["data"]
    await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    await client.post("/api/v1/auth/password/forgot", json={"email": customer.email})
    assert await prune_spent_tokens(db) == 0  # nothing has ended a day ago yet
    await conn.execute(
        "UPDATE identity.refresh_tokens SET expires_at = now() - interval '25 hours'"
        " WHERE used_at IS NOT NULL"
    )
    await conn.execute("UPDATE identity.one_time_tokens SET expires_at = now() - interval '2 days'")
    assert await prune_spent_tokens(db) == 2
    live = await conn.fetchval("SELECT count(*) FROM identity.refresh_tokens")
    assert live == 1  # the current token of the login stays
