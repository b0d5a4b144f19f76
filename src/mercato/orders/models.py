"""The orders context's tables, in the `orders` schema.

- `orders`: one row per order; `status` moves only along the transition table in rules.py.
  Prices are frozen on the order's lines when it is placed. `reservation_expires_at` is set
  while stock is held for a pending payment.
- `order_lines`: what was bought, at which price.
- `idempotency_keys`: stored answers to unsafe order requests (core/idempotency.py).
- `stock_reservations`: orders whose stock the catalog holds over HTTP (the split
  deployment), and what the catalog still has to be told about it.

`customer_id` is the identity context's user id; no foreign key crosses the schemas.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

from mercato.core.tables import idempotency_table, schema_metadata, serves

SCHEMA = "orders"
metadata = schema_metadata(SCHEMA)

STATUSES = (
    "pending_payment",
    "paid",
    "fulfilled",
    "cancelled",
    "expired",
    "refunded",
    "partially_refunded",
)

orders = Table(
    "orders",
    metadata,
    Column("id", UUID(as_uuid=True), server_default=func.gen_random_uuid()),
    Column("customer_id", UUID(as_uuid=True), nullable=False),
    Column("status", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("total", Numeric(12, 2), nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("reservation_expires_at", DateTime(timezone=True)),
    Column("cancel_reason", Text),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="status_known"
    ),
    CheckConstraint("total >= 0", name="total_not_negative"),
    CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_code"),
    # A customer's orders, newest first (their list and its cursor).
    Index(
        "ix_orders_customer_id_created_at_id",
        "customer_id",
        "created_at",
        "id",
        info=serves(
            "`GET /orders` for a customer (and staff's `customer_id=`): `customer_id = $1"
            " [AND (created_at, id) < cursor] ORDER BY created_at DESC, id DESC LIMIT n +"
            " 1`, walked backward"
        ),
    ),
    # Staff lists: every order, or one status, newest first.
    Index(
        "ix_orders_created_at_id",
        "created_at",
        "id",
        info=serves(
            "staff's `GET /orders` without `customer_id` or `status` (the "
            "`created_from`/`created_to` range too): keyset on `(created_at, id)`, walked"
            " backward"
        ),
    ),
    Index(
        "ix_orders_status_created_at_id",
        "status",
        "created_at",
        "id",
        info=serves("staff's `GET /orders?status=` (with a date range too)"),
    ),
    # The expiry sweep's queue: pending orders by deadline.
    Index(
        "ix_orders_reservation_expires_at_pending",
        "reservation_expires_at",
        postgresql_where=text("status = 'pending_payment'"),
        info=serves(
            "the expiry sweep's queue: `due_for_expiry` (`status = 'pending_payment' AND "
            "reservation_expires_at < now() ORDER BY reservation_expires_at LIMIT $1 FOR "
            "UPDATE SKIP LOCKED`); only pending orders are in it"
        ),
    ),
    PrimaryKeyConstraint(
        "id",
        info=serves(
            "`get_order` (`GET /orders/{id}`, and `… FOR UPDATE` before every status "
            "change, `payable_order`, `settle_order`), `order_owner` (the stream's order "
            "topics, `GET /orders/{id}/payments`), `statuses` (`id = ANY(…)`, "
            "reconciliation); the FK check of `order_lines`"
        ),
    ),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column(
        "order_id",
        UUID(as_uuid=True),
        ForeignKey("orders.id", ondelete="CASCADE"),
    ),
    Column("line_no", SmallInteger),
    Column("product_id", UUID(as_uuid=True), nullable=False),
    Column("sku", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("unit_price", Numeric(12, 2), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("line_total", Numeric(12, 2), nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
    PrimaryKeyConstraint(
        "order_id",
        "line_no",
        info=serves(
            "`lines_of` (`order_id = ANY($1) ORDER BY order_id, line_no`: one query for a"
            " page of orders or a sweep batch); the cascade from `orders`"
        ),
    ),
)

idempotency_keys = idempotency_table(metadata)

STOCK_STATES = ("confirming", "confirmed", "releasing", "released")

# One row per order placed through the catalog's stock port over HTTP; orders whose stock was
# taken in process have none (their stock goes back in process, in the closing transaction).
# `confirming` and `releasing` are calls the catalog still has to receive: written in the
# order's own transaction, made after its commit, and retried from `next_attempt_at` on
# until the catalog has answered (the order side's outbox for its saga).
stock_reservations = Table(
    "stock_reservations",
    metadata,
    Column(
        "order_id",
        UUID(as_uuid=True),
        ForeignKey("orders.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("state", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        "state IN (" + ", ".join(f"'{s}'" for s in STOCK_STATES) + ")", name="state_known"
    ),
    PrimaryKeyConstraint(
        "order_id",
        info=serves(
            "`owe_release` (`order_id = ANY($1)`, closing orders), `stock_state`, "
            "`call_made`, `call_failed`"
        ),
    ),
    Index(
        "ix_stock_reservations_next_attempt_at_owed",
        "next_attempt_at",
        postgresql_where=text("state IN ('confirming', 'releasing')"),
        info=serves(
            "the stock-call job's lease: `state IN (…) AND next_attempt_at <= now() "
            "ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED`"
        ),
    ),
)
