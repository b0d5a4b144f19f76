"""Access tokens: EdDSA-signed JWTs under a rotating key set, published as a JWKS.

The algorithm is pinned: a token is verified only as EdDSA with the Ed25519 key its `kid`
names, so `alg: none`, HMAC-with-the-public-key and RSA tricks fail before any claim is
read. Every claim we rely on is required: `iss`, `aud`, `sub`, `iat`, `nbf`, `exp`, `jti`
and `sv` (the account's session version, which ends all of an account's tokens at once).

Keys live in the database (private halves sealed under the data key ring), so every
instance signs with the same key and `mercato keys rotate` reaches all of them: an
instance reloads the set every `refresh_seconds`, and at once (throttled) when it meets a
`kid` it does not know.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from mercato.core.crypto import DataKeyRing
from mercato.core.database import Executor
from mercato.core.errors import Unauthenticated
from mercato.identity import signing_key_repository

ALGORITHM = "EdDSA"
LEEWAY_SECONDS = 5
REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "sv"]
KEY_LOCK = 0x6D65726361746F10  # "mercato" + 0x10: one key creation or rotation at a time


def signing_key_context(kid: str) -> bytes:
    return f"identity.signing_keys:{kid}".encode()


async def create_signing_key(conn: Executor, ring: DataKeyRing) -> str:
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode().rstrip("=")
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk.update(kid=kid, alg=ALGORITHM, use="sig")
    pkcs8 = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    sealed = ring.seal(base64.b64encode(pkcs8).decode(), context=signing_key_context(kid))
    await signing_key_repository.insert_signing_key(
        conn, kid=kid, algorithm=ALGORITHM, jwk=jwk, sealed=sealed
    )
    return kid


async def ensure_signing_key(conn: Executor, ring: DataKeyRing) -> None:
    """Create the first key if there is none (several instances may start together)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", KEY_LOCK)
    if await signing_key_repository.active_signing_kid(conn) is None:
        await create_signing_key(conn, ring)


async def rotate_signing_key(conn: Executor, ring: DataKeyRing, *, token_ttl: timedelta) -> str:
    """Sign with a new key from now on; the old one verifies until its tokens expire."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", KEY_LOCK)
    grace = token_ttl + timedelta(seconds=LEEWAY_SECONDS + 60)
    await signing_key_repository.retire_signing_keys(conn, verify_for=grace)
    await signing_key_repository.delete_expired_signing_keys(conn)
    return await create_signing_key(conn, ring)


@dataclass(frozen=True, slots=True)
class _Loaded:
    signing_kid: str
    signing_key: Ed25519PrivateKey
    verifying: dict[str, Ed25519PublicKey]
    jwks: dict[str, Any]
    loaded_at: float


class KeySet:
    def __init__(self, reader: Executor, ring: DataKeyRing, *, refresh_seconds: float = 30) -> None:
        self._reader = reader
        self._ring = ring
        self._refresh_seconds = refresh_seconds
        self._loaded: _Loaded | None = None

    async def current(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None or time.monotonic() - loaded.loaded_at > self._refresh_seconds:
            loaded = await self._load()
        return loaded

    async def verifying_key(self, kid: str) -> Ed25519PublicKey | None:
        loaded = await self.current()
        key = loaded.verifying.get(kid)
        if key is None and time.monotonic() - loaded.loaded_at > 1.0:
            key = (await self._load()).verifying.get(kid)  # perhaps rotated a moment ago
        return key

    async def _load(self) -> _Loaded:
        rows = await signing_key_repository.usable_signing_keys(self._reader)
        verifying: dict[str, Ed25519PublicKey] = {}
        signing: tuple[str, Ed25519PrivateKey] | None = None
        for row in rows:
            public = OKPAlgorithm.from_jwk(row["public_jwk"])
            assert isinstance(public, Ed25519PublicKey)
            verifying[row["kid"]] = public
            if row["retired_at"] is None and signing is None:
                der = self._ring.open(row["private_key"], context=signing_key_context(row["kid"]))
                private = serialization.load_der_private_key(base64.b64decode(der), None)
                assert isinstance(private, Ed25519PrivateKey)
                signing = (row["kid"], private)
        if signing is None:
            raise RuntimeError("no active signing key: run `mercato keys rotate`")
        jwks = {"keys": [row["public_jwk"] for row in rows]}
        self._loaded = _Loaded(signing[0], signing[1], verifying, jwks, time.monotonic())
        return self._loaded


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class AccessClaims:
    subject_id: uuid.UUID
    jti: str
    session_version: int


class AccessTokens:
    """Issues and verifies access tokens.

    A client sends the same token with every request for up to 15 minutes, and an EdDSA
    verification costs more CPU than the product read it guards. Verified tokens are
    therefore remembered (the whole token string, signature included, is the key; the
    entry ends at the token's `exp`): a forged or altered token never matches an entry,
    and revocation does not depend on this cache (the session version is read from the
    database on every request).
    """

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        remembered: int = 10_000,
    ) -> None:
        self.keys = keys
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds
        self._remembered = remembered
        self._verified: dict[str, tuple[AccessClaims, float, str]] = {}

    async def issue(self, subject_id: uuid.UUID, *, session_version: int) -> IssuedToken:
        loaded = await self.keys.current()
        now = datetime.now(UTC)
        jti = uuid.uuid4().hex
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(subject_id),
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(seconds=self._ttl),
            "jti": jti,
            "sv": session_version,
        }
        token = jwt.encode(
            claims, loaded.signing_key, algorithm=ALGORITHM, headers={"kid": loaded.signing_kid}
        )
        return IssuedToken(token=token, jti=jti, expires_in=self._ttl)

    async def verify(self, token: str) -> AccessClaims:
        known = self._verified.get(token)
        if known is not None:
            claims, expires_at, kid = known
            # Still unexpired, and its key still in the set (a removed key ends its tokens).
            if (
                time.time() < expires_at + LEEWAY_SECONDS
                and kid in (await self.keys.current()).verifying
            ):
                return claims
            del self._verified[token]
        claims, expires_at, kid = await self._verify(token)
        if len(self._verified) >= self._remembered:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = (claims, expires_at, kid)
        return claims

    async def _verify(self, token: str) -> tuple[AccessClaims, float, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("The access token is malformed.") from exc
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise Unauthenticated("The access token is not signed with a Mercato key.")
        key = await self.keys.verifying_key(kid)
        if key is None:
            raise Unauthenticated("The access token's signing key is unknown or expired.")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
            subject = uuid.UUID(claims["sub"])
            session_version = int(claims["sv"])
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("The access token has expired.") from exc
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise Unauthenticated("The access token is not valid.") from exc
        verified = AccessClaims(
            subject_id=subject, jti=str(claims["jti"]), session_version=session_version
        )
        return verified, float(claims["exp"]), kid
