"""The indexes retention reads: ended import jobs by the time they ended, and the provider's
webhook event ids by the time they arrived.

Built CONCURRENTLY, outside a transaction, as in 0009: `payments.webhook_events` takes a row
with every provider event, and a plain CREATE INDEX would block those inserts for the whole
build. Every statement is IF [NOT] EXISTS, so a build that fails part way can simply be run
again; the INVALID index such a failed build leaves is dropped first.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (schema, table, index)
INDEXES = (
    ("ingest", "jobs", "ix_jobs_ended"),
    ("payments", "webhook_events", "ix_webhook_events_received_at"),
)


def _drop_if_invalid(schema: str, table: str, name: str) -> None:
    if context.is_offline_mode():  # a script is being written: no database to look at
        return
    invalid = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = :schema AND c.relname = :name"
            ),
            {"schema": schema, "name": name},
        )
        .scalar()
    )
    if invalid:
        op.drop_index(name, table_name=table, schema=schema, postgresql_concurrently=True)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for schema, table, name in INDEXES:
            _drop_if_invalid(schema, table, name)
        op.create_index(
            "ix_jobs_ended",
            "jobs",
            ["finished_at"],
            unique=False,
            schema="ingest",
            postgresql_where=sa.text("status IN ('succeeded', 'failed')"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_webhook_events_received_at",
            "webhook_events",
            ["received_at"],
            unique=False,
            schema="payments",
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for schema, table, name in reversed(INDEXES):
            op.drop_index(
                name,
                table_name=table,
                schema=schema,
                postgresql_concurrently=True,
                if_exists=True,
            )
