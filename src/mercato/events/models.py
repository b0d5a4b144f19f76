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
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from mercato.core.tables import schema_metadata, serves

SCHEMA = "events"
metadata = schema_metadata(SCHEMA)


def _event_columns() -> list[Column[object]]:
    return [
        Column("event_id", UUID(as_uuid=True), nullable=False),
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
    Column("seq", BigInteger, Identity(always=True)),
    # Ids are random UUIDs; uniqueness is enforced where it matters, in the log.
    *_event_columns(),
    PrimaryKeyConstraint(
        "seq",
        info=serves(
            "the relay's batch (`move_outbox_to_log`): `DELETE … WHERE seq IN (SELECT seq"
            " FROM events.outbox ORDER BY seq LIMIT $n)`, the oldest committed events "
            "first"
        ),
    ),
)

event_log = Table(
    "event_log",
    metadata,
    Column("position", BigInteger, autoincrement=False),
    *_event_columns(),
    Column(
        "recorded_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.clock_timestamp(),
    ),
    CheckConstraint("position > 0", name="position_positive"),
    UniqueConstraint(
        "event_id", info=serves("an event enters the log once; no query looks events up by id")
    ),
    # Retention (next) prunes the oldest events by time.
    Index(
        "ix_event_log_recorded_at",
        "recorded_at",
        info=serves(
            "retention pruning by age: `prune_log`'s `recorded_at < $1` (the planner may "
            "walk `pk_event_log` from the oldest position instead; both orders agree)"
        ),
    ),
    PrimaryKeyConstraint(
        "position",
        info=serves(
            "`read_log`: `position > $after [AND position <= $up_to] ORDER BY position "
            "LIMIT $n`, used by `GET /api/v1/events`, the stream hub's catch-up, stream "
            "replays from `after`, the relay's publishing, consumer groups, the webhook "
            "delivery job (from each subscription's cursor) and webhook replays; "
            "`oldest_retained` (`min(position)`: the 4010 check, the bounds of a webhook "
            "replay from a position)"
        ),
    ),
)

relay_state = Table(
    "relay_state",
    metadata,
    Column("id", SmallInteger),
    Column("last_position", BigInteger, nullable=False),
    Column("published_position", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
    CheckConstraint("published_position <= last_position", name="published_not_ahead"),
    PrimaryKeyConstraint(
        "id",
        info=serves("`positions`, `mark_published`, the relay's `… FOR UPDATE` of the single row"),
    ),
)

inbox = Table(
    "inbox",
    metadata,
    Column("consumer", Text),
    Column("event_id", UUID(as_uuid=True)),
    Column(
        "processed_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.clock_timestamp(),
    ),
    PrimaryKeyConstraint(
        "consumer",
        "event_id",
        info=serves("`claim_for_consumer` (the conflict target of its insert)"),
    ),
)


consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("consumer", Text),
    Column("position", BigInteger, nullable=False, server_default=text("0")),
    Column(
        "updated_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    ),
    PrimaryKeyConstraint(
        "consumer",
        info=serves(
            "`consumer_offset` (`consumer = $1`, each pass of a consumer group) and the "
            "conflict target of `set_consumer_offset`"
        ),
    ),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("consumer", Text),
    Column("event_id", UUID(as_uuid=True)),
    Column("position", BigInteger, nullable=False),
    Column("type", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=False),
    Column(
        "failed_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    ),
    Column("replay_requested_at", DateTime(timezone=True), nullable=True),
    Column("replayed_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint(
        "consumer",
        "event_id",
        info=serves(
            "the conflict target of `dead_letter`; `mark_replayed` and `request_replay` "
            "(`consumer = $1 [AND event_id = $2]`); `replays_requested` and "
            "`mercato events dlq list --consumer` by the leading column (rows are few)"
        ),
    ),
)
