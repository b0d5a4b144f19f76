"""Access tokens: only an EdDSA token signed by a current Mercato key, for our issuer and
audience, in its validity window, with every required claim and the account's current
session version, reads `GET /me`. Every other token answers 401 UNAUTHENTICATED."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from jwt.algorithms import OKPAlgorithm

from mercato.identity import IdentityRuntime
from mercato.identity import tokens as tokens_module
from mercato.identity.tokens import (
    LEEWAY_SECONDS,
)
from tests.factories import TestUser

ME = "/api/v1/me"
JWKS = "/.well-known/jwks.json"
TOKEN_TTL = timedelta(seconds=900)


# --- helpers ----------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(value: dict[str, Any]) -> str:
    return b64url(orjson.dumps(value))


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HMAC token made by hand: PyJWT (rightly) refuses PEM-looking HMAC secrets."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def eddsa(header: dict[str, Any], claims: dict[str, Any], key: Ed25519PrivateKey) -> str:
    """An EdDSA token made by hand, so the header may hold what PyJWT would not write."""
    signing_input = f"{segment({'alg': 'EdDSA', **header})}.{segment(claims)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(ME, headers={"Authorization": f"Bearer {token}"})


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "UNAUTHENTICATED", response.text


async def signing_kid(runtime: IdentityRuntime) -> str:
    return (await runtime.keys.current()).signing_kid


async def valid_claims(
    conn: asyncpg.Connection, runtime: IdentityRuntime, user_id: uuid.UUID
) -> dict[str, Any]:
    """Exactly the claims `AccessTokens.issue` would write for this user, now."""
    now = int(time.time())
    return {
        "iss": runtime.settings.jwt_issuer,
        "aud": runtime.settings.jwt_audience,
        "sub": str(user_id),
        "iat": now,
        "nbf": now,
        "exp": now + runtime.settings.access_token_seconds,
        "jti": uuid.uuid4().hex,
        "sv": await conn.fetchval(
            "SELECT session_version FROM identity.users WHERE id = $1", user_id
        ),
    }


async def sign_with_real_key(
    runtime: IdentityRuntime, claims: dict[str, Any], **headers: Any
) -> str:
    """A token signed with the live private key, the way the app signs its own."""
    loaded = await runtime.keys.current()
    return jwt.encode(
        claims,
        loaded.signing_key,
        algorithm="EdDSA",
        headers={"kid": loaded.signing_kid, **headers},
    )


# --- the legitimate paths ---------------------------------------------------------------


async def test_an_issued_token_reads_me(client: httpx.AsyncClient, customer: TestUser) -> None:
    response = await client.get(ME, headers=customer.headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["id"] == str(customer.id)


async def test_the_forging_helper_makes_tokens_the_app_accepts(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    customer: TestUser,
) -> None:
    """Control for the claim tests below: with untouched claims the forged token is good,
    so each refusal there is due to the one claim that case changes."""
    token = await sign_with_real_key(runtime, await valid_claims(conn, runtime, customer.id))
    response = await me(client, token)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["id"] == str(customer.id)


async def test_an_issued_token_has_the_pinned_header_and_every_claim(
    runtime: IdentityRuntime, customer: TestUser
) -> None:
    token = token_of(customer.headers)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == await signing_kid(runtime)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(tokens_module.REQUIRED_CLAIMS) <= claims.keys()
    assert claims["sub"] == str(customer.id)
    assert claims["exp"] - claims["iat"] == runtime.settings.access_token_seconds


async def test_expiry_within_the_leeway_is_tolerated(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    customer: TestUser,
) -> None:
    """Clock skew of a second or two between instances does not log anyone out."""
    claims = await valid_claims(conn, runtime, customer.id)
    claims.update(exp=int(time.time()) - 1, nbf=int(time.time()) + 1)
    response = await me(client, await sign_with_real_key(runtime, claims))
    assert response.status_code == 200, response.text


# --- forged algorithms and keys ---------------------------------------------------------


async def test_alg_none_is_refused(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    customer: TestUser,
) -> None:
    claims = await valid_claims(conn, runtime, customer.id)
    real_signature = token_of(customer.headers).rsplit(".", 1)[1]
    for alg in ("none", "None", "NONE", "nOnE"):
        for signature in ("", real_signature):
            header = {"alg": alg, "typ": "JWT", "kid": await signing_kid(runtime)}
            response = await me(client, f"{segment(header)}.{segment(claims)}.{signature}")
            assert response.status_code == 401, (alg, signature, response.text)
            assert response.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_alg_none_made_by_pyjwt_is_refused(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    customer: TestUser,
) -> None:
    claims = await valid_claims(conn, runtime, customer.id)
    token = jwt.encode(claims, "", algorithm="none", headers={"kid": await signing_kid(runtime)})
    assert token.endswith(".")
    assert_refused(await me(client, token))


def _public_key_secrets(jwk: dict[str, Any]) -> dict[str, bytes]:
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "raw-x-bytes": b64url_decode(jwk["x"]),
        "x-as-text": jwk["x"].encode(),
        "pem": pem,
        "pem-stripped": pem.strip(),
        "jwk-json": orjson.dumps(jwk),
    }


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_signed_with_the_public_key_is_refused(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    customer: TestUser,
    alg: str,
) -> None:
    """Algorithm confusion: the public key, which anyone can read from the JWKS, used as
    an HMAC secret must not produce a token we accept."""
    jwks = (await client.get(JWKS)).json()
    kid = await signing_kid(runtime)
    (jwk,) = [key for key in jwks["keys"] if key["kid"] == kid]
    claims = await valid_claims(conn, runtime, customer.id)
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    for name, secret in _public_key_secrets(jwk).items():
        header = {"alg": alg, "typ": "JWT", "kid": kid}
        signing_input = f"{segment(header)}.{segment(claims)}"
        signature = hmac.new(secret, signing_input.encode(), digest).digest()
        response = await me(client, f"{signing_input}.{b64url(signature)}")
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error"]["code"] == "UNAUTHENTICATED", name


async def test_hmac_token_claiming_eddsa_in_its_header_is_refused(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    customer: TestUser,
) -> None:
    """The header says EdDSA, the signature is an HMAC under the public key."""
    jwks = (await client.get(JWKS)).json()
    kid = await signing_kid(runtime)
    (jwk,) = [key for key in jwks["keys"] if key["kid"] == kid]
    claims = await valid_claims(conn, runtime, customer.id)
    for secret in _public_key_secrets(jwk).values():
        token = hs256({"alg": "EdDSA", "kid": kid}, claims, secret)
        assert_refused(await me(client, token))


async def test_rs256_signed_with_a_fresh_rsa_key_is_refused(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    customer: TestUser,
) -> None:
    rsa_key = generate_private_key(public_exponent=65537, key_size=2048)
    claims = await valid_claims(conn, runtime, customer.id)
    for alg in ("RS256", "PS256"):
        token = jwt.encode(
            claims, rsa_key, algorithm=alg, headers={"kid": await signing_kid(runtime)}
        )
        assert_refused(await me(client, token))


@pytest.mark.parametrize(
    "kid_choice",
    ["real-kid", "unknown-kid", "no-kid", "numeric-kid", "real-kid-with-embedded-jwk"],
)
async def test_a_token_from_another_ed25519_key_is_refused(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    customer: TestUser,
    kid_choice: str,
) -> None:
    foreign = Ed25519PrivateKey.generate()
    real_kid = await signing_kid(runtime)
    choices: dict[str, dict[str, Any]] = {
        "real-kid": {"kid": real_kid},
        "unknown-kid": {"kid": b64url(uuid.uuid4().bytes)},
        "no-kid": {},
        "numeric-kid": {"kid": 1},
        "real-kid-with-embedded-jwk": {
            "kid": real_kid,
            "jwk": OKPAlgorithm.to_jwk(foreign.public_key(), as_dict=True),
        },
    }
    claims = await valid_claims(conn, runtime, customer.id)
    token = eddsa(choices[kid_choice], claims, foreign)
    assert_refused(await me(client, token))


# --- claims, signed with the real key ---------------------------------------------------

Mutation = Callable[[dict[str, Any], int], object]

CLAIM_CASES: list[Any] = [
    pytest.param(lambda c, now: c.update(aud="someone-else"), id="wrong-aud"),
    pytest.param(lambda c, now: c.update(aud=["someone-else"]), id="wrong-aud-list"),
    pytest.param(lambda c, now: c.update(iss="https://evil.example"), id="wrong-iss"),
    pytest.param(lambda c, now: c.update(exp=now - LEEWAY_SECONDS - 30), id="expired"),
    pytest.param(
        lambda c, now: c.update(iat=now - 3600, nbf=now - 3600, exp=now - 1800),
        id="long-expired",
    ),
    pytest.param(lambda c, now: c.update(nbf=now + LEEWAY_SECONDS + 30), id="not-yet-valid"),
    pytest.param(lambda c, now: c.update(iat=now + LEEWAY_SECONDS + 30), id="issued-in-the-future"),
    pytest.param(lambda c, now: c.pop("jti"), id="missing-jti"),
    pytest.param(lambda c, now: c.pop("sv"), id="missing-sv"),
    pytest.param(lambda c, now: c.pop("exp"), id="missing-exp"),
    pytest.param(lambda c, now: c.pop("nbf"), id="missing-nbf"),
    pytest.param(lambda c, now: c.pop("iat"), id="missing-iat"),
    pytest.param(lambda c, now: c.pop("sub"), id="missing-sub"),
    pytest.param(lambda c, now: c.pop("iss"), id="missing-iss"),
    pytest.param(lambda c, now: c.pop("aud"), id="missing-aud"),
    pytest.param(lambda c, now: c.update(sub="admin"), id="sub-not-a-uuid"),
    pytest.param(lambda c, now: c.update(sub=str(uuid.uuid4())), id="sub-unknown-account"),
    pytest.param(lambda c, now: c.update(sv=c["sv"] + 1), id="sv-ahead"),
    pytest.param(lambda c, now: c.update(sv=c["sv"] - 1), id="sv-stale"),
    pytest.param(lambda c, now: c.update(sv="latest"), id="sv-not-a-number"),
    pytest.param(lambda c, now: c.update(jti=12345), id="jti-not-a-string"),
    pytest.param(lambda c, now: c.update(exp="never"), id="exp-not-a-number"),
]


@pytest.mark.parametrize("mutate", CLAIM_CASES)
async def test_a_properly_signed_token_with_bad_claims_is_refused(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    customer: TestUser,
    mutate: Mutation,
) -> None:
    claims = await valid_claims(conn, runtime, customer.id)
    mutate(claims, int(time.time()))
    assert_refused(await me(client, await sign_with_real_key(runtime, claims)))


async def test_tokens_of_a_deleted_account_are_refused(
    client: httpx.AsyncClient, conn: asyncpg.Connection, customer: TestUser
) -> None:
    await conn.execute("UPDATE identity.users SET deleted_at = now() WHERE id = $1", customer.id)
    assert_refused(await client.get(ME, headers=customer.headers))


# --- tampering --------------------------------------------------------------------------


async def test_a_payload_swapped_to_another_user_is_refused(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
    customer: TestUser,
    admin_user: TestUser,
) -> None:
    header, payload, signature = token_of(customer.headers).split(".")
    claims = orjson.loads(b64url_decode(payload))
    claims["sub"] = str(admin_user.id)
    forged = f"{header}.{segment(claims)}.{signature}"
    assert_refused(await me(client, forged))
    # ... while the victim's own token is fine, so it is the swap that was refused.
    assert (await client.get(ME, headers=admin_user.headers)).status_code == 200


async def test_a_payload_with_extended_expiry_is_refused(
    client: httpx.AsyncClient, customer: TestUser
) -> None:
    header, payload, signature = token_of(customer.headers).split(".")
    claims = orjson.loads(b64url_decode(payload))
    claims["exp"] += 86_400
    assert_refused(await me(client, f"{header}.{segment(claims)}.{signature}"))


async def test_a_header_swapped_to_another_kid_is_refused(
    client: httpx.AsyncClient, customer: TestUser
) -> None:
    header, payload, signature = token_of(customer.headers).split(".")
    fields = orjson.loads(b64url_decode(header))
    fields["kid"] = "not-" + fields["kid"]
    assert_refused(await me(client, f"{segment(fields)}.{payload}.{signature}"))


async def test_a_tampered_signature_is_refused(
    client: httpx.AsyncClient, customer: TestUser
) -> None:
    header, payload, signature = token_of(customer.headers).split(".")
    original = b64url_decode(signature)
    assert len(original) == 64  # an Ed25519 signature: R (32 bytes) then S (32 bytes)
    for position in (0, 1, 31, 32, 62, 63):
        raw = bytearray(original)
        raw[position] ^= 0x01
        response = await me(client, f"{header}.{payload}.{b64url(bytes(raw))}")
        assert response.status_code == 401, (position, response.text)
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_a_truncated_or_extended_signature_is_refused(
    client: httpx.AsyncClient, customer: TestUser
) -> None:
    header, payload, signature = token_of(customer.headers).split(".")
    raw = b64url_decode(signature)
    for changed in (raw[:-1], raw + b"\0", b""):
        assert_refused(await me(client, f"{header}.{payload}.{b64url(changed)}"))


MALFORMED = ["", "garbage", "a.b.c", "..", "e30.e30.", "eyJhbGciOiJFZERTQSJ9", "mk_short_secret"]


async def test_malformed_credentials_are_refused(client: httpx.AsyncClient) -> None:
    for credential in MALFORMED:
        response = await client.get(ME, headers={"Authorization": f"Bearer {credential}"})
        assert response.status_code == 401, (credential, response.text)
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_a_token_under_another_scheme_is_not_accepted(
    client: httpx.AsyncClient, customer: TestUser
) -> None:
    response = await client.get(
        ME, headers={"Authorization": f"Token {token_of(customer.headers)}"}
    )
    assert_refused(response)
