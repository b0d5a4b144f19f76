"""Signing keys (stored sealed, published, rotated without breaking tokens) and the session version that ends every token at once."""

from __future__ import annotations

import base64
import time
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from mercato.core.crypto import UndecryptableValue
from mercato.core.errors import Unauthenticated
from mercato.identity import IdentityRuntime
from mercato.identity import tokens as tokens_module
from mercato.identity.tokens import (
    LEEWAY_SECONDS,
    AccessTokens,
    KeySet,
    rotate_signing_key,
    signing_key_context,
)
from tests.factories import TestUser, bearer, make_user

ME = "/api/v1/me"
JWKS = "/.well-known/jwks.json"
TOKEN_TTL = timedelta(seconds=900)


# --- helpers ----------------------------------------------------------------------------


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(ME, headers={"Authorization": f"Bearer {token}"})


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "UNAUTHENTICATED", response.text


async def signing_kid(runtime: IdentityRuntime) -> str:
    return (await runtime.keys.current()).signing_kid


class ShiftedClock:
    """Stands in for the `time` module inside tokens.py, so a test can let the key set's
    refresh interval pass without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def time(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ShiftedClock:
    shifted = ShiftedClock()
    monkeypatch.setattr(tokens_module, "time", shifted)
    return shifted


def fresh_tokens(conn: asyncpg.Connection, runtime: IdentityRuntime) -> AccessTokens:
    """An instance's view of the keys, loaded from the database now."""
    return AccessTokens(
        KeySet(conn, runtime.ring),
        issuer=runtime.settings.jwt_issuer,
        audience=runtime.settings.jwt_audience,
        ttl_seconds=runtime.settings.access_token_seconds,
    )


# --- session version --------------------------------------------------------------------


async def test_logout_everywhere_ends_every_access_token_of_the_account(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    customer: TestUser,
) -> None:
    other_device = await bearer(runtime, customer.id, conn)
    bystander = await make_user(conn, runtime)
    assert (await client.get(ME, headers=other_device)).status_code == 200

    response = await client.post("/api/v1/auth/logout-all", headers=customer.headers)
    assert response.status_code == 204, response.text

    assert_refused(await client.get(ME, headers=customer.headers))
    assert_refused(await client.get(ME, headers=other_device))
    # Another account's sessions are untouched, and logging in again works.
    assert (await client.get(ME, headers=bystander.headers)).status_code == 200
    fresh = await bearer(runtime, customer.id, conn)
    assert (await client.get(ME, headers=fresh)).status_code == 200


# --- key rotation -----------------------------------------------------------------------


async def test_signing_keys_are_stored_sealed(
    conn: asyncpg.Connection, runtime: IdentityRuntime
) -> None:
    kid = await signing_kid(runtime)
    sealed = await conn.fetchval(
        "SELECT private_key FROM identity.signing_keys WHERE kid = $1", kid
    )
    pkcs8 = base64.b64decode(runtime.ring.open(sealed, context=signing_key_context(kid)))
    loaded = await runtime.keys.current()
    assert pkcs8 == loaded.signing_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert pkcs8 not in sealed
    # Bound to its row: the same ciphertext under another kid does not open.
    with pytest.raises(UndecryptableValue):
        runtime.ring.open(sealed, context=signing_key_context("another-kid"))


