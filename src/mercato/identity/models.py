"""The identity context's tables, in the `identity` schema.

- `users`: one row per account. Names, phone, address and the email itself are sealed
  with a data key (see core/crypto.py); `email_index` is the keyed hash that makes the address
  unique and searchable. Bumping `session_version` ends every access token issued before.
- `roles`, `user_roles`: permissions (`resource:action`) grouped into roles.
- `refresh_tokens`: hashes only; `family_id` ties a login's successive tokens together so
  that reusing a spent one revokes the whole family.
- `one_time_tokens`: email verification and password reset, hashed, single use.
- `api_keys`: machine credentials; the visible prefix finds the row, the hash proves it.
- `signing_keys`: the JWT key set; private keys are sealed like personal data.
- `audit_log`: security events, append-only (a trigger refuses UPDATE and DELETE).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from mercato.core.tables import schema_metadata, serves

SCHEMA = "identity"
metadata = schema_metadata(SCHEMA)


def _created_at() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


users = Table(
    "users",
    metadata,
    Column("id", UUID(as_uuid=True), server_default=func.gen_random_uuid()),
    Column("email_index", LargeBinary),
    Column("email", LargeBinary),
    Column("first_name", LargeBinary),
    Column("last_name", LargeBinary),
    Column("phone", LargeBinary),
    Column("address", LargeBinary),
    Column("data_key_version", Integer, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("email_verified_at", DateTime(timezone=True)),
    # Carried in every access token ("sv"); bumping it ends all of them at once.
    Column("session_version", Integer, nullable=False, server_default=text("1")),
    Column("version", Integer, nullable=False, server_default=text("1")),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("deleted_at", DateTime(timezone=True)),
    Column("erased_at", DateTime(timezone=True)),
    # Personal data is present until the erase job removes it after deletion.
    CheckConstraint(
        "erased_at IS NOT NULL OR (email_index IS NOT NULL AND email IS NOT NULL"
        " AND first_name IS NOT NULL AND last_name IS NOT NULL)",
        name="pii_present",
    ),
    # A deleted account frees its address for a new registration.
    Index(
        "uq_users_email_index_live",
        "email_index",
        unique=True,
        postgresql_where=text("deleted_at IS NULL"),
        info=serves(
            "one live account per address; `find_user_by_email` (login, forgot password, "
            "a registration that found the address taken) and the conflict target of "
            "registration's `INSERT … ON CONFLICT (email_index) WHERE deleted_at IS NULL "
            "DO NOTHING`. Partial, so a deleted account frees its address"
        ),
    ),
    Index(
        "ix_users_created_at_id",
        "created_at",
        "id",
        info=serves("`GET /api/v1/users`: keyset on `(created_at, id)`"),
    ),
    # The erase job's queue: deleted, not yet erased.
    Index(
        "ix_users_deleted_at_pending_erasure",
        "deleted_at",
        postgresql_where=text("deleted_at IS NOT NULL AND erased_at IS NULL"),
        info=serves(
            "the erasure job's queue: `users_due_for_erasure` (`deleted_at < $1 AND "
            "erased_at IS NULL ORDER BY deleted_at … FOR UPDATE SKIP LOCKED`)"
        ),
    ),
    # Key rotation walks the rows still sealed under an old key.
    Index(
        "ix_users_data_key_version",
        "data_key_version",
        info=serves(
            "meant for `mercato keys rotate-data`, but its query "
            "(`users_sealed_under_old_keys`: `data_key_version <> $1`) cannot use it: "
            "`<>` is not a btree index condition, and PostgreSQL scans the table (checked"
            " with `EXPLAIN`). No query uses it"
        ),
    ),
    PrimaryKeyConstraint(
        "id",
        info=serves(
            "`get_user` (`… FOR UPDATE` before every account write), `principal_row` on "
            "every authenticated request, `update_user`, `soft_delete_user`, "
            "`erase_users`, `reseal_user`; the FK checks of `user_roles`, "
            "`refresh_tokens`, `one_time_tokens`, `api_keys`"
        ),
    ),
)

roles = Table(
    "roles",
    metadata,
    Column("name", Text),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("permissions", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("builtin", Boolean, nullable=False, server_default=text("false")),
    Column("version", Integer, nullable=False, server_default=text("1")),
    _created_at(),
    CheckConstraint("name ~ '^[a-z][a-z0-9_-]{1,39}$'", name="name_format"),
    PrimaryKeyConstraint(
        "name",
        info=serves(
            "`get_role`, role checks in assignments, the join in `principal_row`, the FK "
            "from `user_roles.role`"
        ),
    ),
)

user_roles = Table(
    "user_roles",
    metadata,
    Column("user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE")),
    Column(
        "role",
        Text,
        ForeignKey("roles.name", ondelete="CASCADE", onupdate="CASCADE"),
    ),
    _created_at(),
    Index(
        "ix_user_roles_role",
        "role",
        info=serves("the cascade from `roles` when a custom role is deleted or renamed"),
    ),
    PrimaryKeyConstraint(
        "user_id",
        "role",
        info=serves(
            "the roles of one user (`principal_row`, every `USER_COLUMNS` select), "
            "`set_user_roles`, the cascade when a user row is deleted"
        ),
    ),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", UUID(as_uuid=True), server_default=func.gen_random_uuid()),
    Column("token_hash", LargeBinary, nullable=False),
    Column("family_id", UUID(as_uuid=True), nullable=False),
    Column(
        "user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    _created_at(),
    # The family's absolute end: rotation never extends a login past it.
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Index("ix_refresh_tokens_family_id", "family_id", info=serves("`revoke_family`")),
    Index(
        "ix_refresh_tokens_user_id",
        "user_id",
        info=serves("`revoke_user_refresh_tokens`, erasure's delete, the FK cascade"),
    ),
    PrimaryKeyConstraint("id", info=serves("uniqueness only; tokens are found by `token_hash`")),
    UniqueConstraint(
        "token_hash",
        info=serves(
            "`spend_refresh_token` (the one `UPDATE … RETURNING` of a refresh), "
            "`find_refresh_token` (reuse detection, logout)"
        ),
    ),
)

one_time_tokens = Table(
    "one_time_tokens",
    metadata,
    Column("token_hash", LargeBinary),
    Column("purpose", Text, nullable=False),
    Column(
        "user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    _created_at(),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    CheckConstraint("purpose IN ('verify_email', 'reset_password')", name="purpose"),
    Index(
        "ix_one_time_tokens_user_id",
        "user_id",
        info=serves(
            "`spend_all_one_time_tokens` (`user_id = $1 AND purpose = $2`), erasure's "
            "delete, the FK cascade"
        ),
    ),
    PrimaryKeyConstraint("token_hash", info=serves("`spend_one_time_token`")),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", UUID(as_uuid=True), server_default=func.gen_random_uuid()),
    Column("prefix", Text, nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("name", Text, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column(
        "owner_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    _created_at(),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Index(
        "ix_api_keys_owner_id",
        "owner_id",
        info=serves("the FK cascade from `users` (no query lists keys by owner)"),
    ),
    PrimaryKeyConstraint("id", info=serves("`revoke_api_key`")),
    UniqueConstraint(
        "prefix", info=serves("`api_key_by_prefix` on every request authenticated by an API key")
    ),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", Text),
    Column("algorithm", Text, nullable=False),
    Column("public_jwk", JSONB, nullable=False),
    Column("private_key", LargeBinary, nullable=False),
    _created_at(),
    # After `retired_at` the key no longer signs; it verifies until `expires_at`, when
    # every token it signed has expired.
    Column("retired_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    PrimaryKeyConstraint(
        "kid",
        info=serves("`reseal_signing_key`; the key set itself is read whole (a handful of rows)"),
    ),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(always=True)),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    Column("action", Text, nullable=False),
    Column("outcome", Text, nullable=False, server_default=text("'success'")),
    Column("actor_id", UUID(as_uuid=True)),
    Column("subject_id", UUID(as_uuid=True)),
    Column("ip", Text),
    Column("user_agent", Text),
    Column("request_id", Text),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Index(
        "ix_audit_log_subject_id_id",
        "subject_id",
        "id",
        info=serves("the audit query filtered by `subject_id`, newest first"),
    ),
    Index("ix_audit_log_actor_id_id", "actor_id", "id", info=serves("filtered by `actor_id`")),
    Index("ix_audit_log_action_id", "action", "id", info=serves("filtered by `action`")),
    PrimaryKeyConstraint(
        "id",
        info=serves(
            "`GET /api/v1/audit-events` without filters (`ORDER BY id DESC`), and the `id"
            " < $cursor` continuation"
        ),
    ),
)
