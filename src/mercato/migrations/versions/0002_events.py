"""Events: the transactional outbox, the event log with dense positions, relay state, inbox.

Index specification:
- event_log primary key (position): resume and replay read `position > :after` in order.
- uq_event_log_event_id: an event enters the log once, whatever happens to the relay.
- ix_event_log_recorded_at: retention (next) prunes the oldest events by time.
- outbox primary key (seq): the relay takes the oldest committed events first.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS events")
    op.create_table(
        "event_log",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.Column("aggregate_type", sa.Text(), nullable=False),
        sa.Column("aggregate_id", sa.Text(), nullable=False),
        sa.Column("aggregate_version", sa.Integer(), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column(
            "trace_context",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.CheckConstraint("position > 0", name=op.f("ck_event_log_position_positive")),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_event_log")),
        sa.UniqueConstraint("event_id", name=op.f("uq_event_log_event_id")),
        schema="events",
    )
    op.create_index(
        "ix_event_log_recorded_at", "event_log", ["recorded_at"], unique=False, schema="events"
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_inbox")),
        schema="events",
    )
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.Column("aggregate_type", sa.Text(), nullable=False),
        sa.Column("aggregate_id", sa.Text(), nullable=False),
        sa.Column("aggregate_version", sa.Integer(), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column(
            "trace_context",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox")),
        schema="events",
    )
    op.create_table(
        "relay_state",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.Column("published_position", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_relay_state_single_row")),
        sa.CheckConstraint(
            "published_position <= last_position", name=op.f("ck_relay_state_published_not_ahead")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_state")),
        schema="events",
    )
    op.execute(
        "INSERT INTO events.relay_state (id, last_position, published_position) VALUES (1, 0, 0)"
    )


def downgrade() -> None:
    op.drop_table("relay_state", schema="events")
    op.drop_table("outbox", schema="events")
    op.drop_table("inbox", schema="events")
    op.drop_index("ix_event_log_recorded_at", table_name="event_log", schema="events")
    op.drop_table("event_log", schema="events")
    op.execute("DROP SCHEMA IF EXISTS events")
