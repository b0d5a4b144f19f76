"""Accounts and sessions through the HTTP API, with real mail: sign-up, verification,
login, refresh rotation and reuse detection, logout, password change and reset."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from argon2 import PasswordHasher

from mercato.identity import IdentityRuntime
from tests.factories import STRONG_PASSWORD, TestUser, make_user, unique_email
from tests.identity.conftest import Mailbox

API = "/api/v1"


def registration(email: str, **overrides: Any) -> dict[str, Any]:
    return {
        "email": email,
        "password": STRONG_PASSWORD,
        "first_name": "Grace",
        "last_name": "Hopper",
        **overrides,
    }


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(f"{API}/auth/login", json={"email": email, "password": password})


async def tokens(client: httpx.AsyncClient, user: TestUser) -> dict[str, Any]:
    response = await login(client, user.email, user.password)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


async def test_register_verify_and_log_in(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    email = unique_email()
    response = await client.post(f"{API}/auth/register", json=registration(email))
    assert response.status_code == 202
    token = await mailbox.token(email, "confirm your email")

    session = (await login(client, email, STRONG_PASSWORD)).json()["data"]
    assert session["token_type"] == "Bearer"
    assert session["expires_in"] == 900
    me = (await client.get(f"{API}/me", headers=bearer(session["access_token"]))).json()["data"]
    assert (me["email"], me["first_name"], me["roles"]) == (email, "Grace", ["customer"])
    assert me["email_verified"] is False

    assert (await client.post(f"{API}/auth/verify-email", json={"token": token})).status_code == 204
    me = (await client.get(f"{API}/me", headers=bearer(session["access_token"]))).json()["data"]
    assert me["email_verified"] is True
    # Single use: the same link a second time is refused.
    again = await client.post(f"{API}/auth/verify-email", json={"token": token})
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "INVALID_TOKEN"


async def test_a_verification_link_expires(
    client: httpx.AsyncClient, mailbox: Mailbox, conn: asyncpg.Connection
) -> None:
    email = unique_email()
    await client.post(f"{API}/auth/register", json=registration(email))
    token = await mailbox.token(email, "confirm your email")
    await conn.execute("UPDATE identity.one_time_tokens SET expires_at = now() - interval '1 s'")
    response = await client.post(f"{API}/auth/verify-email", json={"token": token})
    assert response.json()["error"]["code"] == "INVALID_TOKEN"


async def test_weak_and_personal_passwords_are_refused(client: httpx.AsyncClient) -> None:
    for password in ("short", "password1234", "grace-hopper", "qwertyuiop12"):
        response = await client.post(
            f"{API}/auth/register", json=registration(unique_email(), password=password)
        )
        assert response.status_code == 422, password
        assert response.json()["error"]["details"][0]["field"] == "body.password"
    too_long = await client.post(
        f"{API}/auth/register", json=registration(unique_email(), password="x" * 129)
    )
    assert too_long.status_code == 422


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(
    client: httpx.AsyncClient, customer: TestUser, conn: asyncpg.Connection
) -> None:
    first = await tokens(client, customer)
    second = (
        await client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()["data"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["refresh_expires_at"] == first["refresh_expires_at"]  # absolute lifetime

    # The first token was stolen and replayed: the whole family dies, the thief's and ours.
    replay = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "REFRESH_TOKEN_REUSED"
    honest = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert honest.status_code == 401
    assert honest.json()["error"]["code"] == "INVALID_REFRESH_TOKEN"
    audit = await conn.fetchval(
        "SELECT count(*) FROM identity.audit_log"
        " WHERE action = 'refresh_token.reuse_detected' AND subject_id = $1",
        customer.id,
    )
    assert audit == 1
    # Stored as hashes only.
    raw = str(await conn.fetch("SELECT * FROM identity.refresh_tokens"))
    assert first["refresh_token"] not in raw


async def test_a_family_ends_at_its_absolute_lifetime(
    client: httpx.AsyncClient, customer: TestUser, conn: asyncpg.Connection
) -> None:
    session = await tokens(client, customer)
    await conn.execute("UPDATE identity.refresh_tokens SET expires_at = now() - interval '1 s'")
    response = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert response.json()["error"]["code"] == "INVALID_REFRESH_TOKEN"


async def test_logout_ends_one_login_and_logout_all_ends_every_session(
    client: httpx.AsyncClient, customer: TestUser
) -> None:
    phone, laptop = await tokens(client, customer), await tokens(client, customer)
    assert (
        await client.post(f"{API}/auth/logout", json={"refresh_token": phone["refresh_token"]})
    ).status_code == 204
    gone = await client.post(f"{API}/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert gone.status_code == 401
    kept = await client.post(f"{API}/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert kept.status_code == 200
    laptop = kept.json()["data"]

    assert (
        await client.post(f"{API}/auth/logout-all", headers=bearer(laptop["access_token"]))
    ).status_code == 204
    assert (
        await client.get(f"{API}/me", headers=bearer(laptop["access_token"]))
    ).status_code == 401
    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": laptop["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_changing_the_password_ends_other_sessions_and_mails_a_notice(
    client: httpx.AsyncClient, customer: TestUser, mailbox: Mailbox
) -> None:
    old = await tokens(client, customer)
    new_password = "amber-quarry-violin-2031"
    wrong = await client.post(
        f"{API}/me/password",
        json={"current_password": "not-my-password-at-all", "new_password": new_password},
        headers=bearer(old["access_token"]),
    )
    assert wrong.status_code == 401
    changed = await client.post(
        f"{API}/me/password",
        json={"current_password": customer.password, "new_password": new_password},
        headers=bearer(old["access_token"]),
    )
    assert changed.status_code == 200
    fresh = changed.json()["data"]
    assert (await client.get(f"{API}/me", headers=bearer(old["access_token"]))).status_code == 401
    assert (await client.get(f"{API}/me", headers=bearer(fresh["access_token"]))).status_code == 200
    stale = await client.post(f"{API}/auth/refresh", json={"refresh_token": old["refresh_token"]})
    assert stale.status_code == 401
    assert (await login(client, customer.email, customer.password)).status_code == 401
    assert (await login(client, customer.email, new_password)).status_code == 200
    await mailbox.wait_for(customer.email, "password was changed")


async def test_password_reset_is_single_use_and_expires(
    client: httpx.AsyncClient, customer: TestUser, mailbox: Mailbox, conn: asyncpg.Connection
) -> None:
    session = await tokens(client, customer)
    await client.post(f"{API}/auth/password/forgot", json={"email": customer.email})
    token = await mailbox.token(customer.email, "reset your password")

    weak = await client.post(
        f"{API}/auth/password/reset", json={"token": token, "new_password": "password"}
    )
    assert weak.status_code == 422  # and the link is still good:
    new_password = "copper-meadow-signal-7755"
    reset = await client.post(
        f"{API}/auth/password/reset", json={"token": token, "new_password": new_password}
    )
    assert reset.status_code == 204
    again = await client.post(
        f"{API}/auth/password/reset", json={"token": token, "new_password": "other-" + new_password}
    )
    assert again.json()["error"]["code"] == "INVALID_TOKEN"
    assert (await login(client, customer.email, new_password)).status_code == 200
    # Every earlier session ended with the reset.
    assert (
        await client.get(f"{API}/me", headers=bearer(session["access_token"]))
    ).status_code == 401

    mailbox.messages.clear()
    await client.post(f"{API}/auth/password/forgot", json={"email": customer.email})
    expired = await mailbox.token(customer.email, "reset your password")
    assert expired != token
    await conn.execute("UPDATE identity.one_time_tokens SET expires_at = now() - interval '1 s'")
    late = await client.post(
        f"{API}/auth/password/reset",
        json={"token": expired, "new_password": "late-" + new_password},
    )
    assert late.json()["error"]["code"] == "INVALID_TOKEN"


async def test_a_newer_reset_link_replaces_the_older_one(
    client: httpx.AsyncClient, customer: TestUser, mailbox: Mailbox
) -> None:
    await client.post(f"{API}/auth/password/forgot", json={"email": customer.email})
    first = await mailbox.token(customer.email, "reset your password")
    mailbox.messages.clear()
    await client.post(f"{API}/auth/password/forgot", json={"email": customer.email})
    await mailbox.token(customer.email, "reset your password")
    response = await client.post(
        f"{API}/auth/password/reset", json={"token": first, "new_password": "river-stone-hat-4411"}
    )
    assert response.json()["error"]["code"] == "INVALID_TOKEN"


async def test_deleting_the_account_needs_the_password_and_ends_every_session(
    client: httpx.AsyncClient, customer: TestUser
) -> None:
    session = await tokens(client, customer)
    headers = bearer(session["access_token"])
    wrong = await client.request(
        "DELETE", f"{API}/me", json={"password": "not-the-password-1"}, headers=headers
    )
    assert wrong.status_code == 401
    deleted = await client.request(
        "DELETE", f"{API}/me", json={"password": customer.password}, headers=headers
    )
    assert deleted.status_code == 204
    assert (await client.get(f"{API}/me", headers=headers)).status_code == 401
    assert (await login(client, customer.email, customer.password)).status_code == 401
    refreshed = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_a_changed_hashing_cost_rehashes_at_login(
    client: httpx.AsyncClient, runtime: IdentityRuntime, conn: asyncpg.Connection
) -> None:
    user = await make_user(conn, runtime, password="lantern-orchid-basalt-88")
    await conn.execute(
        "UPDATE identity.users SET password_hash = $2 WHERE id = $1",
        user.id,
        # The same password under weaker, older parameters.
        PasswordHasher(memory_cost=8192, time_cost=1).hash(user.password),
    )
    assert (await login(client, user.email, user.password)).status_code == 200
    stored = await conn.fetchval("SELECT password_hash FROM identity.users WHERE id = $1", user.id)
    assert "m=19456,t=2,p=1" in stored
    assert (await login(client, user.email, user.password)).status_code == 200


async def test_answers_with_tokens_or_personal_data_are_not_cached(
    client: httpx.AsyncClient, customer: TestUser
) -> None:
    login = await client.post(
        f"{API}/auth/login", json={"email": customer.email, "password": customer.password}
    )
    me = await client.get(f"{API}/me", headers=customer.headers)
    for response in (login, me):
        assert response.headers["cache-control"] == "no-store"
