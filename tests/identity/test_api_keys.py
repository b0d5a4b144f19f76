"""API keys: shown once, stored as a hash, scoped, never more than their owner holds, and
refused the moment they are revoked, expire, or their owner loses the permission."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from mercato.identity import IdentityRuntime
from tests.factories import TestUser, make_user, product_payload

KEYS = "/api/v1/api-keys"
PRODUCTS = "/api/v1/products"
USERS = "/api/v1/users"


def as_bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def split_key(key: str) -> tuple[str, str]:
    """`mk_<prefix>_<secret>` → (prefix, secret)."""
    assert key.startswith("mk_"), key
    prefix, _, secret = key[3:].partition("_")
    return prefix, secret


async def create_key(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    scopes: list[str],
    **extra: Any,
) -> dict[str, Any]:
    response = await client.post(
        KEYS, json={"name": "integration", "scopes": scopes, **extra}, headers=headers
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


async def post_product(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post(PRODUCTS, json=product_payload(), headers=as_bearer(key))


# --- creation and storage ---------------------------------------------------------------


async def test_a_new_key_is_shown_once_and_never_again(
    client: httpx.AsyncClient, admin: dict[str, str], admin_user: TestUser
) -> None:
    response = await client.post(
        KEYS, json={"name": "warehouse sync", "scopes": ["products:write"]}, headers=admin
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()["data"]
    key = created["key"]
    prefix, secret = split_key(key)
    assert len(prefix) == 12
    assert len(secret) >= 43  # 256 random bits, base64url
    assert created["prefix"] == f"mk_{prefix}"
    assert created["name"] == "warehouse sync"
    assert created["scopes"] == ["products:write"]
    assert created["owner_id"] == str(admin_user.id)
    assert created["expires_at"] is None
    assert created["revoked_at"] is None

    listed = await client.get(KEYS, headers=admin)
    assert listed.status_code == 200, listed.text
    (entry,) = [item for item in listed.json()["data"] if item["id"] == created["id"]]
    assert "key" not in entry
    assert entry["prefix"] == created["prefix"]
    assert {k: v for k, v in created.items() if k != "key"} == entry
    assert secret not in listed.text
    for item in listed.json()["data"]:
        assert "key" not in item
        assert "secret_hash" not in item


async def test_only_a_hash_of_the_secret_is_stored(
    client: httpx.AsyncClient, conn: asyncpg.Connection, admin: dict[str, str]
) -> None:
    created = await create_key(client, admin, ["products:write"])
    prefix, secret = split_key(created["key"])
    row = await conn.fetchrow(
        "SELECT k::text AS everything, secret_hash FROM identity.api_keys k WHERE id = $1",
        uuid.UUID(created["id"]),
    )
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).digest()
    everything: str = row["everything"]
    assert prefix in everything  # the lookup handle is stored in clear, as intended
    assert secret not in everything
    assert secret.encode().hex() not in everything
    assert created["key"] not in everything
    # Nor does the audit log keep it.
    audit = await conn.fetch("SELECT a::text AS entry FROM identity.audit_log a")
    assert any(created["id"] in entry["entry"] for entry in audit)
    assert not any(secret in entry["entry"] for entry in audit)


async def test_creating_keys_needs_the_permission(
    client: httpx.AsyncClient, conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    staff = await make_user(conn, runtime, roles=("staff",))
    response = await client.post(
        KEYS, json={"name": "mine", "scopes": ["products:write"]}, headers=staff.headers
    )
    assert_error(response, 403, "FORBIDDEN")
    assert_error(await client.get(KEYS, headers=staff.headers), 403, "FORBIDDEN")
    assert_error(await client.get(KEYS), 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["products:destroy"]},
        {"name": "", "scopes": ["products:write"]},
        {"name": "x", "scopes": ["products:write"], "expires_in_days": 0},
    ],
    ids=["no-scopes", "unknown-scope", "empty-name", "zero-days"],
)
async def test_malformed_key_requests_are_rejected(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    response = await client.post(KEYS, json=body, headers=admin)
    assert response.status_code == 422, response.text


# --- using a key ------------------------------------------------------------------------


async def test_a_key_acts_within_its_scopes_only(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    key = (await create_key(client, admin, ["products:write"]))["key"]

    response = await post_product(client, key)
    assert response.status_code == 201, response.text

    # The owner is an admin, but the key was only given products:write.
    assert_error(await client.get(USERS, headers=as_bearer(key)), 403, "FORBIDDEN")
    assert_error(await client.get(KEYS, headers=as_bearer(key)), 403, "FORBIDDEN")
    # A key is not a person: no account of its own, no sessions to end.
    assert_error(await client.get("/api/v1/me", headers=as_bearer(key)), 403, "FORBIDDEN")
    response = await client.post("/api/v1/auth/logout-all", headers=as_bearer(key))
    assert_error(response, 403, "FORBIDDEN")


async def test_a_key_cannot_mint_keys(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """Even with `api_keys:manage`, a key cannot create keys: one that could would outlive
    its own expiry and revocation through the keys it made."""
    manager = (await create_key(client, admin, ["api_keys:manage"]))["key"]
    for scopes in (["users:manage"], ["api_keys:manage"]):
        response = await client.post(
            KEYS, json={"name": "minted", "scopes": scopes}, headers=as_bearer(manager)
        )
        assert_error(response, 403, "FORBIDDEN")


async def test_a_key_cannot_carry_a_scope_its_creator_lacks(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    admin: dict[str, str],
) -> None:
    response = await client.post(
        "/api/v1/roles",
        json={"name": "key-keeper", "permissions": ["api_keys:manage"]},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    keeper = await make_user(conn, runtime, roles=("customer",))
    response = await client.put(
        f"{USERS}/{keeper.id}/roles", json={"roles": ["key-keeper"]}, headers=admin
    )
    assert response.status_code == 200, response.text

    for scopes in (["users:manage"], ["api_keys:manage", "users:manage"], ["products:write"]):
        response = await client.post(
            KEYS, json={"name": "escalate", "scopes": scopes}, headers=keeper.headers
        )
        assert_error(response, 403, "PERMISSION_NOT_HELD")
        missing = [detail["message"] for detail in response.json()["error"]["details"]]
        assert missing == [scope for scope in scopes if scope != "api_keys:manage"]
    assert (
        await conn.fetchval("SELECT count(*) FROM identity.api_keys WHERE owner_id = $1", keeper.id)
        == 0
    )

    # What the role does grant can be delegated.
    created = await create_key(client, keeper.headers, ["api_keys:manage"])
    assert created["owner_id"] == str(keeper.id)


# --- refusals ---------------------------------------------------------------------------


async def test_a_revoked_key_is_refused(
    client: httpx.AsyncClient, conn: asyncpg.Connection, admin: dict[str, str]
) -> None:
    created = await create_key(client, admin, ["products:write"])
    assert (await post_product(client, created["key"])).status_code == 201

    response = await client.delete(f"{KEYS}/{created['id']}", headers=admin)
    assert response.status_code == 204, response.text
    assert_error(await post_product(client, created["key"]), 401, "UNAUTHENTICATED")

    listed = (await client.get(KEYS, headers=admin)).json()["data"]
    (entry,) = [item for item in listed if item["id"] == created["id"]]
    assert entry["revoked_at"] is not None
    # Revoking again keeps the first revocation's time (moved back an hour here, since
    # now() does not advance inside the test's transaction); an unknown id is a 404.
    key_id = uuid.UUID(created["id"])
    first = await conn.fetchval(
        "UPDATE identity.api_keys SET revoked_at = revoked_at - interval '1 hour'"
        " WHERE id = $1 RETURNING revoked_at",
        key_id,
    )
    assert (await client.delete(f"{KEYS}/{created['id']}", headers=admin)).status_code == 204
    assert (
        await conn.fetchval("SELECT revoked_at FROM identity.api_keys WHERE id = $1", key_id)
        == first
    )
    response = await client.delete(f"{KEYS}/{uuid.uuid4()}", headers=admin)
    assert_error(response, 404, "API_KEY_NOT_FOUND")


async def test_an_expired_key_is_refused(
    client: httpx.AsyncClient, conn: asyncpg.Connection, admin: dict[str, str]
) -> None:
    created = await create_key(client, admin, ["products:write"], expires_in_days=30)
    assert created["expires_at"] is not None
    assert (await post_product(client, created["key"])).status_code == 201

    await conn.execute(
        "UPDATE identity.api_keys SET expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(created["id"]),
    )
    assert_error(await post_product(client, created["key"]), 401, "UNAUTHENTICATED")


async def test_a_wrong_secret_is_refused(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    key = (await create_key(client, admin, ["products:write"]))["key"]
    prefix, secret = split_key(key)
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    forgeries = {
        "other-secret": f"mk_{prefix}_{flipped}",
        "truncated-secret": f"mk_{prefix}_{secret[:-1]}",
        "extended-secret": f"mk_{prefix}_{secret}x",
        "no-secret": f"mk_{prefix}_",
        "unknown-prefix": f"mk_{'0' * 12}_{secret}",
        "short-prefix": f"mk_{prefix[:-1]}_{secret}",
        "upper-prefix": f"MK_{prefix}_{secret}",
        "hash-as-secret": f"mk_{prefix}_{hashlib.sha256(secret.encode()).hexdigest()}",
    }
    for name, forged in forgeries.items():
        response = await post_product(client, forged)
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error"]["code"] == "UNAUTHENTICATED", name
    assert (await post_product(client, key)).status_code == 201


# --- the owner's permissions bound the key ----------------------------------------------


async def test_demoting_the_owner_takes_the_keys_permissions_away(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    admin: dict[str, str],
) -> None:
    owner = await make_user(conn, runtime, roles=("admin",))
    key = (await create_key(client, owner.headers, ["products:write", "users:read"]))["key"]
    assert (await post_product(client, key)).status_code == 201
    assert (await client.get(USERS, headers=as_bearer(key))).status_code == 200

    async def set_roles(roles: list[str]) -> None:
        response = await client.put(
            f"{USERS}/{owner.id}/roles", json={"roles": roles}, headers=admin
        )
        assert response.status_code == 200, response.text

    # Staff still hold products:write and users:read.
    await set_roles(["staff"])
    assert (await post_product(client, key)).status_code == 201

    await set_roles([])
    assert_error(await post_product(client, key), 403, "FORBIDDEN")
    assert_error(await client.get(USERS, headers=as_bearer(key)), 403, "FORBIDDEN")

    # Read on every request: restoring the role restores the key.
    await set_roles(["admin"])
    assert (await post_product(client, key)).status_code == 201


async def test_a_key_dies_with_its_owners_account(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
) -> None:
    owner = await make_user(conn, runtime, roles=("admin",))
    key = (await create_key(client, owner.headers, ["products:write"]))["key"]
    assert (await post_product(client, key)).status_code == 201
    await conn.execute("UPDATE identity.users SET deleted_at = now() WHERE id = $1", owner.id)
    assert_error(await post_product(client, key), 401, "UNAUTHENTICATED")
