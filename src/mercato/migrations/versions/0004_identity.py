"""Identity: accounts with sealed personal data, roles, tokens, API keys, signing keys and
the append-only audit log.

Lookups: users by email blind index (unique among live accounts) and by key version (key
rotation); refresh tokens and one-time tokens by hash; API keys by visible prefix; audit
entries by subject, actor or action, newest first. The three built-in roles are rows so that
assignments can reference them; their permissions are defined in code.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


REFUSE_CHANGE = """
CREATE FUNCTION identity.refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$
"""

APPEND_ONLY = """
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON identity.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION identity.refuse_audit_change()
"""

BUILTIN_ROLES = """
INSERT INTO identity.roles (name, description, builtin) VALUES
    ('customer', 'Shops: manages their own account and orders.', true),
    ('staff', 'Runs the shop: catalog, orders, read access to users.', true),
    ('admin', 'Every permission, including users, roles and keys.', true)
"""


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS identity")
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), server_default=sa.text("'success'"), nullable=False),
        sa.Column("actor_id", sa.UUID(), nullable=True),
        sa.Column("subject_id", sa.UUID(), nullable=True),
        sa.Column("ip", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        schema="identity",
    )
    op.create_index(
        "ix_audit_log_action_id", "audit_log", ["action", "id"], unique=False, schema="identity"
    )
    op.create_index(
        "ix_audit_log_actor_id_id", "audit_log", ["actor_id", "id"], unique=False, schema="identity"
    )
    op.create_index(
        "ix_audit_log_subject_id_id",
        "audit_log",
        ["subject_id", "id"],
        unique=False,
        schema="identity",
    )
    op.create_table(
        "roles",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column(
            "permissions",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("builtin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("name ~ '^[a-z][a-z0-9_-]{1,39}$'", name=op.f("ck_roles_name_format")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_roles")),
        schema="identity",
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.Text(), nullable=False),
        sa.Column("public_jwk", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("private_key", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
        schema="identity",
    )
    op.create_table(
        "users",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("email_index", sa.LargeBinary(), nullable=True),
        sa.Column("email", sa.LargeBinary(), nullable=True),
        sa.Column("first_name", sa.LargeBinary(), nullable=True),
        sa.Column("last_name", sa.LargeBinary(), nullable=True),
        sa.Column("phone", sa.LargeBinary(), nullable=True),
        sa.Column("address", sa.LargeBinary(), nullable=True),
        sa.Column("data_key_version", sa.Integer(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("session_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "erased_at IS NOT NULL OR (email_index IS NOT NULL AND email IS NOT NULL AND first_name IS NOT NULL AND last_name IS NOT NULL)",
            name=op.f("ck_users_pii_present"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        schema="identity",
    )
    op.create_index(
        "ix_users_created_at_id", "users", ["created_at", "id"], unique=False, schema="identity"
    )
    op.create_index(
        "ix_users_data_key_version", "users", ["data_key_version"], unique=False, schema="identity"
    )
    op.create_index(
        "ix_users_deleted_at_pending_erasure",
        "users",
        ["deleted_at"],
        unique=False,
        schema="identity",
        postgresql_where=sa.text("deleted_at IS NOT NULL AND erased_at IS NULL"),
    )
    op.create_index(
        "uq_users_email_index_live",
        "users",
        ["email_index"],
        unique=True,
        schema="identity",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["identity.users.id"],
            name=op.f("fk_api_keys_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
        schema="identity",
    )
    op.create_index(
        "ix_api_keys_owner_id", "api_keys", ["owner_id"], unique=False, schema="identity"
    )
    op.create_table(
        "one_time_tokens",
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "purpose IN ('verify_email', 'reset_password')", name=op.f("ck_one_time_tokens_purpose")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity.users.id"],
            name=op.f("fk_one_time_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_one_time_tokens")),
        schema="identity",
    )
    op.create_index(
        "ix_one_time_tokens_user_id",
        "one_time_tokens",
        ["user_id"],
        unique=False,
        schema="identity",
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("family_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity.users.id"],
            name=op.f("fk_refresh_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
        schema="identity",
    )
    op.create_index(
        "ix_refresh_tokens_family_id",
        "refresh_tokens",
        ["family_id"],
        unique=False,
        schema="identity",
    )
    op.create_index(
        "ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"], unique=False, schema="identity"
    )
    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["role"],
            ["identity.roles.name"],
            name=op.f("fk_user_roles_role_roles"),
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity.users.id"],
            name=op.f("fk_user_roles_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "role", name=op.f("pk_user_roles")),
        schema="identity",
    )
    op.create_index("ix_user_roles_role", "user_roles", ["role"], unique=False, schema="identity")
    op.execute(REFUSE_CHANGE)
    op.execute(APPEND_ONLY)
    op.execute(BUILTIN_ROLES)


def downgrade() -> None:
    op.drop_index("ix_user_roles_role", table_name="user_roles", schema="identity")
    op.drop_table("user_roles", schema="identity")
    op.drop_index("ix_refresh_tokens_user_id", table_name="refresh_tokens", schema="identity")
    op.drop_index("ix_refresh_tokens_family_id", table_name="refresh_tokens", schema="identity")
    op.drop_table("refresh_tokens", schema="identity")
    op.drop_index("ix_one_time_tokens_user_id", table_name="one_time_tokens", schema="identity")
    op.drop_table("one_time_tokens", schema="identity")
    op.drop_index("ix_api_keys_owner_id", table_name="api_keys", schema="identity")
    op.drop_table("api_keys", schema="identity")
    op.drop_index(
        "uq_users_email_index_live",
        table_name="users",
        schema="identity",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(
        "ix_users_deleted_at_pending_erasure",
        table_name="users",
        schema="identity",
        postgresql_where=sa.text("deleted_at IS NOT NULL AND erased_at IS NULL"),
    )
    op.drop_index("ix_users_data_key_version", table_name="users", schema="identity")
    op.drop_index("ix_users_created_at_id", table_name="users", schema="identity")
    op.drop_table("users", schema="identity")
    op.drop_table("signing_keys", schema="identity")
    op.drop_table("roles", schema="identity")
    op.drop_index("ix_audit_log_subject_id_id", table_name="audit_log", schema="identity")
    op.drop_index("ix_audit_log_actor_id_id", table_name="audit_log", schema="identity")
    op.drop_index("ix_audit_log_action_id", table_name="audit_log", schema="identity")
    op.drop_table("audit_log", schema="identity")
    op.execute("DROP FUNCTION identity.refuse_audit_change()")
    op.execute("DROP SCHEMA identity")
