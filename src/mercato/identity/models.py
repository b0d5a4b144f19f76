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
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from mercato.core.tables import schema_metadata

SCHEMA = "identity"
metadata = schema_metadata(SCHEMA)


def _created_at() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


users = Table(
    "users",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
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
    ),
    Index("ix_users_created_at_id", "created_at", "id"),
    # The erase job's queue: deleted, not yet erased.
    Index(
        "ix_users_deleted_at_pending_erasure",
        "deleted_at",
        postgresql_where=text("deleted_at IS NOT NULL AND erased_at IS NULL"),
    ),
    # Key rotation walks the rows still sealed under an old key.
    Index("ix_users_data_key_version", "data_key_version"),
)

roles = Table(
    "roles",
    metadata,
    Column("name", Text, primary_key=True),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("permissions", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("builtin", Boolean, nullable=False, server_default=text("false")),
    Column("version", Integer, nullable=False, server_default=text("1")),
    _created_at(),
    CheckConstraint("name ~ '^[a-z][a-z0-9_-]{1,39}$'", name="name_format"),
)

user_roles = Table(
    "user_roles",
    metadata,
    Column(
        "user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    Column(
        "role",
        Text,
        ForeignKey("roles.name", ondelete="CASCADE", onupdate="CASCADE"),
        primary_key=True,
    ),
    _created_at(),
    Index("ix_user_roles_role", "role"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("family_id", UUID(as_uuid=True), nullable=False),
    Column(
        "user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    _created_at(),
    # The family's absolute end: rotation never extends a login past it.
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Index("ix_refresh_tokens_family_id", "family_id"),
    Index("ix_refresh_tokens_user_id", "user_id"),
)

one_time_tokens = Table(
    "one_time_tokens",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("purpose", Text, nullable=False),
    Column(
        "user_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    _created_at(),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    CheckConstraint("purpose IN ('verify_email', 'reset_password')", name="purpose"),
    Index("ix_one_time_tokens_user_id", "user_id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("prefix", Text, nullable=False, unique=True),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("name", Text, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column(
        "owner_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    _created_at(),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Index("ix_api_keys_owner_id", "owner_id"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", Text, primary_key=True),
    Column("algorithm", Text, nullable=False),
    Column("public_jwk", JSONB, nullable=False),
    Column("private_key", LargeBinary, nullable=False),
    _created_at(),
    # After `retired_at` the key no longer signs; it verifies until `expires_at`, when
    # every token it signed has expired.
    Column("retired_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    Column("action", Text, nullable=False),
    Column("outcome", Text, nullable=False, server_default=text("'success'")),
    Column("actor_id", UUID(as_uuid=True)),
    Column("subject_id", UUID(as_uuid=True)),
    Column("ip", Text),
    Column("user_agent", Text),
    Column("request_id", Text),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Index("ix_audit_log_subject_id_id", "subject_id", "id"),
    Index("ix_audit_log_actor_id_id", "actor_id", "id"),
    Index("ix_audit_log_action_id", "action", "id"),
)
