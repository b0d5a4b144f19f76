"""Identity's HTTP routes for staff: users, roles, API keys and the audit log."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from mercato.core.access import current_principal, requires, route_adder
from mercato.core.deps import cursor_codec, database
from mercato.core.http import envelope, expected_version
from mercato.core.pagination import decode_stamp_cursor, next_page, stamp_position
from mercato.identity import accounts, admin, audit, audit_repository, repository
from mercato.identity.api import PRIVATE, request_meta, runtime_of, user_response
from mercato.identity.errors import RoleNotFound
from mercato.identity.schemas import (
    ApiKeyCreate,
    ApiKeyEnvelope,
    ApiKeyList,
    AuditPage,
    AuditQuery,
    ProfileUpdate,
    RoleCreate,
    RoleEnvelope,
    RoleList,
    RolesAssignment,
    RoleUpdate,
    UserEnvelope,
    UserListQuery,
    UserPage,
)

MAX_API_KEYS_LISTED = 500


def _json(data: Any, meta: dict[str, Any] | None = None, status: int = 200) -> Response:
    return Response(
        orjson.dumps(envelope(data, meta)),
        status_code=status,
        media_type="application/json",
        headers=PRIVATE,
    )


# --- users ------------------------------------------------------------------------------


async def list_users(request: Request, params: Annotated[UserListQuery, Query()]) -> Response:
    codec = cursor_codec(request)
    after = decode_stamp_cursor(codec, "users", params.cursor)
    rows = await repository.list_users(
        database(request).reader, after=after, limit=params.limit + 1
    )
    rows, next_cursor = next_page(
        codec, "users", rows, limit=params.limit, position=stamp_position("created_at")
    )
    runtime = runtime_of(request)
    return _json(
        [accounts.user_json(runtime, row) for row in rows],
        {"limit": params.limit, "count": len(rows), "next_cursor": next_cursor},
    )


async def get_user(request: Request, user_id: uuid.UUID) -> Response:
    row = await accounts.get_profile(database(request).reader, user_id)
    return user_response(runtime_of(request), row)


async def update_user(request: Request, user_id: uuid.UUID, data: ProfileUpdate) -> Response:
    runtime = runtime_of(request)
    actor = current_principal(request)
    version = expected_version(request)
    async with database(request).transaction() as conn:
        await admin.require_authority_over(conn, actor, user_id)
        row = await accounts.update_profile(
            conn,
            runtime,
            user_id,
            data,
            expected_version=version,
            actor_id=actor.subject_id,
            meta=request_meta(request),
        )
    return user_response(runtime, row)


async def delete_user(request: Request, user_id: uuid.UUID) -> Response:
    actor = current_principal(request)
    version = expected_version(request)
    async with database(request).transaction() as conn:
        await admin.require_authority_over(conn, actor, user_id)
        await accounts.delete_account(
            conn,
            user_id,
            actor_id=actor.subject_id,
            meta=request_meta(request),
            expected_version=version,
        )
    return Response(status_code=204)


async def assign_roles(request: Request, user_id: uuid.UUID, data: RolesAssignment) -> Response:
    actor = current_principal(request)
    async with database(request).transaction() as conn:
        row = await admin.assign_roles(
            conn, user_id, data.roles, actor=actor, meta=request_meta(request)
        )
    return user_response(runtime_of(request), row)


# --- roles ------------------------------------------------------------------------------


async def list_roles(request: Request) -> Response:
    rows = await repository.list_roles(database(request).reader)
    return _json([admin.role_json(row) for row in rows])


async def get_role(request: Request, name: str) -> Response:
    row = await repository.get_role(database(request).reader, name)
    if row is None:
        raise RoleNotFound()
    return _json(admin.role_json(row))


async def create_role(request: Request, data: RoleCreate) -> Response:
    actor = current_principal(request)
    async with database(request).transaction() as conn:
        row = await admin.create_role(conn, data, actor=actor, meta=request_meta(request))
    return _json(admin.role_json(row), status=201)


async def update_role(request: Request, name: str, data: RoleUpdate) -> Response:
    actor = current_principal(request)
    async with database(request).transaction() as conn:
        row = await admin.update_role(conn, name, data, actor=actor, meta=request_meta(request))
    return _json(admin.role_json(row))


async def delete_role(request: Request, name: str) -> Response:
    actor = current_principal(request)
    async with database(request).transaction() as conn:
        await admin.delete_role(conn, name, actor=actor, meta=request_meta(request))
    return Response(status_code=204)


# --- API keys ---------------------------------------------------------------------------


async def create_api_key(request: Request, data: ApiKeyCreate) -> Response:
    actor = current_principal(request)
    async with database(request).transaction() as conn:
        row, key = await admin.create_api_key(conn, data, actor=actor, meta=request_meta(request))
    return _json({**admin.api_key_json(row), "key": key}, status=201)


async def list_api_keys(request: Request) -> Response:
    rows = await repository.list_api_keys(database(request).reader, limit=MAX_API_KEYS_LISTED)
    return _json([admin.api_key_json(row) for row in rows])


async def revoke_api_key(request: Request, key_id: uuid.UUID) -> Response:
    actor = current_principal(request)
    async with database(request).transaction() as conn:
        await admin.revoke_api_key(conn, key_id, actor=actor, meta=request_meta(request))
    return Response(status_code=204)


# --- audit log --------------------------------------------------------------------------


async def list_audit(request: Request, params: Annotated[AuditQuery, Query()]) -> Response:
    codec = cursor_codec(request)
    filters = {
        name: value
        for name, value in (
            ("action", params.action),
            ("actor_id", params.actor_id),
            ("subject_id", params.subject_id),
        )
        if value is not None
    }
    fingerprint = f"audit:{sorted((k, str(v)) for k, v in filters.items())}"
    before_id = None
    if params.cursor:
        (before_id,) = codec.decode(fingerprint, params.cursor)
    rows = await audit_repository.list_audit(
        database(request).reader, filters=filters, before_id=before_id, limit=params.limit + 1
    )
    rows, next_cursor = next_page(
        codec, fingerprint, rows, limit=params.limit, position=lambda row: [row["id"]]
    )
    return _json(
        [audit.entry_json(row) for row in rows],
        {"limit": params.limit, "count": len(rows), "next_cursor": next_cursor},
    )


def register_routes(app: FastAPI, *, prefix: str) -> None:
    add = route_adder(
        app,
        prefix=prefix,
        tag="identity admin",
        errors=(400, 401, 403, 404, 409, 412, 422, 428, 429),
    )

    read, manage = requires("users:read"), requires("users:manage")
    add("/users", list_users, "GET", read, "List users", response_model=UserPage)
    add("/users/{user_id}", get_user, "GET", read, "Read a user", response_model=UserEnvelope)
    add(
        "/users/{user_id}",
        update_user,
        "PATCH",
        manage,
        "Update a user's profile (If-Match)",
        response_model=UserEnvelope,
    )
    add(
        "/users/{user_id}",
        delete_user,
        "DELETE",
        manage,
        "Delete a user (If-Match)",
        status_code=204,
    )
    add(
        "/users/{user_id}/roles",
        assign_roles,
        "PUT",
        manage,
        "Set a user's roles",
        response_model=UserEnvelope,
    )

    roles = requires("roles:manage")
    add("/roles", list_roles, "GET", roles, "List roles", response_model=RoleList)
    add(
        "/roles",
        create_role,
        "POST",
        roles,
        "Create a custom role",
        status_code=201,
        response_model=RoleEnvelope,
    )
    add("/roles/{name}", get_role, "GET", roles, "Read a role", response_model=RoleEnvelope)
    add(
        "/roles/{name}",
        update_role,
        "PATCH",
        roles,
        "Change a custom role",
        response_model=RoleEnvelope,
    )
    add("/roles/{name}", delete_role, "DELETE", roles, "Delete a custom role", status_code=204)

    keys = requires("api_keys:manage")
    add(
        "/api-keys",
        create_api_key,
        "POST",
        keys,
        "Create an API key (shown once)",
        status_code=201,
        response_model=ApiKeyEnvelope,
    )
    add("/api-keys", list_api_keys, "GET", keys, "List API keys", response_model=ApiKeyList)
    add("/api-keys/{key_id}", revoke_api_key, "DELETE", keys, "Revoke an API key", status_code=204)

    add(
        "/audit-events",
        list_audit,
        "GET",
        requires("audit:read"),
        "Query the audit log",
        response_model=AuditPage,
    )
