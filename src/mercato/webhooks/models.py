"""The webhooks context's tables, in the `webhooks` schema.

- `subscriptions`: a client endpoint and the event types it wants. Its signing secret is
  sealed with the data key ring (core/crypto.py); during a rotation the previous secret is
  kept, sealed too, until `previous_secret_expires_at`. `delivered_position` is its cursor
  in the event log: every event up to it was delivered or skipped. `failures` counts the
  failed attempts at the event after the cursor; `next_attempt_at` is when it is due (or
  when the lease of the worker delivering it runs out), and `claim_token` names that
  worker's lease, so a worker whose lease was lost, or whose subscription an
  administrator changed meanwhile, cannot move the cursor. Only `active` subscriptions are
  delivered; `paused_at` says that the system stopped one (retries exhausted).
- `deliveries`: every attempt, with its outcome (`succeeded`, `failed`: retried later,
  `dead`: the last attempt failed and the subscription was paused).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from mercato.core.tables import schema_metadata, serves

SCHEMA = "webhooks"
metadata = schema_metadata(SCHEMA)

DELIVERY_STATUSES = ("succeeded", "failed", "dead")

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", UUID(as_uuid=True), server_default=func.gen_random_uuid()),
    Column("url", Text, nullable=False),
    Column("event_types", ARRAY(Text), nullable=False),
    Column("description", Text),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("secret", LargeBinary, nullable=False),
    Column("previous_secret", LargeBinary),
    Column("previous_secret_expires_at", DateTime(timezone=True)),
    Column("delivered_position", BigInteger, nullable=False),
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("claim_token", UUID(as_uuid=True)),
    Column("paused_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_by", UUID(as_uuid=True)),  # identity's user id; no cross-schema key
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("cardinality(event_types) > 0", name="event_types_not_empty"),
    CheckConstraint("delivered_position >= 0", name="position_not_negative"),
    CheckConstraint("failures >= 0", name="failures_not_negative"),
    # The delivery job's queue: due subscriptions, by due time.
    Index(
        "ix_subscriptions_next_attempt_at_active",
        "next_attempt_at",
        postgresql_where=text("active"),
        info=serves(
            "the delivery job's queue: `claim_due`'s inner `SELECT id … WHERE active AND "
            "next_attempt_at <= now() AND delivered_position < $1 ORDER BY "
            "next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED` (an index range on "
            "`next_attempt_at`; `delivered_position`, behind the log's end, is checked on"
            " the row). Paused and disabled subscriptions are not in it"
        ),
    ),
    # The admin list, newest first.
    Index(
        "ix_subscriptions_created_at_id",
        "created_at",
        "id",
        info=serves("`GET /webhooks/subscriptions`: keyset on `(created_at, id)`, walked backward"),
    ),
    PrimaryKeyConstraint(
        "id",
        info=serves(
            "`get_subscription` (`GET /webhooks/subscriptions/{id}`, the subscription of "
            "a manual replay, and `… FOR UPDATE` before every administrator change: "
            "`PATCH`, `rotate-secret`, `replay`), `update_subscription`, "
            "`delete_subscription`; the delivery job's lease-guarded updates (`advance`, "
            "`retry_later`, `stop_delivering`, `release`: `WHERE id = $1 AND claim_token "
            "= $2`) and the outer `UPDATE … WHERE id IN (…)` of `claim_due`; "
            "`sealed_secrets` (`id > $1 ORDER BY id LIMIT $2 FOR UPDATE`: the batches of "
            "`mercato webhooks reseal`) and `reseal`; the FK check when an attempt is "
            "inserted"
        ),
    ),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", UUID(as_uuid=True), server_default=func.gen_random_uuid()),
    Column(
        "subscription_id",
        UUID(as_uuid=True),
        ForeignKey("webhooks.subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("event_type", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("replay", Boolean, nullable=False, server_default=text("false")),
    Column("status", Text, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("duration_ms", Integer, nullable=False),
    Column("response_excerpt", Text),
    Column("attempted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in DELIVERY_STATUSES) + ")",
        name="status_known",
    ),
    CheckConstraint("attempt > 0", name="attempt_positive"),
    CheckConstraint("char_length(response_excerpt) <= 500", name="excerpt_short"),
    # The attempts log, newest first, overall and per subscription.
    Index(
        "ix_deliveries_attempted_at_id",
        "attempted_at",
        "id",
        info=serves(
            "`GET /webhooks/deliveries` without `subscription_id`: keyset on "
            "`(attempted_at, id)`, walked backward (a `status` filter is checked on the "
            "rows); `prune_deliveries`' inner `SELECT id … WHERE attempted_at < $1 ORDER "
            "BY attempted_at LIMIT $2`"
        ),
    ),
    Index(
        "ix_deliveries_subscription_id_attempted_at_id",
        "subscription_id",
        "attempted_at",
        "id",
        info=serves(
            "`GET /webhooks/deliveries?subscription_id=` (keyset, walked backward); "
            "`attempts_at` (`subscription_id = $1 AND event_id = $2`, numbering a manual "
            "replay; `event_id` checked on the rows); the `ON DELETE CASCADE` from "
            "`subscriptions`, by its leading column"
        ),
    ),
    PrimaryKeyConstraint(
        "id",
        info=serves(
            "`get_delivery` (`POST /webhooks/deliveries/{id}/replay`); the outer `DELETE "
            "… WHERE id IN (…)` of `prune_deliveries`"
        ),
    ),
)
