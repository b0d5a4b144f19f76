"""Session use cases: log in, refresh, log out, log out everywhere.

A login yields a short-lived access token and an opaque refresh token. Each refresh spends
the token and issues the next one of the same family; presenting a spent token again means
it was copied, so the whole family is revoked (RFC 9700's reuse detection). A family never
outlives the absolute lifetime set at login.

Failed logins are throttled per account and per address with an exponential delay, and the
throttle answers before any password work is done.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from mercato.core.database import Database, Executor
from mercato.core.errors import TooManyAttempts
from mercato.identity import audit, repository
from mercato.identity.audit import RequestMeta
from mercato.identity.errors import InvalidCredentials, InvalidRefreshToken, RefreshTokenReused
from mercato.identity.runtime import IdentityRuntime, secret_hash


@dataclass(frozen=True, slots=True)
class Session:
    user_id: uuid.UUID
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_at: datetime

    def json(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_at": self.refresh_expires_at.isoformat(),
        }


async def start_session(
    conn: Executor,
    runtime: IdentityRuntime,
    user_id: uuid.UUID,
    *,
    session_version: int,
    family_id: uuid.UUID | None = None,
    family_expires_at: datetime | None = None,
) -> Session:
    refresh = secrets.token_urlsafe(32)
    expires_at = family_expires_at or datetime.now(UTC) + runtime.refresh_lifetime
    await repository.insert_refresh_token(
        conn,
        token_hash=secret_hash(refresh),
        family_id=family_id or uuid.uuid4(),
        user_id=user_id,
        expires_at=expires_at,
    )
    access = await runtime.tokens.issue(user_id, session_version=session_version)
    return Session(user_id, access.token, access.expires_in, refresh, expires_at)


# Attempts on one account, whatever their outcome and however many addresses send them:
# the lockout counts failures only once each verification ends, so without this cap a
# burst of parallel guesses would all pass the lock check before the first one fails.
ATTEMPTS_PER_ACCOUNT = "10/10 seconds"


async def check_attempt_allowed(runtime: IdentityRuntime, account_key: str, *others: str) -> None:
    wait = await runtime.throttle.retry_after(account_key, *others)
    if wait is not None:
        raise TooManyAttempts(retry_after=wait)
    decision = await runtime.throttle.limiter.hit(ATTEMPTS_PER_ACCOUNT, "attempts", account_key)
    if not decision.allowed:
        raise TooManyAttempts(retry_after=decision.reset_after)


def _throttle_keys(runtime: IdentityRuntime, email: str, meta: RequestMeta) -> tuple[str, str]:
    account = runtime.blind_index.email(email).hex()[:32]
    return f"login:account:{account}", f"login:ip:{meta.ip or 'unknown'}"


async def login(
    db: Database, runtime: IdentityRuntime, email: str, password: str, meta: RequestMeta
) -> Session:
    keys = _throttle_keys(runtime, email, meta)
    await check_attempt_allowed(runtime, *keys)
    row = await repository.find_user_by_email(db.reader, runtime.blind_index.email(email))
    verdict = await runtime.passwords.verify_or_burn(
        row["password_hash"] if row is not None else None, password
    )
    if row is None or not verdict.ok:
        await runtime.throttle.record_failure(*keys)
        async with db.transaction() as conn:
            await audit.record(
                conn,
                "login",
                meta=meta,
                subject_id=row["id"] if row is not None else None,
                outcome="failure",
            )
        raise InvalidCredentials()
    await runtime.throttle.reset(keys[0])
    async with db.transaction() as conn:
        if verdict.new_hash is not None:  # the hashing parameters changed since last time
            await repository.update_user(conn, row["id"], {"password_hash": verdict.new_hash})
            await audit.record(conn, "password.rehashed", meta=meta, subject_id=row["id"])
        session = await start_session(
            conn, runtime, row["id"], session_version=row["session_version"]
        )
        await audit.record(conn, "login", meta=meta, actor_id=row["id"], subject_id=row["id"])
    return session


async def refresh(
    db: Database, runtime: IdentityRuntime, refresh_token: str, meta: RequestMeta
) -> Session:
    token_hash = secret_hash(refresh_token)
    async with db.transaction() as conn:
        spent = await repository.spend_refresh_token(conn, token_hash)
        if spent is not None:
            user = await repository.get_user(conn, spent["user_id"])
            if user is None:
                raise InvalidRefreshToken()
            return await start_session(
                conn,
                runtime,
                spent["user_id"],
                session_version=user["session_version"],
                family_id=spent["family_id"],
                family_expires_at=spent["expires_at"],
            )
        known = await repository.find_refresh_token(conn, token_hash)
        reused = known is not None and known["used_at"] is not None
        if reused and known["revoked_at"] is None:  # the first to notice revokes and records
            await repository.revoke_family(conn, known["family_id"])
            await audit.record(
                conn,
                "refresh_token.reuse_detected",
                meta=meta,
                subject_id=known["user_id"],
                outcome="family_revoked",
                details={"family_id": str(known["family_id"])},
            )
    # Raised after the commit: the revocation and its audit entry must stay.
    if reused:
        raise RefreshTokenReused()
    raise InvalidRefreshToken()


async def logout(db: Database, refresh_token: str, meta: RequestMeta) -> None:
    async with db.transaction() as conn:
        known = await repository.find_refresh_token(conn, secret_hash(refresh_token))
        if known is None:
            return  # logging out twice, or with a stale token, is not an error
        await repository.revoke_family(conn, known["family_id"])
        await audit.record(
            conn, "logout", meta=meta, actor_id=known["user_id"], subject_id=known["user_id"]
        )


async def logout_everywhere(db: Database, user_id: uuid.UUID, meta: RequestMeta) -> None:
    async with db.transaction() as conn:
        await repository.bump_session_version(conn, user_id)
        await repository.revoke_user_refresh_tokens(conn, user_id)
        await audit.record(
            conn, "logout_everywhere", meta=meta, actor_id=user_id, subject_id=user_id
        )
