"""The identity context's long-lived collaborators, built once per app from settings.

`IdentityRuntime.authenticate` is the app's `Authenticator`: it turns a bearer credential
(an access token or an API key) into a `Principal`, reading the account's current roles
on every request so that a role change or a revoked session takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import timedelta

from mercato.core.config import Settings
from mercato.core.crypto import BlindIndex, DataKeyRing
from mercato.core.database import Database
from mercato.core.errors import Unauthenticated
from mercato.core.mail import Mailer
from mercato.core.ratelimit import FailureThrottle
from mercato.core.security import Principal
from mercato.identity import repository
from mercato.identity.notices import MailQueue
from mercato.identity.passwords import Passwords
from mercato.identity.roles import effective_permissions
from mercato.identity.tokens import AccessTokens, KeySet

API_KEY_PREFIX = "mk_"


def secret_hash(secret: str) -> bytes:
    """Refresh tokens, one-time tokens and API keys are 256-bit random values: a plain
    SHA-256 is enough to store them (no password-style stretching needed)."""
    return hashlib.sha256(secret.encode()).digest()


def parse_api_key(credential: str) -> tuple[str, str] | None:
    """`mk_<prefix>_<secret>` → (prefix, secret)."""
    if not credential.startswith(API_KEY_PREFIX):
        return None
    prefix, sep, secret = credential[len(API_KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != 12 or not secret:
        return None
    return prefix, secret


class IdentityRuntime:
    def __init__(
        self, settings: Settings, db: Database, *, mailer: Mailer, throttle: FailureThrottle
    ) -> None:
        assert settings.data_keys is not None, "settings.with_local_secrets() fills it"
        assert settings.blind_index_key is not None, "settings.with_local_secrets() fills it"
        self.settings = settings
        self.db = db
        self.ring = DataKeyRing.parse(settings.data_keys.get_secret_value())
        self.blind_index = BlindIndex(settings.blind_index_key.get_secret_value().encode())
        self.passwords = Passwords(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        )
        self.keys = KeySet(db.reader, self.ring)
        self.tokens = AccessTokens(
            self.keys,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=settings.access_token_seconds,
        )
        self.mail = MailQueue(mailer)
        self.throttle = throttle

    @property
    def refresh_lifetime(self) -> timedelta:
        return timedelta(days=self.settings.refresh_token_days)

    def link(self, path: str, token: str) -> str:
        return f"{self.settings.public_base_url.rstrip('/')}{path}?token={token}"

    async def authenticate(self, credential: str) -> Principal:
        api_key = parse_api_key(credential)
        if api_key is not None:
            return await self._authenticate_api_key(*api_key)
        claims = await self.tokens.verify(credential)
        row = await repository.principal_row(self.db.reader, claims.subject_id)
        if row is None:
            raise Unauthenticated("The account no longer exists.")
        if row["session_version"] != claims.session_version:
            raise Unauthenticated("This session has ended; log in again.")
        return Principal(
            subject_id=claims.subject_id,
            kind="user",
            permissions=effective_permissions(row["roles"], row["permissions"]),
            roles=frozenset(row["roles"]),
            credential_id=claims.jti,
        )

    async def _authenticate_api_key(self, prefix: str, secret: str) -> Principal:
        key = await repository.api_key_by_prefix(self.db.reader, prefix)
        # Compare even when no key matched, so timing does not tell which prefixes exist.
        expected = key["secret_hash"] if key is not None else b"\0" * 32
        if not hmac.compare_digest(expected, secret_hash(secret)) or key is None:
            raise Unauthenticated("The API key is invalid, expired or revoked.")
        owner: uuid.UUID = key["owner_id"]
        row = await repository.principal_row(self.db.reader, owner)
        if row is None:
            raise Unauthenticated("The API key's owner no longer exists.")
        held = effective_permissions(row["roles"], row["permissions"])
        return Principal(
            subject_id=owner,
            kind="api_key",
            permissions=held & frozenset(key["scopes"]),
            credential_id=str(key["id"]),
        )