async def test_the_jwks_publishes_the_signing_key(
    client: httpx.AsyncClient, runtime: IdentityRuntime, customer: TestUser
) -> None:
    response = await client.get(JWKS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jwk-set+json")
    assert "public" in response.headers["cache-control"]
    (jwk,) = response.json()["keys"]
    assert jwk["kid"] == await signing_kid(runtime)
    # The published key verifies the app's tokens on its own.
    claims = jwt.decode(
        token_of(customer.headers),
        jwt.PyJWK(jwk).key,
        algorithms=["EdDSA"],
        audience=runtime.settings.jwt_audience,
    )
    assert claims["sub"] == str(customer.id)


def assert_public_jwk(jwk: dict[str, Any]) -> None:
    assert jwk["kty"] == "OKP"
    assert jwk["crv"] == "Ed25519"
    assert jwk["alg"] == "EdDSA"
    assert jwk["use"] == "sig"
    assert isinstance(jwk["kid"], str)
    assert jwk["kid"]
    assert len(b64url_decode(jwk["x"])) == 32
    assert "d" not in jwk, "the JWKS leaks a private key"
    assert set(jwk) <= {"kty", "crv", "alg", "use", "kid", "x"}


async def test_rotation_keeps_old_tokens_valid_until_the_old_key_expires(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    customer: TestUser,
    clock: ShiftedClock,
) -> None:
    old_token = token_of(customer.headers)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    assert old_kid == await signing_kid(runtime)

    new_kid = await rotate_signing_key(conn, runtime.ring, token_ttl=TOKEN_TTL)
    assert new_kid != old_kid
    retired = await conn.fetchrow(
        "SELECT retired_at, expires_at FROM identity.signing_keys WHERE kid = $1", old_kid
    )
    assert retired["retired_at"] is not None
    # It verifies for one token lifetime plus the leeway and a minute of refresh slack.
    assert retired["expires_at"] - retired["retired_at"] == TOKEN_TTL + timedelta(
        seconds=LEEWAY_SECONDS + 60
    )

    # Another instance, loading the keys now:
    instance = fresh_tokens(conn, runtime)
    claims = await instance.verify(old_token)
    assert claims.subject_id == customer.id
    issued = await instance.issue(customer.id, session_version=claims.session_version)
    assert jwt.get_unverified_header(issued.token)["kid"] == new_kid
    assert (await instance.verify(issued.token)).subject_id == customer.id

    # The app reloads its keys when the refresh interval passes.
    clock.advance(31)
    assert (await me(client, old_token)).status_code == 200
    assert (await me(client, issued.token)).status_code == 200
    assert (
        jwt.get_unverified_header(token_of(await bearer(runtime, customer.id, conn)))["kid"]
        == new_kid
    )

    response = await client.get(JWKS)
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("public")
    keys = response.json()["keys"]
    assert {key["kid"] for key in keys} == {old_kid, new_kid}
    for jwk in keys:
        assert_public_jwk(jwk)
    by_kid = {key["kid"]: jwt.PyJWK(key).key for key in keys}
    for token, kid in ((old_token, old_kid), (issued.token, new_kid)):
        jwt.decode(token, by_kid[kid], algorithms=["EdDSA"], audience=runtime.settings.jwt_audience)

    # Once the old key's verification window has passed, its tokens are refused.
    await conn.execute(
        "UPDATE identity.signing_keys SET expires_at = now() - interval '1 second' WHERE kid = $1",
        old_kid,
    )
    later = fresh_tokens(conn, runtime)
    with pytest.raises(Unauthenticated):
        await later.verify(old_token)
    assert (await later.verify(issued.token)).subject_id == customer.id

    clock.advance(31)
    assert_refused(await me(client, old_token))
    assert (await me(client, issued.token)).status_code == 200
    assert [key["kid"] for key in (await client.get(JWKS)).json()["keys"]] == [new_kid]


async def test_a_second_rotation_drops_keys_whose_window_has_passed(
    conn: asyncpg.Connection, runtime: IdentityRuntime, customer: TestUser
) -> None:
    first_kid = await signing_kid(runtime)
    second_kid = await rotate_signing_key(conn, runtime.ring, token_ttl=TOKEN_TTL)
    await conn.execute(
        "UPDATE identity.signing_keys SET expires_at = now() - interval '1 second' WHERE kid = $1",
        first_kid,
    )
    third_kid = await rotate_signing_key(conn, runtime.ring, token_ttl=TOKEN_TTL)
    kids = {
        row["kid"]: row["retired_at"]
        for row in await conn.fetch("SELECT kid, retired_at FROM identity.signing_keys")
    }
    assert set(kids) == {second_kid, third_kid}
    assert kids[second_kid] is not None
    assert kids[third_kid] is None
    loaded = await fresh_tokens(conn, runtime).keys.current()
    assert loaded.signing_kid == third_kid
    assert set(loaded.verifying) == {second_kid, third_kid}
