"""Payments: payment attempts, processed provider events, stored idempotent answers.

Lookups: attempts by order (at most one open or succeeded per order: a partial unique
index), by provider intent id (webhooks) and by provider key; unsettled attempts by age
(reconciliation); provider events by id (duplicates); idempotency keys by (caller, key).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS payments")
    op.create_table(
        "idempotency_keys",
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("owner", "key", name=op.f("pk_idempotency_keys")),
        schema="payments",
    )
    op.create_index(
        "ix_payments_idempotency_keys_created_at",
        "idempotency_keys",
        ["created_at"],
        unique=False,
        schema="payments",
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("payment_method", sa.Text(), nullable=False),
        sa.Column("provider_key", sa.Text(), nullable=False),
        sa.Column("intent_id", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("failure_code", sa.Text(), nullable=True),
        sa.Column("refunded_amount", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("busy_until", sa.DateTime(timezone=True), nullable=True),
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
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'succeeded', 'failed', 'canceled', 'refund_pending', 'refunded', 'partially_refunded')",
            name=op.f("ck_payments_status_known"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount_positive")),
        sa.CheckConstraint(
            "refunded_amount BETWEEN 0 AND amount", name=op.f("ck_payments_refund_within_amount")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("intent_id", name=op.f("uq_payments_intent_id")),
        sa.UniqueConstraint("provider_key", name=op.f("uq_payments_provider_key")),
        schema="payments",
    )
    op.create_index(
        "ix_payments_order_id", "payments", ["order_id"], unique=False, schema="payments"
    )
    op.create_index(
        "ix_payments_updated_at_unsettled",
        "payments",
        ["updated_at"],
        unique=False,
        schema="payments",
        postgresql_where=sa.text("status IN ('pending', 'processing', 'refund_pending')"),
    )
    op.create_index(
        "uq_payments_order_id_open",
        "payments",
        ["order_id"],
        unique=True,
        schema="payments",
        postgresql_where=sa.text("status IN ('pending', 'processing', 'succeeded')"),
    )
    op.create_table(
        "webhook_events",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_webhook_events")),
        schema="payments",
    )


def downgrade() -> None:
    op.drop_table("webhook_events", schema="payments")
    op.drop_index(
        "uq_payments_order_id_open",
        table_name="payments",
        schema="payments",
        postgresql_where=sa.text("status IN ('pending', 'processing', 'succeeded')"),
    )
    op.drop_index(
        "ix_payments_updated_at_unsettled",
        table_name="payments",
        schema="payments",
        postgresql_where=sa.text("status IN ('pending', 'processing', 'refund_pending')"),
    )
    op.drop_index("ix_payments_order_id", table_name="payments", schema="payments")
    op.drop_table("payments", schema="payments")
    op.drop_index(
        "ix_payments_idempotency_keys_created_at", table_name="idempotency_keys", schema="payments"
    )
    op.drop_table("idempotency_keys", schema="payments")
    op.execute("DROP SCHEMA payments")
