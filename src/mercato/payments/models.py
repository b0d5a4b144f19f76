"""The payments context's tables, in the `payments` schema.

- `payments`: one attempt to pay an order through the provider. `provider_key` is the
  idempotency key every provider call for this attempt uses, so retries never charge twice.
  At most one attempt per order may be open or succeeded (a partial unique index).
- `webhook_events`: provider event ids already processed (duplicates are acknowledged and
  ignored).
- `idempotency_keys`: stored answers to unsafe payment requests (core/idempotency.py).
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

from mercato.core.tables import idempotency_table, schema_metadata

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
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("order_id", UUID(as_uuid=True), nullable=False),
    Column("customer_id", UUID(as_uuid=True), nullable=False),
    Column("amount", Integer, nullable=False),  # minor units
    Column("currency", Text, nullable=False),
    Column("payment_method", Text, nullable=False),
    Column("provider_key", Text, nullable=False, unique=True),
    Column("intent_id", Text, unique=True),
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
    Index("ix_payments_order_id", "order_id"),
    Index(
        "uq_payments_order_id_open",
        "order_id",
        unique=True,
        postgresql_where=text("status IN ('pending', 'processing', 'succeeded')"),
    ),
    # The reconciliation job's queue.
    Index(
        "ix_payments_updated_at_unsettled",
        "updated_at",
        postgresql_where=text("status IN ('pending', 'processing', 'refund_pending')"),
    ),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("type", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

idempotency_keys = idempotency_table(metadata)
