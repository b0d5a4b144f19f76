"""Every query the identity context runs: plain SQL, parameterised, on asyncpg.

Sealed columns arrive here already encrypted and leave still encrypted: this module never
sees a name, phone or address in clear.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from mercato.core.database import Executor

USER_COLUMNS = (
    "id, email, first_name, last_name, phone, address, data_key_version, password_hash, "
    "email_verified_at, session_version, version, created_at, updated_at, deleted_at, "
    "ARRAY(SELECT role FROM identity.user_roles r WHERE r.user_id = users.id ORDER BY role)"
    " AS roles"
)

# --- users ------------------------------------------------------------------------------


async def insert_user(conn: Executor, sealed: dict[str, Any], *, password_hash: str) -> Any:
    """The new account, or None when a live account already has this address (two
    registrations racing for one address: the second finds the first's row here)."""
    return await conn.fetchrow(
        "INSERT INTO identity.users (id, email_index, email, first_name, last_name, phone,"
        " address, data_key_version, password_hash)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (email_index) WHERE deleted_at IS NULL DO NOTHING"
        f" RETURNING {USER_COLUMNS}",
        sealed["id"],
        sealed["email_index"],
        sealed["email"],
        sealed["first_name"],
        sealed["last_name"],
        sealed["phone"],
        sealed["address"],
        sealed["data_key_version"],
        password_hash,
    )


async def get_user(conn: Executor, user_id: uuid.UUID, *, for_update: bool = False) -> Any:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {USER_COLUMNS} FROM identity.users WHERE id = $1 AND deleted_at IS NULL{lock}",
        user_id,
    )


async def find_user_by_email(conn: Executor, email_index: bytes) -> Any:
    return await conn.fetchrow(
        f"SELECT {USER_COLUMNS} FROM identity.users WHERE email_index = $1 AND deleted_at IS NULL",
        email_index,
    )


async def update_user(conn: Executor, user_id: uuid.UUID, changes: dict[str, Any]) -> Any:
    """Set `changes` (column → value, columns chosen by the service) and bump the version."""
    assignments = "".join(f"{column} = ${i}, " for i, column in enumerate(changes, start=2))
    return await conn.fetchrow(
        f"UPDATE identity.users SET {assignments}version = version + 1, updated_at = now()"
        f" WHERE id = $1 AND deleted_at IS NULL RETURNING {USER_COLUMNS}",
        user_id,
        *changes.values(),
    )


async def bump_session_version(conn: Executor, user_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE identity.users SET session_version = session_version + 1 WHERE id = $1", user_id
    )


async def soft_delete_user(conn: Executor, user_id: uuid.UUID) -> Any:
    return await conn.fetchrow(
        "UPDATE identity.users SET deleted_at = now(), session_version = session_version + 1,"
        " version = version + 1, updated_at = now()"
        f" WHERE id = $1 AND deleted_at IS NULL RETURNING {USER_COLUMNS}",
        user_id,
    )


