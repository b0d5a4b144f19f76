"""Factories: valid payloads with unique values, and helpers that create through the API."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from mercato.core.database import Database, Executor
from mercato.core.mail import FileMailer
from mercato.core.ratelimit import FailureThrottle, RateLimiter
from mercato.events import EventDraft, record_events
from mercato.identity import IdentityRuntime
from mercato.identity import repository as identity_repository
from mercato.identity.accounts import seal_fields
from mercato.identity.tokens import ensure_signing_key
from tests.settings import make_settings

_counter = itertools.count(1)


def product_payload(**overrides: Any) -> dict[str, Any]:
    n = next(_counter)
    payload: dict[str, Any] = {
        "sku": f"TEST-{n:06d}",
        "name": f"Test Product {n}",
        "description": "A sturdy thing for testing",
        "brand": "Acme",
        "price": "19.99",
        "inventory_count": 5,
    }
    payload.update(overrides)
    return payload


def category_payload(**overrides: Any) -> dict[str, Any]:
    n = next(_counter)
    payload: dict[str, Any] = {"name": f"Category {n}", "slug": f"category-{n}"}
    payload.update(overrides)
    return payload


async def create_category(
    client: httpx.AsyncClient, admin: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/categories", json=category_payload(**overrides), headers=admin
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def create_product(
    client: httpx.AsyncClient, admin: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/products", json=product_payload(**overrides), headers=admin
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def if_match(version: int) -> dict[str, str]:
    return {"If-Match": f'"{version}"'}


async def record_product_events(db: Database, count: int, *, payload_bytes: int = 0) -> None:
    """Commit `count` product events in one transaction (each for a new product id)."""
    drafts = [
        EventDraft(
            type="product.updated",
            aggregate_type="product",
            aggregate_id=str(uuid.uuid4()),
            aggregate_version=1,
            payload={"n": n, "blob": "x" * payload_bytes},
        )
        for n in range(count)
    ]
    async with db.transaction() as conn:
        await record_events(conn, drafts)


# --- identity ---------------------------------------------------------------------------

STRONG_PASSWORD = "violet-harbour-lantern-1987"
_hashes: dict[str, str] = {}


@dataclass(frozen=True)
class TestUser:
    __test__ = False  # not a test class, despite the name

    id: uuid.UUID
    email: str
    password: str
    headers: dict[str, str]


def unique_email() -> str:
    return f"user{next(_counter)}-{uuid.uuid4().hex[:6]}@example.com"


async def make_user(
    conn: Executor,
    runtime: IdentityRuntime,
    *,
    roles: tuple[str, ...] = ("customer",),
    email: str | None = None,
    password: str = STRONG_PASSWORD,
    first_name: str = "Ada",
    last_name: str = "Lovelace",
    verified: bool = True,
) -> TestUser:
    """An account written straight to the database (the hash is computed once per password
    per run), with a bearer header for it."""
    email = email or unique_email()
    if password not in _hashes:
        _hashes[password] = await runtime.passwords.hash(password)
    user_id = uuid.uuid4()
    sealed = seal_fields(
        runtime,
        user_id,
        {
            "email": email,
            "first_name": first_name,
            "last_name": last_name,
            "phone": None,
            "address": None,
        },
    )
    await identity_repository.insert_user(
        conn,
        {**sealed, "id": user_id, "email_index": runtime.blind_index.email(email)},
        password_hash=_hashes[password],
    )
    await identity_repository.set_user_roles(conn, user_id, list(roles))
    if verified:
        await conn.execute(
            "UPDATE identity.users SET email_verified_at = now() WHERE id = $1", user_id
        )
    return TestUser(user_id, email, password, await bearer(runtime, user_id, conn))


async def bearer(runtime: IdentityRuntime, user_id: uuid.UUID, conn: Executor) -> dict[str, str]:
    version = await conn.fetchval(
        "SELECT session_version FROM identity.users WHERE id = $1", user_id
    )
    issued = await runtime.tokens.issue(user_id, session_version=version)
    return {"Authorization": f"Bearer {issued.token}"}


@asynccontextmanager
async def identity_runtime(database_url: str) -> AsyncIterator[IdentityRuntime]:
    """A runtime beside a served app on the same database (they share the signing keys)."""
    settings = make_settings(database_url=database_url).with_local_secrets()
    db = await Database.connect(database_url, min_size=1, max_size=2)
    try:
        runtime = IdentityRuntime(
            settings,
            db,
            mailer=FileMailer(settings.data_dir / "mail"),
            throttle=FailureThrottle(RateLimiter.create(None)),
        )
        async with db.transaction() as conn:
            await ensure_signing_key(conn, runtime.ring)
        yield runtime
    finally:
        await db.close()


async def staff_headers(
    database_url: str, *, roles: tuple[str, ...] = ("admin",)
) -> dict[str, str]:
    """Commit a user with `roles` and return a bearer header for it."""
    async with identity_runtime(database_url) as runtime:
        async with runtime.db.transaction() as conn:
            user = await make_user(conn, runtime, roles=roles)
        return user.headers
