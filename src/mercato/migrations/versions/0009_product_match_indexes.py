"""The catalog indexes import matching uses: products by GTIN in GTIN-14 form and by
(lower(brand), mpn), live rows only; they replace the plain GTIN index.

Built CONCURRENTLY, outside a transaction: `catalog.products` is an existing, busy table,
and a plain CREATE INDEX would block its writes for the whole build. Every statement is
IF [NOT] EXISTS, so a build that fails part way can simply be run again; the INVALID index
such a failed build leaves is dropped first (IF NOT EXISTS would keep it, unused).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _drop_if_invalid(name: str) -> None:
    if context.is_offline_mode():  # a script is being written: no database to look at
        return
    invalid = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'catalog' AND c.relname = :name"
            ),
            {"name": name},
        )
        .scalar()
    )
    if invalid:
        op.drop_index(name, table_name="products", schema="catalog", postgresql_concurrently=True)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        _drop_if_invalid("ix_products_brand_mpn")
        _drop_if_invalid("ix_products_gtin14")
        op.create_index(
            "ix_products_brand_mpn",
            "products",
            [sa.literal_column("lower(brand)"), "mpn"],
            unique=False,
            schema="catalog",
            postgresql_where=sa.text("mpn IS NOT NULL AND deleted_at IS NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_products_gtin14",
            "products",
            [sa.literal_column("lpad(gtin, 14, '0')")],
            unique=False,
            schema="catalog",
            postgresql_where=sa.text("gtin IS NOT NULL AND deleted_at IS NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index(
            "ix_products_gtin",
            table_name="products",
            schema="catalog",
            postgresql_concurrently=True,
            if_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_products_gtin",
            "products",
            ["gtin"],
            unique=False,
            schema="catalog",
            postgresql_where=sa.text("gtin IS NOT NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index(
            "ix_products_gtin14",
            table_name="products",
            schema="catalog",
            postgresql_concurrently=True,
            if_exists=True,
        )
        op.drop_index(
            "ix_products_brand_mpn",
            table_name="products",
            schema="catalog",
            postgresql_concurrently=True,
            if_exists=True,
        )
