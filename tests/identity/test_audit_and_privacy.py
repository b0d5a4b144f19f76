"""Personal data at rest, the events identity publishes, the audit log, data key rotation
and erasure of deleted accounts."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import orjson
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
    if_match,
    make_user,
    unique_email,
)

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


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


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


# --- personal data at rest --------------------------------------------------------------


async def test_personal_data_is_unreadable_in_the_table(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    email = distinctive_email()
    user = await make_user(
        conn, runtime, email=email, first_name="Zebulon", last_name="Quackenbush"
    )
    updated = await client.patch(
        "/api/v1/me", json={"phone": PHONE, "address": ADDRESS}, headers=user.headers
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["address"] == ADDRESS  # the API does show it, to its owner

    registered_email = f"Philomena.Wigglesworth.{uuid.uuid4().hex[:8]}@Example.org"
    response = await register(
        client,
        registered_email,
        first_name="Philomena",
        last_name="Wigglesworth",
        phone="+4917098765432",
    )
    assert response.status_code == 202, response.text
    assert await live_user_id(conn, runtime, registered_email) is not None

    secrets = [
        email,
        "Zebulon",
        "Quackenbush",
        PHONE,
        PHONE.removeprefix("+"),
        *(value for value in ADDRESS.values() if value != "DE"),
        registered_email,
        "Philomena",
        "Wigglesworth",
        "+4917098765432",
    ]
    rows = await conn.fetch("SELECT * FROM identity.users")
    assert len(rows) >= 2
    dumped = str([dict(row) for row in rows])
    for secret in secrets:
        for form in {secret, secret.lower(), secret.upper()}:
            assert form not in dumped, form
    for row in rows:
        assert isinstance(row["email_index"], bytes)
        assert len(row["email_index"]) == 32
        for field in SEALED_FIELDS:
            assert row[field] is None or isinstance(row[field], bytes)

    # Nor do they leak into the audit log or the outbox beside the table.
    beside = str(await conn.fetch("SELECT * FROM identity.audit_log")) + str(
        await conn.fetch("SELECT * FROM events.outbox")
    )
    for secret in secrets:
        assert secret.lower() not in beside.lower(), secret


async def test_the_email_index_ignores_case_and_spacing(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    email = distinctive_email()
    user = await make_user(conn, runtime, email=email)
    login = await client.post(
        "/api/v1/auth/login", json={"email": email.lower(), "password": user.password}
    )
    assert login.status_code == 200, login.text
    # Registering the same address in another case makes no second account.
    again = await register(client, email.upper())
    assert again.status_code == 202
    count = await conn.fetchval(
        "SELECT count(*) FROM identity.users WHERE email_index = $1",
        runtime.blind_index.email(email),
    )
    assert count == 1


# --- events -----------------------------------------------------------------------------


async def outbox(conn: asyncpg.Connection, event_type: str, aggregate_id: Any) -> list[Any]:
    rows = await conn.fetch(
        "SELECT * FROM events.outbox WHERE type = $1 AND aggregate_id = $2 ORDER BY seq",
        event_type,
        str(aggregate_id),
    )
    return list(rows)


def assert_no_personal_data(payload: Any, *values: str) -> None:
    text = orjson.dumps(payload).decode().lower()
    for value in values:
        assert value.lower() not in text, value


async def test_registration_publishes_an_event_without_personal_data(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    email = unique_email()
    response = await register(client, email, phone=PHONE)
    assert response.status_code == 202, response.text
    user_id = await live_user_id(conn, runtime, email)

    (event,) = await outbox(conn, "user.registered", user_id)
    assert event["aggregate_type"] == "user"
    assert event["aggregate_version"] == 1
    assert event["schema_version"] == 1
    payload = event["payload"]
    assert payload["id"] == str(user_id)
    assert payload["roles"] == ["customer"]
    assert payload["email_verified"] is False
    assert payload["deleted_at"] is None
    assert set(payload) == {
        "id",
        "email_verified",
        "roles",
        "version",
        "created_at",
        "updated_at",
        "deleted_at",
    }
    assert_no_personal_data(payload, email, "Ottoline", "Vanderpump", PHONE)


async def test_registering_a_taken_address_publishes_nothing(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime)
    before = await conn.fetchval("SELECT count(*) FROM events.outbox")
    response = await register(client, user.email)
    assert response.status_code == 202
    assert await conn.fetchval("SELECT count(*) FROM events.outbox") == before


async def test_profile_changes_and_deletion_publish_events(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime, first_name="Hortensia", last_name="Fairweather")

    patched = await client.patch(
        "/api/v1/me",
        json={"last_name": "Brightwater", "phone": PHONE, "address": ADDRESS},
        headers=user.headers,
    )
    assert patched.status_code == 200, patched.text
    (updated,) = await outbox(conn, "user.updated", user.id)
    assert updated["aggregate_type"] == "user"
    assert updated["aggregate_version"] == patched.json()["data"]["version"]
    assert updated["payload"]["id"] == str(user.id)
    assert_no_personal_data(
        updated["payload"], user.email, "Hortensia", "Brightwater", PHONE, ADDRESS["line1"]
    )

    deleted = await delete_me(client, user)
    assert deleted.status_code == 204, deleted.text
    (gone,) = await outbox(conn, "user.deleted", user.id)
    assert gone["aggregate_type"] == "user"
    assert gone["aggregate_version"] > updated["aggregate_version"]
    assert gone["payload"]["deleted_at"] is not None
    assert_no_personal_data(gone["payload"], user.email, "Hortensia", "Brightwater")


async def test_a_wrong_password_does_not_delete_the_account(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime)
    response = await client.request(
        "DELETE", "/api/v1/me", json={"password": "not-my-password-42"}, headers=user.headers
    )
    assert response.status_code == 401
    assert await outbox(conn, "user.deleted", user.id) == []
    assert (await client.get("/api/v1/me", headers=user.headers)).status_code == 200


async def test_a_role_change_publishes_the_old_and_new_roles(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    admin: dict[str, str],
    admin_user: TestUser,
    customer: TestUser,
) -> None:
    response = await client.put(
        f"/api/v1/users/{customer.id}/roles", json={"roles": ["customer", "staff"]}, headers=admin
    )
    assert response.status_code == 200, response.text

    (event,) = await outbox(conn, "role.changed", customer.id)
    assert event["aggregate_type"] == "user"
    assert event["aggregate_version"] == response.json()["data"]["version"]
    assert event["payload"] == {
        "user_id": str(customer.id),
        "roles": ["customer", "staff"],
        "previous_roles": ["customer"],
        "changed_by": str(admin_user.id),
    }

    # Setting the same roles again changes nothing and publishes nothing.
    same = await client.put(
        f"/api/v1/users/{customer.id}/roles", json={"roles": ["staff", "customer"]}, headers=admin
    )
    assert same.status_code == 200
    assert len(await outbox(conn, "role.changed", customer.id)) == 1


# --- the audit log ----------------------------------------------------------------------


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


def assert_entry(
    row: Any,
    response: httpx.Response,
    *,
    actor_id: Any,
    subject_id: Any,
    outcome: str = "success",
) -> None:
    assert row["outcome"] == outcome
    assert row["actor_id"] == actor_id
    assert row["subject_id"] == subject_id
    assert row["ip"] == "127.0.0.1"
    assert row["user_agent"] == USER_AGENT
    assert row["request_id"] is not None
    assert row["request_id"] == response.headers["x-request-id"]


UA = {"User-Agent": USER_AGENT}


async def test_logins_are_audited_whatever_their_outcome(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime)

    ok = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": user.password}, headers=UA
    )
    assert ok.status_code == 200, ok.text
    (success,) = await audit_rows(conn, "login", subject_id=user.id)
    assert_entry(success, ok, actor_id=user.id, subject_id=user.id)

    bad = await client.post(
        "/api/v1/auth/login",
        json={"email": user.email, "password": "wrong-password-entirely"},
        headers={**UA, "X-Request-Id": "probe-request-0001"},
    )
    assert bad.status_code == 401
    assert bad.headers["x-request-id"] == "probe-request-0001"
    failure = (await audit_rows(conn, "login", subject_id=user.id))[-1]
    assert_entry(failure, bad, actor_id=None, subject_id=user.id, outcome="failure")
    assert failure["request_id"] == "probe-request-0001"
    assert "wrong-password" not in str(failure)

    nobody = await client.post(
        "/api/v1/auth/login",
        json={"email": unique_email(), "password": "wrong-password-entirely"},
        headers=UA,
    )
    assert nobody.status_code == 401
    unknown = (await audit_rows(conn, "login"))[-1]
    assert_entry(unknown, nobody, actor_id=None, subject_id=None, outcome="failure")


async def test_a_password_change_is_audited(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime)
    response = await client.post(
        "/api/v1/me/password",
        json={"current_password": user.password, "new_password": NEW_PASSWORD},
        headers={**user.headers, **UA},
    )
    assert response.status_code == 200, response.text
    (row,) = await audit_rows(conn, "password.changed", subject_id=user.id)
    assert_entry(row, response, actor_id=user.id, subject_id=user.id)
    assert NEW_PASSWORD not in str(row)
    assert user.password not in str(row)


async def test_staff_actions_are_audited(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    admin: dict[str, str],
    admin_user: TestUser,
    customer: TestUser,
) -> None:
    assigned = await client.put(
        f"/api/v1/users/{customer.id}/roles",
        json={"roles": ["customer", "staff"]},
        headers={**admin, **UA},
    )
    assert assigned.status_code == 200, assigned.text
    (roles,) = await audit_rows(conn, "roles.assigned", subject_id=customer.id)
    assert_entry(roles, assigned, actor_id=admin_user.id, subject_id=customer.id)
    assert roles["details"] == {"roles": ["customer", "staff"], "previous_roles": ["customer"]}

    key = await client.post(
        "/api/v1/api-keys",
        json={"name": "warehouse sync", "scopes": ["products:write"]},
        headers={**admin, **UA},
    )
    assert key.status_code == 201, key.text
    key_data = key.json()["data"]
    (created,) = await audit_rows(conn, "api_key.created")
    assert created["actor_id"] == admin_user.id
    assert created["ip"] == "127.0.0.1"
    assert created["user_agent"] == USER_AGENT
    assert created["request_id"] == key.headers["x-request-id"]
    assert created["details"]["api_key_id"] == key_data["id"]
    assert created["details"]["scopes"] == ["products:write"]
    assert key_data["key"] not in str(created)  # the secret is never logged

    version = assigned.json()["data"]["version"]
    deleted = await client.delete(
        f"/api/v1/users/{customer.id}", headers={**admin, **UA, **if_match(version)}
    )
    assert deleted.status_code == 204, deleted.text
    (gone,) = await audit_rows(conn, "user.deleted", subject_id=customer.id)
    assert_entry(gone, deleted, actor_id=admin_user.id, subject_id=customer.id)


async def test_a_long_user_agent_is_cut_short(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    user = await make_user(conn, runtime)
    await client.post(
        "/api/v1/auth/login",
        json={"email": user.email, "password": user.password},
        headers={"User-Agent": "A" * 5000},
    )
    (row,) = await audit_rows(conn, "login", subject_id=user.id)
    assert row["user_agent"] == "A" * 300


async def test_the_audit_log_can_be_queried_by_staff(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    admin: dict[str, str],
    admin_user: TestUser,
    customer: TestUser,
) -> None:
    users = [await make_user(conn, runtime) for _ in range(3)]
    for user in users:
        response = await client.patch(
            f"/api/v1/users/{user.id}",
            json={"last_name": "Audited"},
            headers={**admin, **if_match(1)},
        )
        assert response.status_code == 200, response.text
    own = await client.patch("/api/v1/me", json={"first_name": "Self"}, headers=users[1].headers)
    assert own.status_code == 200

    # By action: newest first, in pages.
    first = await client.get(
        "/api/v1/audit-events", params={"action": "user.updated", "limit": 2}, headers=admin
    )
    assert first.status_code == 200, first.text
    page1 = first.json()
    assert page1["meta"]["count"] == 2
    cursor = page1["meta"]["next_cursor"]
    assert cursor
    second = await client.get(
        "/api/v1/audit-events",
        params={"action": "user.updated", "limit": 2, "cursor": cursor},
        headers=admin,
    )
    assert second.status_code == 200, second.text
    page2 = second.json()
    assert page2["meta"]["next_cursor"] is None
    entries = page1["data"] + page2["data"]
    assert len(entries) == 4
    ids = [entry["id"] for entry in entries]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 4
    assert {entry["action"] for entry in entries} == {"user.updated"}
    assert [entry["subject_id"] for entry in entries] == [
        str(users[1].id),
        str(users[2].id),
        str(users[1].id),
        str(users[0].id),
    ]
    assert entries[0]["actor_id"] == str(users[1].id)
    assert {entry["actor_id"] for entry in entries[1:]} == {str(admin_user.id)}
    assert entries[1]["details"] == {"fields": ["last_name"]}

    # By subject.
    by_subject = await client.get(
        "/api/v1/audit-events", params={"subject_id": str(users[1].id)}, headers=admin
    )
    assert by_subject.status_code == 200
    subject_entries = by_subject.json()["data"]
    assert len(subject_entries) == 2
    assert {entry["subject_id"] for entry in subject_entries} == {str(users[1].id)}

    # By actor.
    by_actor = await client.get(
        "/api/v1/audit-events",
        params={"actor_id": str(admin_user.id), "action": "user.updated"},
        headers=admin,
    )
    assert [entry["subject_id"] for entry in by_actor.json()["data"]] == [
        str(user.id) for user in reversed(users)
    ]

    # A cursor is bound to its filters.
    other = await client.get(
        "/api/v1/audit-events",
        params={"subject_id": str(users[1].id), "cursor": cursor},
        headers=admin,
    )
    assert other.status_code == 400
    assert error_code(other) == "INVALID_CURSOR"

    too_many = await client.get("/api/v1/audit-events", params={"limit": 1000}, headers=admin)
    assert too_many.status_code == 422
    unknown_filter = await client.get(
        "/api/v1/audit-events", params={"ip": "127.0.0.1"}, headers=admin
    )
    assert unknown_filter.status_code == 422

    refused = await client.get("/api/v1/audit-events", headers=customer.headers)
    assert refused.status_code == 403
    assert error_code(refused) == "FORBIDDEN"
    anonymous = await client.get("/api/v1/audit-events")
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE identity.audit_log SET action = 'x'",
        "UPDATE identity.audit_log SET outcome = 'success' WHERE false",
        "DELETE FROM identity.audit_log",
        "DELETE FROM identity.audit_log WHERE action = 'login'",
        "TRUNCATE identity.audit_log",
    ],
)
async def test_the_audit_log_is_append_only(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    statement: str,
) -> None:
    user = await make_user(conn, runtime)
    await client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
    before = [dict(row) for row in await conn.fetch("SELECT * FROM identity.audit_log")]
    assert before

    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        async with conn.transaction():
            await conn.execute(statement)

    after = [dict(row) for row in await conn.fetch("SELECT * FROM identity.audit_log")]
    assert after == before


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
