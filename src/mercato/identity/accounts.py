"""Account use cases: register, verify, profile, password change and reset, deletion.

Use cases run in the caller's transaction and return the mail to send once it commits.
Every answer that could reveal whether an address has an account (registration, forgotten
password) is the same either way, and costs the same password-hashing work.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from mercato.core.database import Executor
from mercato.core.errors import PreconditionFailed, TooManyAttempts, ValidationFailed
from mercato.core.mail import Message
from mercato.events import EventDraft, record_events
from mercato.identity import audit, events, repository
from mercato.identity.audit import RequestMeta
from mercato.identity.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidOneTimeToken,
    UserNotFound,
)
from mercato.identity.notices import (
    already_registered_mail,
    password_changed_mail,
    reset_mail,
    verification_mail,
)
from mercato.identity.passwords import password_problems
from mercato.identity.roles import ADMIN, CUSTOMER
from mercato.identity.runtime import IdentityRuntime, secret_hash
from mercato.identity.schemas import PasswordChange, ProfileUpdate, Registration

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"  # noqa: S105 (a token purpose, not a secret)
SEALED_FIELDS = ("email", "first_name", "last_name", "phone", "address")


def _context(user_id: uuid.UUID, field: str) -> bytes:
    return f"identity.users.{field}:{user_id}".encode()


def seal_fields(
    runtime: IdentityRuntime, user_id: uuid.UUID, plain: dict[str, Any]
) -> dict[str, Any]:
    """Seal personal fields (all of SEALED_FIELDS present in `plain`) for storage."""
    sealed: dict[str, Any] = {}
    for field in SEALED_FIELDS:
        if field in plain:
            value = plain[field]
            text = orjson.dumps(value).decode() if isinstance(value, dict) else value
            sealed[field] = runtime.ring.seal_optional(text, context=_context(user_id, field))
    sealed["data_key_version"] = runtime.ring.active_version
    return sealed


def open_fields(runtime: IdentityRuntime, row: Any) -> dict[str, Any]:
    user_id = row["id"]
    plain = {
        field: runtime.ring.open_optional(row[field], context=_context(user_id, field))
        for field in SEALED_FIELDS
    }
    if plain["address"] is not None:
        plain["address"] = orjson.loads(plain["address"])
    return plain


def user_json(runtime: IdentityRuntime, row: Any) -> dict[str, Any]:
    plain = open_fields(runtime, row)
    return {
        "id": str(row["id"]),
        "email": plain["email"],
        "first_name": plain["first_name"],
        "last_name": plain["last_name"],
        "phone": plain["phone"],
        "address": plain["address"],
        "email_verified": row["email_verified_at"] is not None,
        "roles": list(row["roles"]),
        "version": row["version"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def check_new_password(password: str, *, personal: list[str], field: str) -> None:
    problems = password_problems(password, personal=personal)
    if problems:
        raise ValidationFailed(
            "The password is not acceptable.",
            details=[{"field": field, "message": problem} for problem in problems],
        )


async def _one_time_token(conn: Executor, user_id: uuid.UUID, purpose: str, ttl: timedelta) -> str:
    token = secrets.token_urlsafe(32)
    await repository.insert_one_time_token(
        conn, token_hash=secret_hash(token), purpose=purpose, user_id=user_id, ttl=ttl
    )
    return token


async def register(
    conn: Executor, runtime: IdentityRuntime, data: Registration, meta: RequestMeta
) -> list[Message]:
    email = str(data.email)
    check_new_password(
        data.password, personal=[email, data.first_name, data.last_name], field="body.password"
    )
    password_hash = await runtime.passwords.hash(data.password)  # hashed either way
    email_index = runtime.blind_index.email(email)
    user_id = uuid.uuid4()
    sealed = seal_fields(
        runtime,
        user_id,
        {
            "email": email,
            "first_name": data.first_name,
            "last_name": data.last_name,
            "phone": data.phone,
            "address": None,
        },
    )
    row = await repository.insert_user(
        conn, {**sealed, "id": user_id, "email_index": email_index}, password_hash=password_hash
    )
    if row is None:
        return await _already_registered(conn, runtime, email, email_index, meta)
    await repository.set_user_roles(conn, user_id, [CUSTOMER])
    row = await repository.get_user(conn, user_id)
    token = await _one_time_token(
        conn, user_id, VERIFY_EMAIL, timedelta(hours=runtime.settings.verify_email_hours)
    )
    await record_events(conn, [events.user_event(events.USER_REGISTERED, row)])
    await audit.record(conn, "user.registered", meta=meta, actor_id=user_id, subject_id=user_id)
    return [verification_mail(email, link=runtime.link("/verify-email", token))]


async def _already_registered(
    conn: Executor, runtime: IdentityRuntime, email: str, email_index: bytes, meta: RequestMeta
) -> list[Message]:
    """The answer stays "check your mail"; the owner gets a notice and a reset link."""
    existing = await repository.find_user_by_email(conn, email_index)
    if existing is None:  # deleted between the insert and this read
        return []
    token = await _one_time_token(conn, existing["id"], RESET_PASSWORD, _reset_ttl(runtime))
    await audit.record(
        conn, "user.register_existing", meta=meta, subject_id=existing["id"], outcome="refused"
    )
    return [already_registered_mail(email, reset_link=runtime.link("/reset-password", token))]


def _reset_ttl(runtime: IdentityRuntime) -> timedelta:
    return timedelta(minutes=runtime.settings.password_reset_minutes)


async def verify_email(conn: Executor, token: str, meta: RequestMeta) -> None:
    spent = await repository.spend_one_time_token(conn, secret_hash(token), VERIFY_EMAIL)
    if spent is None:
        raise InvalidOneTimeToken()
    user_id = spent["user_id"]
    row = await repository.get_user(conn, user_id, for_update=True)
    if row is None:
        raise InvalidOneTimeToken()
    if row["email_verified_at"] is None:
        row = await repository.update_user(conn, user_id, {"email_verified_at": datetime.now(UTC)})
        await record_events(conn, [events.user_event(events.USER_UPDATED, row)])
    await audit.record(conn, "user.email_verified", meta=meta, actor_id=user_id, subject_id=user_id)


async def resend_verification(
    conn: Executor, runtime: IdentityRuntime, user_id: uuid.UUID
) -> list[Message]:
    row = await repository.get_user(conn, user_id)
    if row is None:
        raise UserNotFound()
    if row["email_verified_at"] is not None:
        return []
    await repository.spend_all_one_time_tokens(conn, user_id, VERIFY_EMAIL)
    token = await _one_time_token(
        conn, user_id, VERIFY_EMAIL, timedelta(hours=runtime.settings.verify_email_hours)
    )
    email = open_fields(runtime, row)["email"]
    return [verification_mail(email, link=runtime.link("/verify-email", token))]


async def forgot_password(
    conn: Executor, runtime: IdentityRuntime, email: str, meta: RequestMeta
) -> list[Message]:
    row = await repository.find_user_by_email(conn, runtime.blind_index.email(email))
    if row is None:
        await audit.record(conn, "password.reset_requested", meta=meta, outcome="unknown_account")
        return []
    await repository.spend_all_one_time_tokens(conn, row["id"], RESET_PASSWORD)
    token = await _one_time_token(conn, row["id"], RESET_PASSWORD, _reset_ttl(runtime))
    await audit.record(conn, "password.reset_requested", meta=meta, subject_id=row["id"])
    minutes = int(runtime.settings.password_reset_minutes)
    return [reset_mail(email, link=runtime.link("/reset-password", token), minutes=minutes)]


async def _set_password(
    conn: Executor, runtime: IdentityRuntime, row: Any, new_password: str, *, field: str
) -> None:
    plain = open_fields(runtime, row)
    check_new_password(
        new_password,
        personal=[plain["email"], plain["first_name"], plain["last_name"]],
        field=field,
    )
    new_hash = await runtime.passwords.hash(new_password)
    await repository.update_user(conn, row["id"], {"password_hash": new_hash})
    # Every session ends: access tokens by their session version, refresh tokens by revocation.
    await repository.bump_session_version(conn, row["id"])
    await repository.revoke_user_refresh_tokens(conn, row["id"])
    await repository.spend_all_one_time_tokens(conn, row["id"], RESET_PASSWORD)


async def reset_password(
    conn: Executor, runtime: IdentityRuntime, token: str, new_password: str, meta: RequestMeta
) -> list[Message]:
    spent = await repository.spend_one_time_token(conn, secret_hash(token), RESET_PASSWORD)
    if spent is None:
        raise InvalidOneTimeToken()
    row = await repository.get_user(conn, spent["user_id"], for_update=True)
    if row is None:
        raise InvalidOneTimeToken()
    # A weak password raises here and rolls the transaction back: the link stays usable.
    await _set_password(conn, runtime, row, new_password, field="body.new_password")
    await audit.record(conn, "password.reset", meta=meta, actor_id=row["id"], subject_id=row["id"])
    return [password_changed_mail(open_fields(runtime, row)["email"])]


async def change_password(
    conn: Executor,
    runtime: IdentityRuntime,
    user_id: uuid.UUID,
    data: PasswordChange,
    meta: RequestMeta,
) -> list[Message]:
    row = await repository.get_user(conn, user_id, for_update=True)
    if row is None:
        raise UserNotFound()
    await confirm_password(runtime, row, data.current_password)
    await _set_password(conn, runtime, row, data.new_password, field="body.new_password")
    await audit.record(conn, "password.changed", meta=meta, actor_id=user_id, subject_id=user_id)
    return [password_changed_mail(open_fields(runtime, row)["email"])]


async def get_profile(conn: Executor, user_id: uuid.UUID) -> Any:
    row = await repository.get_user(conn, user_id)
    if row is None:
        raise UserNotFound()
    return row


async def update_profile(
    conn: Executor,
    runtime: IdentityRuntime,
    user_id: uuid.UUID,
    data: ProfileUpdate,
    *,
    expected_version: int | None,
    actor_id: uuid.UUID,
    meta: RequestMeta,
) -> Any:
    try:
        changes = data.changes()
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from exc
    row = await repository.get_user(conn, user_id, for_update=True)
    if row is None:
        raise UserNotFound()
    if expected_version is not None and row["version"] != expected_version:
        raise PreconditionFailed()
    if not changes:
        return row
    sealed = seal_fields(runtime, user_id, changes)
    if sealed["data_key_version"] != row["data_key_version"]:
        # The row must stay sealed under one key: reseal the fields not being changed.
        sealed = seal_fields(runtime, user_id, {**open_fields(runtime, row), **changes})
    row = await repository.update_user(conn, user_id, sealed)
    await record_events(conn, [events.user_event(events.USER_UPDATED, row)])
    await audit.record(
        conn,
        "user.updated",
        meta=meta,
        actor_id=actor_id,
        subject_id=user_id,
        details={"fields": sorted(changes)},
    )
    return row


async def delete_account(
    conn: Executor,
    user_id: uuid.UUID,
    *,
    actor_id: uuid.UUID,
    meta: RequestMeta,
    expected_version: int | None = None,
) -> None:
    row = await repository.get_user(conn, user_id, for_update=True)
    if row is None:
        raise UserNotFound()
    if expected_version is not None and row["version"] != expected_version:
        raise PreconditionFailed()
    row = await repository.soft_delete_user(conn, user_id)
    await repository.revoke_user_refresh_tokens(conn, user_id)
    drafts: list[EventDraft] = [events.user_event(events.USER_DELETED, row)]
    await record_events(conn, drafts)
    await audit.record(conn, "user.deleted", meta=meta, actor_id=actor_id, subject_id=user_id)


async def confirm_password(runtime: IdentityRuntime, row: Any, password: str) -> None:
    """Check a signed-in user's password (changing it, deleting the account), with the
    login's lockout: a stolen access token must not become a password-guessing oracle."""
    key = f"confirm:account:{row['id']}"
    wait = await runtime.throttle.retry_after(key)
    if wait is not None:
        raise TooManyAttempts(retry_after=wait)
    verdict = await runtime.passwords.verify(row["password_hash"], password)
    if not verdict.ok:
        await runtime.throttle.record_failure(key)
        raise InvalidCredentials("The password is incorrect.")
    await runtime.throttle.reset(key)


async def create_administrator(
    conn: Executor,
    runtime: IdentityRuntime,
    *,
    email: str,
    password: str,
    first_name: str,
    last_name: str,
) -> Any:
    """The first administrator (`mercato users create-admin`): verified, role `admin`."""
    check_new_password(password, personal=[email, first_name, last_name], field="password")
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
    created = await repository.insert_user(
        conn,
        {**sealed, "id": user_id, "email_index": runtime.blind_index.email(email)},
        password_hash=await runtime.passwords.hash(password),
    )
    if created is None:
        raise EmailTaken()
    await repository.set_user_roles(conn, user_id, [ADMIN])
    row = await repository.update_user(conn, user_id, {"email_verified_at": datetime.now(UTC)})
    await record_events(conn, [events.user_event(events.USER_REGISTERED, row)])
    await audit.record(
        conn, "user.admin_created", meta=audit.SYSTEM, subject_id=user_id, details={"via": "cli"}
    )
    return row
