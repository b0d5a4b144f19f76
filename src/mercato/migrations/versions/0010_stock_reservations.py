"""Stock reservations over HTTP: the catalog's reservations keyed by the caller's id, and the
order side's record of each order whose stock the catalog holds that way.

Lookups: catalog reservations by id (the primary key: reserve, confirm, release), the
unconfirmed ones by deadline (a partial index, read by the sweep with FOR UPDATE SKIP LOCKED),
released ones by age (pruning); order-side rows by order id (the primary key: closing an
order) and the calls still owed to the catalog by due time (a partial index, read by the
stock-call job with FOR UPDATE SKIP LOCKED).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stock_reservations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("lines", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('reserved', 'confirmed', 'released')",
            name=op.f("ck_stock_reservations_status_known"),
        ),
        sa.CheckConstraint(
            "(status = 'reserved') = (expires_at IS NOT NULL)",
            name=op.f("ck_stock_reservations_deadline_while_reserved"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_reservations")),
        schema="catalog",
    )
    op.create_index(
        "ix_stock_reservations_expires_at_reserved",
        "stock_reservations",
        ["expires_at"],
        unique=False,
        schema="catalog",
        postgresql_where=sa.text("status = 'reserved'"),
    )
    op.create_index(
        "ix_stock_reservations_updated_at_released",
        "stock_reservations",
        ["updated_at"],
        unique=False,
        schema="catalog",
        postgresql_where=sa.text("status = 'released'"),
    )
    op.create_table(
        "stock_reservations",
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('confirming', 'confirmed', 'releasing', 'released')",
            name=op.f("ck_stock_reservations_state_known"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.orders.id"],
            name=op.f("fk_stock_reservations_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_stock_reservations")),
        schema="orders",
    )
    op.create_index(
        "ix_stock_reservations_next_attempt_at_owed",
        "stock_reservations",
        ["next_attempt_at"],
        unique=False,
        schema="orders",
        postgresql_where=sa.text("state IN ('confirming', 'releasing')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_stock_reservations_next_attempt_at_owed",
        table_name="stock_reservations",
        schema="orders",
        postgresql_where=sa.text("state IN ('confirming', 'releasing')"),
    )
    op.drop_table("stock_reservations", schema="orders")
    op.drop_index(
        "ix_stock_reservations_updated_at_released",
        table_name="stock_reservations",
        schema="catalog",
        postgresql_where=sa.text("status = 'released'"),
    )
    op.drop_index(
        "ix_stock_reservations_expires_at_reserved",
        table_name="stock_reservations",
        schema="catalog",
        postgresql_where=sa.text("status = 'reserved'"),
    )
    op.drop_table("stock_reservations", schema="catalog")
