"""Staff use cases: users' roles, custom roles, API keys and the audit log.

Nobody can hand out more than they hold: a role assignment, a custom role or an API key
may only carry permissions the acting principal has itself.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from mercato.core.database import Executor
from mercato.core.errors import Forbidden
from mercato.core.security import Principal
from mercato.events import record_events
from mercato.identity import audit, events, repository
from mercato.identity.audit import RequestMeta
from mercato.identity.errors import (
    ApiKeyNotFound,
    BuiltinRole,
    PermissionNotHeld,
    RoleExists,
    RoleNotFound,
    UserNotFound,
)
from mercato.identity.roles import (
    BUILTIN_PERMISSIONS,
    effective_permissions,
    role_permissions,
    validate_permissions,
)
from mercato.identity.runtime import API_KEY_PREFIX, secret_hash
from mercato.identity.schemas import ApiKeyCreate, RoleCreate, RoleUpdate


def _require_held(actor: Principal, permissions: frozenset[str] | set[str]) -> None:
    missing = sorted(set(permissions) - actor.permissions)
    if missing:
        raise PermissionNotHeld(details=[{"field": "permissions", "message": p} for p in missing])


async def require_authority_over(conn: Executor, actor: Principal, user_id: uuid.UUID) -> None:
    """Staff may change or delete another account only if they hold every permission it
    has: a user manager must not be able to delete the administrator who appointed them."""
    if actor.owns(user_id):
        return
    row = await repository.principal_row(conn, user_id)
    if row is None:
        raise UserNotFound()
    _require_held(actor, effective_permissions(row["roles"], row["permissions"]))


async def assign_roles(
    conn: Executor, user_id: uuid.UUID, roles: list[str], *, actor: Principal, meta: RequestMeta
) -> Any:
    row = await repository.get_user(conn, user_id, for_update=True)
    if row is None:
        raise UserNotFound()
    wanted = sorted(set(roles))
    found = await repository.existing_roles(conn, wanted)
    unknown = [role for role in wanted if role not in found]
    if unknown:
        raise RoleNotFound(details=[{"field": "body.roles", "message": r} for r in unknown])
    previous = list(row["roles"])
    changed = set(wanted) ^ set(previous)
    for name in changed:  # granting or taking away a role needs every permission it carries
        role = await repository.get_role(conn, name)
        _require_held(actor, role_permissions(name, role["permissions"]))
    if not changed:
        return row
    await repository.set_user_roles(conn, user_id, wanted)
    row = await repository.update_user(conn, user_id, {})
    await record_events(
        conn,
        [
            events.roles_changed(
                row, previous=previous, roles=wanted, changed_by=str(actor.subject_id)
            )
        ],
    )
    await audit.record(
        conn,
        "roles.assigned",
        meta=meta,
        actor_id=actor.subject_id,
        subject_id=user_id,
        details={"roles": wanted, "previous_roles": previous},
    )
    return row


def role_json(row: Any) -> dict[str, Any]:
    return {
        "name": row["name"],
        "description": row["description"],
        "permissions": sorted(role_permissions(row["name"], row["permissions"])),
        "builtin": row["builtin"],
        "version": row["version"],
        "created_at": row["created_at"].isoformat(),
    }


async def create_role(
    conn: Executor, data: RoleCreate, *, actor: Principal, meta: RequestMeta
) -> Any:
    permissions = validate_permissions(data.permissions)
    _require_held(actor, set(permissions))
    if data.name in BUILTIN_PERMISSIONS:
        raise RoleExists()
    row = await repository.insert_role(conn, data.name, data.description, permissions)
    if row is None:
        raise RoleExists()
    await audit.record(
        conn,
        "role.created",
        meta=meta,
        actor_id=actor.subject_id,
        details={"role": data.name, "permissions": permissions},
    )
    return row


async def update_role(
    conn: Executor, name: str, data: RoleUpdate, *, actor: Principal, meta: RequestMeta
) -> Any:
    row = await repository.get_role(conn, name, for_update=True)
    if row is None:
        raise RoleNotFound()
    if row["builtin"]:
        raise BuiltinRole()
    permissions = (
        validate_permissions(data.permissions)
        if data.permissions is not None
        else row["permissions"]
    )
    _require_held(actor, set(permissions) ^ set(row["permissions"]))
    description = data.description if data.description is not None else row["description"]
    row = await repository.update_role(conn, name, description, permissions)
    await audit.record(
        conn,
        "role.updated",
        meta=meta,
        actor_id=actor.subject_id,
        details={"role": name, "permissions": permissions},
    )
    return row


async def delete_role(conn: Executor, name: str, *, actor: Principal, meta: RequestMeta) -> None:
    row = await repository.get_role(conn, name, for_update=True)
    if row is None:
        raise RoleNotFound()
    if row["builtin"]:
        raise BuiltinRole()
    _require_held(actor, set(row["permissions"]))
    await repository.delete_role(conn, name)
    await audit.record(
        conn, "role.deleted", meta=meta, actor_id=actor.subject_id, details={"role": name}
    )


def api_key_json(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "prefix": API_KEY_PREFIX + row["prefix"],
        "name": row["name"],
        "scopes": list(row["scopes"]),
        "owner_id": str(row["owner_id"]),
        "created_at": row["created_at"].isoformat(),
        "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
    }


async def create_api_key(
    conn: Executor, data: ApiKeyCreate, *, actor: Principal, meta: RequestMeta
) -> tuple[Any, str]:
    """The new key's row and its secret, which exists only in this answer."""
    if actor.kind != "user":
        # A key minting keys could outlive its own expiry and revocation.
        raise Forbidden("API keys are created by people, not by other API keys.")
    scopes = validate_permissions(data.scopes)
    _require_held(actor, set(scopes))
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    expires_at = (
        datetime.now(UTC) + timedelta(days=data.expires_in_days) if data.expires_in_days else None
    )
    row = await repository.insert_api_key(
        conn,
        prefix=prefix,
        secret_hash=secret_hash(secret),
        name=data.name,
        scopes=scopes,
        owner_id=actor.subject_id,
        expires_at=expires_at,
    )
    await audit.record(
        conn,
        "api_key.created",
        meta=meta,
        actor_id=actor.subject_id,
        details={"api_key_id": str(row["id"]), "scopes": scopes},
    )
    return row, f"{API_KEY_PREFIX}{prefix}_{secret}"


async def revoke_api_key(
    conn: Executor, key_id: uuid.UUID, *, actor: Principal, meta: RequestMeta
) -> None:
    row = await repository.revoke_api_key(conn, key_id)
    if row is None:
        raise ApiKeyNotFound()
    await audit.record(
        conn,
        "api_key.revoked",
        meta=meta,
        actor_id=actor.subject_id,
        details={"api_key_id": str(key_id)},
    )
