"""Identity's HTTP routes for everyone: sign-up, sessions, passwords, one's own account.

Handlers translate HTTP to a use case and back; mail leaves only after the commit.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from mercato.core.access import (
    AUTHENTICATED,
    PUBLIC,
    add_route,
    current_principal,
    route_adder,
)
from mercato.core.deps import database
from mercato.core.errors import Forbidden
from mercato.core.http import envelope, expected_version, json_with_etag, version_etag
from mercato.core.observability import request_id_var
from mercato.identity import accounts, repository, sessions
from mercato.identity.audit import RequestMeta
from mercato.identity.runtime import IdentityRuntime
from mercato.identity.schemas import (
    AcceptedEnvelope,
    AccountDeletion,
    ForgotPassword,
    Login,
    PasswordChange,
    PasswordReset,
    ProfileUpdate,
    RefreshRequest,
    Registration,
    TokenEnvelope,
    TokenInput,
    UserEnvelope,
)

REGISTERED = "If this address can receive mail, a message with the next step is on its way."
RESET_SENT = "If an account uses this address, a reset link is on its way."

# Unsafe requests to these paths also count against the strict per-address limit: each
# checks a password or sends mail. (`/me` covers deleting the account, which does both.)
SENSITIVE_PATHS = (
    "/auth/register",
    "/auth/login",
    "/auth/password/forgot",
    "/auth/password/reset",
    "/me/password",
    "/me",
)


def runtime_of(request: Request) -> IdentityRuntime:
    runtime: IdentityRuntime = request.app.state.identity
    return runtime


def request_meta(request: Request) -> RequestMeta:
    return RequestMeta(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        request_id=request_id_var.get(),
    )


# Answers carrying tokens or personal data must not be kept by browsers or proxies
# (RFC 6749 §5.1 for tokens).
PRIVATE = {"cache-control": "no-store", "pragma": "no-cache"}


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(envelope(data)),
        status_code=status,
        media_type="application/json",
        headers=PRIVATE,
    )


def user_response(runtime: IdentityRuntime, row: Any) -> Response:
    body = orjson.dumps(envelope(accounts.user_json(runtime, row)))
    response = json_with_etag(body, version_etag(row["version"]))
    response.headers.update(PRIVATE)
    return response


# --- sign-up and sessions ---------------------------------------------------------------


async def register(request: Request, data: Registration) -> Response:
    runtime = runtime_of(request)
    async with database(request).transaction() as conn:
        mail = await accounts.register(conn, runtime, data, request_meta(request))
    runtime.mail.send_later(mail)
    return _json({"message": REGISTERED}, status=202)


async def verify_email(request: Request, data: TokenInput) -> Response:
    async with database(request).transaction() as conn:
        await accounts.verify_email(conn, data.token, request_meta(request))
    return Response(status_code=204)


async def resend_verification(request: Request) -> Response:
    runtime = runtime_of(request)
    principal = current_principal(request)
    async with database(request).transaction() as conn:
        mail = await accounts.resend_verification(conn, runtime, principal.subject_id)
    runtime.mail.send_later(mail)
    return _json({"message": REGISTERED}, status=202)


async def login(request: Request, data: Login) -> Response:
    session = await sessions.login(
        database(request),
        runtime_of(request),
        str(data.email),
        data.password,
        request_meta(request),
    )
    return _json(session.json())


async def refresh(request: Request, data: RefreshRequest) -> Response:
    session = await sessions.refresh(
        database(request), runtime_of(request), data.refresh_token, request_meta(request)
    )
    return _json(session.json())


async def logout(request: Request, data: RefreshRequest) -> Response:
    await sessions.logout(database(request), data.refresh_token, request_meta(request))
    return Response(status_code=204)


async def logout_everywhere(request: Request) -> Response:
    principal = current_principal(request)
    if principal.kind != "user":
        raise Forbidden("API keys have no sessions to end.")
    await sessions.logout_everywhere(database(request), principal.subject_id, request_meta(request))
    return Response(status_code=204)


async def forgot_password(request: Request, data: ForgotPassword) -> Response:
    runtime = runtime_of(request)
    async with database(request).transaction() as conn:
        mail = await accounts.forgot_password(conn, runtime, str(data.email), request_meta(request))
    runtime.mail.send_later(mail)
    return _json({"message": RESET_SENT}, status=202)


async def reset_password(request: Request, data: PasswordReset) -> Response:
    runtime = runtime_of(request)
    async with database(request).transaction() as conn:
        mail = await accounts.reset_password(
            conn, runtime, data.token, data.new_password, request_meta(request)
        )
    runtime.mail.send_later(mail)
    return Response(status_code=204)


# --- one's own account ------------------------------------------------------------------


def _own_user_id(request: Request) -> Any:
    principal = current_principal(request)
    if principal.kind != "user":
        raise Forbidden("This acts on a person's own account; API keys have none.")
    return principal.subject_id


async def read_me(request: Request) -> Response:
    user_id = _own_user_id(request)
    row = await accounts.get_profile(database(request).reader, user_id)
    return user_response(runtime_of(request), row)


async def update_me(request: Request, data: ProfileUpdate) -> Response:
    user_id = _own_user_id(request)
    runtime = runtime_of(request)
    version = expected_version(request, required=False)
    async with database(request).transaction() as conn:
        row = await accounts.update_profile(
            conn,
            runtime,
            user_id,
            data,
            expected_version=version,
            actor_id=user_id,
            meta=request_meta(request),
        )
    return user_response(runtime, row)


async def change_password(request: Request, data: PasswordChange) -> Response:
    """Ends every session, this one included, and answers with a fresh one."""
    user_id = _own_user_id(request)
    runtime = runtime_of(request)
    async with database(request).transaction() as conn:
        mail = await accounts.change_password(conn, runtime, user_id, data, request_meta(request))
        row = await repository.get_user(conn, user_id)
        session = await sessions.start_session(
            conn, runtime, user_id, session_version=row["session_version"]
        )
    runtime.mail.send_later(mail)
    return _json(session.json())


async def delete_me(request: Request, data: AccountDeletion) -> Response:
    user_id = _own_user_id(request)
    runtime = runtime_of(request)
    async with database(request).transaction() as conn:
        row = await accounts.get_profile(conn, user_id)
        await accounts.confirm_password(runtime, row, data.password)
        await accounts.delete_account(conn, user_id, actor_id=user_id, meta=request_meta(request))
    return Response(status_code=204)


async def jwks(request: Request) -> Response:
    keys = await runtime_of(request).keys.current()
    return Response(
        orjson.dumps(keys.jwks),
        media_type="application/jwk-set+json",
        headers={"cache-control": "public, max-age=300"},
    )


def register_routes(app: FastAPI, *, prefix: str) -> None:
    add = route_adder(
        app, prefix=prefix, tag="identity", errors=(400, 401, 403, 404, 409, 412, 422, 429)
    )

    add(
        "/auth/register",
        register,
        "POST",
        PUBLIC,
        "Create an account",
        status_code=202,
        response_model=AcceptedEnvelope,
    )
    add(
        "/auth/verify-email",
        verify_email,
        "POST",
        PUBLIC,
        "Confirm an email address",
        status_code=204,
    )
    add(
        "/auth/verify-email/resend",
        resend_verification,
        "POST",
        AUTHENTICATED,
        "Send the confirmation link again",
        status_code=202,
        response_model=AcceptedEnvelope,
    )
    add("/auth/login", login, "POST", PUBLIC, "Log in", response_model=TokenEnvelope)
    add(
        "/auth/refresh",
        refresh,
        "POST",
        PUBLIC,
        "Trade a refresh token for new tokens",
        response_model=TokenEnvelope,
    )
    add(
        "/auth/logout",
        logout,
        "POST",
        PUBLIC,
        "End this login (its refresh token family)",
        status_code=204,
    )
    add(
        "/auth/logout-all",
        logout_everywhere,
        "POST",
        AUTHENTICATED,
        "End every session of this account",
        status_code=204,
    )
    add(
        "/auth/password/forgot",
        forgot_password,
        "POST",
        PUBLIC,
        "Ask for a reset link",
        status_code=202,
        response_model=AcceptedEnvelope,
    )
    add(
        "/auth/password/reset",
        reset_password,
        "POST",
        PUBLIC,
        "Set a new password with a reset link",
        status_code=204,
    )
    add("/me", read_me, "GET", AUTHENTICATED, "Read your account", response_model=UserEnvelope)
    add(
        "/me", update_me, "PATCH", AUTHENTICATED, "Update your profile", response_model=UserEnvelope
    )
    add(
        "/me/password",
        change_password,
        "POST",
        AUTHENTICATED,
        "Change your password",
        response_model=TokenEnvelope,
    )
    add(
        "/me",
        delete_me,
        "DELETE",
        AUTHENTICATED,
        "Delete your account (erased after the grace period)",
        status_code=204,
    )
    add_route(
        app,
        "/.well-known/jwks.json",
        jwks,
        method="GET",
        access=PUBLIC,
        tags=["identity"],
        summary="Public keys that verify access tokens",
    )
