"""The event backbone's tables, in the `events` schema.

- `outbox`: events written by use cases, in their own transaction. Rows live here only
  until the relay moves them.
- `event_log`: every committed event with its dense, gap-free stream position. Streams,
  consumers and resumes all read from here.
- `relay_state`: one row: the last position assigned and the last one published.
- `inbox`: (consumer, event id) pairs already processed, for idempotent consumers.
- `consumer_offsets`: how far each consumer group has read the log.
- `dead_letters`: events a consumer gave up on after its retries, until replayed.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from mercato.core.tables import schema_metadata

SCHEMA = "events"
metadata = schema_metadata(SCHEMA)


def _event_columns(*, unique_id: bool) -> list[Column[object]]:
    return [
        Column("event_id", UUID(as_uuid=True), nullable=False, unique=unique_id),
        Column("type", Text, nullable=False),
        Column("schema_version", SmallInteger, nullable=False),
        Column("aggregate_type", Text, nullable=False),
        Column("aggregate_id", Text, nullable=False),
        Column("aggregate_version", Integer, nullable=False),
        Column(
            "occurred_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=func.clock_timestamp(),
        ),
        Column("trace_context", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("payload", JSONB, nullable=False),
    ]


outbox = Table(
    "outbox",
    metadata,
    # Insert order. Used only to order the events of one relay batch: within a batch,
    # a later write to the same aggregate always has a larger seq (it waited for the
    # earlier writer's row lock), so per-aggregate order holds.
    Column("seq", BigInteger, Identity(always=True), primary_key=True),
    # Ids are random UUIDs; uniqueness is enforced where it matters, in the log.
    *_event_columns(unique_id=False),
)

event_log = Table(
    "event_log",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    *_event_columns(unique_id=True),
    Column(
        "recorded_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.clock_timestamp(),
    ),
    CheckConstraint("position > 0", name="position_positive"),
    # Retention (next) prunes the oldest events by time.
    Index("ix_event_log_recorded_at", "recorded_at"),
)

relay_state = Table(
    "relay_state",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("last_position", BigInteger, nullable=False),
    Column("published_position", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
    CheckConstraint("published_position <= last_position", name="published_not_ahead"),
)

inbox = Table(
    "inbox",
    metadata,
    Column("consumer", Text, primary_key=True),
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column(
        "processed_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.clock_timestamp(),
    ),
)


consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("consumer", Text, primary_key=True),
    Column("position", BigInteger, nullable=False, server_default=text("0")),
    Column(
        "updated_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    ),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("consumer", Text, primary_key=True),
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("type", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=False),
    Column(
        "failed_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    ),
    Column("replay_requested_at", DateTime(timezone=True), nullable=True),
    Column("replayed_at", DateTime(timezone=True), nullable=True),
)