async def list_users(
    conn: Executor, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> Any:
    if after is None:
        return await conn.fetch(
            f"SELECT {USER_COLUMNS} FROM identity.users WHERE deleted_at IS NULL"
            " ORDER BY created_at, id LIMIT $1",
            limit,
        )
    return await conn.fetch(
        f"SELECT {USER_COLUMNS} FROM identity.users WHERE deleted_at IS NULL"
        " AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $1",
        limit,
        *after,
    )


async def principal_row(conn: Executor, user_id: uuid.UUID) -> Any:
    """What authorising one request needs: the session version and the roles' permissions."""
    return await conn.fetchrow(
        "SELECT u.session_version,"
        " ARRAY(SELECT role FROM identity.user_roles ur WHERE ur.user_id = u.id) AS roles,"
        " ARRAY(SELECT DISTINCT unnest(r.permissions) FROM identity.user_roles ur"
        "       JOIN identity.roles r ON r.name = ur.role WHERE ur.user_id = u.id) AS permissions"
        " FROM identity.users u WHERE u.id = $1 AND u.deleted_at IS NULL",
        user_id,
    )


async def users_due_for_erasure(conn: Executor, *, deleted_before: datetime, limit: int) -> Any:
    return await conn.fetch(
        "SELECT id FROM identity.users WHERE deleted_at < $1 AND erased_at IS NULL"
        " ORDER BY deleted_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        deleted_before,
        limit,
    )


async def erase_users(conn: Executor, user_ids: list[uuid.UUID]) -> None:
    await conn.execute(
        "UPDATE identity.users SET email_index = NULL, email = NULL, first_name = NULL,"
        " last_name = NULL, phone = NULL, address = NULL, erased_at = now()"
        " WHERE id = ANY($1::uuid[])",
        user_ids,
    )
    await conn.execute(
        "DELETE FROM identity.refresh_tokens WHERE user_id = ANY($1::uuid[])", user_ids
    )
    await conn.execute(
        "DELETE FROM identity.one_time_tokens WHERE user_id = ANY($1::uuid[])", user_ids
    )


async def users_sealed_under_old_keys(
    conn: Executor, *, active: int, limit: int, skip_locked: bool = True
) -> Any:
    lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
    return await conn.fetch(
        "SELECT id, email, first_name, last_name, phone, address, data_key_version"
        # `<` or `>` rather than `<>`: two range scans of ix_users_data_key_version, which
        # touch only the rows still to do instead of every account.
        " FROM identity.users WHERE (data_key_version < $1 OR data_key_version > $1)"
        f" AND erased_at IS NULL LIMIT $2 {lock}",
        active,
        limit,
    )


async def reseal_user(conn: Executor, user_id: uuid.UUID, sealed: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE identity.users SET email = $2, first_name = $3, last_name = $4, phone = $5,"
        " address = $6, data_key_version = $7 WHERE id = $1",
        user_id,
        sealed["email"],
        sealed["first_name"],
        sealed["last_name"],
        sealed["phone"],
        sealed["address"],
        sealed["data_key_version"],
    )


# --- roles ------------------------------------------------------------------------------

ROLE_COLUMNS = "name, description, permissions, builtin, version, created_at"


async def list_roles(conn: Executor) -> Any:
    return await conn.fetch(f"SELECT {ROLE_COLUMNS} FROM identity.roles ORDER BY name")


async def get_role(conn: Executor, name: str, *, for_update: bool = False) -> Any:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {ROLE_COLUMNS} FROM identity.roles WHERE name = $1{lock}", name
    )


async def insert_role(conn: Executor, name: str, description: str, permissions: list[str]) -> Any:
    return await conn.fetchrow(
        "INSERT INTO identity.roles (name, description, permissions) VALUES ($1, $2, $3)"
        f" ON CONFLICT (name) DO NOTHING RETURNING {ROLE_COLUMNS}",
        name,
        description,
        permissions,
    )


async def update_role(conn: Executor, name: str, description: str, permissions: list[str]) -> Any:
    return await conn.fetchrow(
        "UPDATE identity.roles SET description = $2, permissions = $3, version = version + 1"
        f" WHERE name = $1 RETURNING {ROLE_COLUMNS}",
        name,
        description,
        permissions,
    )


async def delete_role(conn: Executor, name: str) -> None:
    await conn.execute("DELETE FROM identity.roles WHERE name = $1", name)


async def existing_roles(conn: Executor, names: list[str]) -> set[str]:
    rows = await conn.fetch("SELECT name FROM identity.roles WHERE name = ANY($1::text[])", names)
    return {row["name"] for row in rows}


async def set_user_roles(conn: Executor, user_id: uuid.UUID, roles: list[str]) -> None:
    await conn.execute(
        "DELETE FROM identity.user_roles WHERE user_id = $1 AND role <> ALL($2::text[])",
        user_id,
        roles,
    )
    await conn.execute(
        "INSERT INTO identity.user_roles (user_id, role) SELECT $1, unnest($2::text[])"
        " ON CONFLICT DO NOTHING",
        user_id,
        roles,
    )


# --- refresh and one-time tokens --------------------------------------------------------


async def insert_refresh_token(
    conn: Executor,
    *,
    token_hash: bytes,
    family_id: uuid.UUID,
    user_id: uuid.UUID,
    expires_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO identity.refresh_tokens (token_hash, family_id, user_id, expires_at)"
        " VALUES ($1, $2, $3, $4)",
        token_hash,
        family_id,
        user_id,
        expires_at,
    )


