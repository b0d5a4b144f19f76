"""Webhooks: subscriptions (sealed signing secrets, a cursor in the event log) and the
attempts log.

Lookups: subscriptions due for delivery by due time (a partial index on active ones, read
with FOR UPDATE SKIP LOCKED), subscriptions newest first (the admin list, keyset);
attempts newest first, overall and per subscription (keyset), and by age (pruning).
Attempts belong to their subscription (deleted with it).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS webhooks")
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("previous_secret", sa.LargeBinary(), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_position", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("claim_token", sa.UUID(), nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.UUID(), nullable=True),
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
        sa.CheckConstraint(
            "cardinality(event_types) > 0", name=op.f("ck_subscriptions_event_types_not_empty")
        ),
        sa.CheckConstraint(
            "delivered_position >= 0", name=op.f("ck_subscriptions_position_not_negative")
        ),
        sa.CheckConstraint("failures >= 0", name=op.f("ck_subscriptions_failures_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        schema="webhooks",
    )
    op.create_index(
        "ix_subscriptions_created_at_id",
        "subscriptions",
        ["created_at", "id"],
        unique=False,
        schema="webhooks",
    )
    op.create_index(
        "ix_subscriptions_next_attempt_at_active",
        "subscriptions",
        ["next_attempt_at"],
        unique=False,
        schema="webhooks",
        postgresql_where=sa.text("active"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("subscription_id", sa.UUID(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("replay", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column(
            "attempted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('succeeded', 'failed', 'dead')", name=op.f("ck_deliveries_status_known")
        ),
        sa.CheckConstraint("attempt > 0", name=op.f("ck_deliveries_attempt_positive")),
        sa.CheckConstraint(
            "char_length(response_excerpt) <= 500", name=op.f("ck_deliveries_excerpt_short")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhooks.subscriptions.id"],
            name=op.f("fk_deliveries_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        schema="webhooks",
    )
    op.create_index(
        "ix_deliveries_attempted_at_id",
        "deliveries",
        ["attempted_at", "id"],
        unique=False,
        schema="webhooks",
    )
    op.create_index(
        "ix_deliveries_subscription_id_attempted_at_id",
        "deliveries",
        ["subscription_id", "attempted_at", "id"],
        unique=False,
        schema="webhooks",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_deliveries_subscription_id_attempted_at_id", table_name="deliveries", schema="webhooks"
    )
    op.drop_index("ix_deliveries_attempted_at_id", table_name="deliveries", schema="webhooks")
    op.drop_table("deliveries", schema="webhooks")
    op.drop_index(
        "ix_subscriptions_next_attempt_at_active",
        table_name="subscriptions",
        schema="webhooks",
        postgresql_where=sa.text("active"),
    )
    op.drop_index("ix_subscriptions_created_at_id", table_name="subscriptions", schema="webhooks")
    op.drop_table("subscriptions", schema="webhooks")
    op.execute("DROP SCHEMA webhooks")
