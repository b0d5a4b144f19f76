"""The payments context's tables, in the `payments` schema.

- `payments`: one attempt to pay an order through the provider. `provider_key` is the
  idempotency key every provider call for this attempt uses, so retries never charge twice.
  At most one attempt per order may be open or succeeded (a partial unique index).
- `webhook_events`: provider event ids already processed (duplicates are acknowledged and
  ignored), kept `payment_webhook_event_days`.
- `idempotency_keys`: stored answers to unsafe payment requests (core/idempotency.py).
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

from mercato.core.tables import idempotency_table, schema_metadata, serves

SCHEMA = "payments"
metadata = schema_metadata(SCHEMA)

STATUSES = (
    "pending",  # created here; the provider has not answered yet
    "processing",  # the provider is settling it (a webhook will tell)
    "succeeded",
    "failed",
    "canceled",
    "refund_pending",  # succeeded, but the order could no longer take it: to refund
    "refunded",
    "partially_refunded",
)

payments = Table(
    "payments",
    metadata,
    Column("id", UUID(as_uuid=True), server_default=func.gen_random_uuid()),
    Column("order_id", UUID(as_uuid=True), nullable=False),
    Column("customer_id", UUID(as_uuid=True), nullable=False),
    Column("amount", Integer, nullable=False),  # minor units
    Column("currency", Text, nullable=False),
    Column("payment_method", Text, nullable=False),
    Column("provider_key", Text, nullable=False),
    Column("intent_id", Text),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("failure_code", Text),
    Column("refunded_amount", Integer, nullable=False, server_default=text("0")),
    # While a request is talking to the provider for this attempt, others wait or get 409.
    Column("busy_until", DateTime(timezone=True)),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="status_known"
    ),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("refunded_amount BETWEEN 0 AND amount", name="refund_within_amount"),
    Index(
        "ix_payments_order_id",
        "order_id",
        info=serves("`payments_of` (`GET /orders/{id}/payments`, every attempt of the order)"),
    ),
    Index(
        "uq_payments_order_id_open",
        "order_id",
        unique=True,
        postgresql_where=text("status IN ('pending', 'processing', 'succeeded')"),
        info=serves(
            "at most one live attempt per order (an insert that races another: "
            "`PAYMENT_IN_PROGRESS`); `open_payment_of` (paying's step 1, refunds, "
            "compensation), whose `WHERE` repeats the predicate"
        ),
    ),
    # The reconciliation job's queue.
    Index(
        "ix_payments_updated_at_unsettled",
        "updated_at",
        postgresql_where=text("status IN ('pending', 'processing', 'refund_pending')"),
        info=serves(
            "reconciliation's queue: `unsettled` (`… AND updated_at < now() - $1 ORDER BY"
            " updated_at LIMIT $2 FOR UPDATE SKIP LOCKED`; the claim, `busy_until`, is "
            "checked on the row)"
        ),
    ),
    PrimaryKeyConstraint(
        "id",
        info=serves(
            "`get_payment` (`… FOR UPDATE` in `apply_intent` and refunds; the webhook's "
            "fallback by `metadata.payment_id`), `update_payment`, `claim`, `release`"
        ),
    ),
    UniqueConstraint(
        "provider_key", info=serves("uniqueness only; no query looks an attempt up by its key")
    ),
    UniqueConstraint(
        "intent_id", info=serves("`payment_by_intent` (`… FOR UPDATE`): the provider's webhooks")
    ),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("event_id", Text),
    Column("type", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint(
        "event_id",
        info=serves(
            "`record_webhook` (`INSERT … ON CONFLICT (event_id) DO NOTHING`: the duplicate check)"
        ),
    ),
    Index(
        "ix_webhook_events_received_at",
        "received_at",
        info=serves(
            "`prune_webhook_events` (`… WHERE received_at < $1 ORDER BY received_at LIMIT $2`)"
        ),
    ),
)

idempotency_keys = idempotency_table(metadata)