async def spend_refresh_token(conn: Executor, token_hash: bytes) -> Any:
    """Mark a live token used, atomically: of two concurrent uses, exactly one gets the row."""
    return await conn.fetchrow(
        "UPDATE identity.refresh_tokens SET used_at = now()"
        " WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL"
        " AND expires_at > now() RETURNING family_id, user_id, expires_at",
        token_hash,
    )


async def find_refresh_token(conn: Executor, token_hash: bytes) -> Any:
    return await conn.fetchrow(
        "SELECT family_id, user_id, used_at, revoked_at, expires_at"
        " FROM identity.refresh_tokens WHERE token_hash = $1",
        token_hash,
    )


async def revoke_family(conn: Executor, family_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE identity.refresh_tokens SET revoked_at = now()"
        " WHERE family_id = $1 AND revoked_at IS NULL",
        family_id,
    )


async def revoke_user_refresh_tokens(conn: Executor, user_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE identity.refresh_tokens SET revoked_at = now()"
        " WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )


async def prune_spent_tokens(conn: Executor, *, older_than: timedelta) -> int:
    """Refresh and one-time tokens past their end (or revoked, or used) for `older_than`:
    kept that long for reuse detection and the audit trail, then deleted."""
    refresh = await conn.execute(
        "DELETE FROM identity.refresh_tokens WHERE expires_at < now() - $1::interval"
        " OR revoked_at < now() - $1::interval",
        older_than,
    )
    one_time = await conn.execute(
        "DELETE FROM identity.one_time_tokens WHERE expires_at < now() - $1::interval"
        " OR used_at < now() - $1::interval",
        older_than,
    )
    return int(refresh.split()[-1]) + int(one_time.split()[-1])


async def insert_one_time_token(
    conn: Executor, *, token_hash: bytes, purpose: str, user_id: uuid.UUID, ttl: timedelta
) -> None:
    await conn.execute(
        "INSERT INTO identity.one_time_tokens (token_hash, purpose, user_id, expires_at)"
        " VALUES ($1, $2, $3, now() + $4::interval)",
        token_hash,
        purpose,
        user_id,
        ttl,
    )


async def spend_one_time_token(conn: Executor, token_hash: bytes, purpose: str) -> Any:
    return await conn.fetchrow(
        "UPDATE identity.one_time_tokens SET used_at = now()"
        " WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()"
        " RETURNING user_id",
        token_hash,
        purpose,
    )


async def spend_all_one_time_tokens(conn: Executor, user_id: uuid.UUID, purpose: str) -> None:
    await conn.execute(
        "UPDATE identity.one_time_tokens SET used_at = now()"
        " WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        user_id,
        purpose,
    )


# --- API keys ---------------------------------------------------------------------------

API_KEY_COLUMNS = "id, prefix, name, scopes, owner_id, created_at, expires_at, revoked_at"


async def insert_api_key(conn: Executor, **values: Any) -> Any:
    return await conn.fetchrow(
        "INSERT INTO identity.api_keys (prefix, secret_hash, name, scopes, owner_id, expires_at)"
        f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {API_KEY_COLUMNS}",
        values["prefix"],
        values["secret_hash"],
        values["name"],
        values["scopes"],
        values["owner_id"],
        values["expires_at"],
    )


async def api_key_by_prefix(conn: Executor, prefix: str) -> Any:
    return await conn.fetchrow(
        f"SELECT {API_KEY_COLUMNS}, secret_hash FROM identity.api_keys"
        " WHERE prefix = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        prefix,
    )


async def list_api_keys(conn: Executor, *, limit: int) -> Any:
    return await conn.fetch(
        f"SELECT {API_KEY_COLUMNS} FROM identity.api_keys ORDER BY created_at DESC LIMIT $1",
        limit,
    )


async def revoke_api_key(conn: Executor, key_id: uuid.UUID) -> Any:
    return await conn.fetchrow(
        "UPDATE identity.api_keys SET revoked_at = coalesce(revoked_at, now())"
        f" WHERE id = $1 RETURNING {API_KEY_COLUMNS}",
        key_id,
    )
