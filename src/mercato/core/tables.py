"""Shared table conventions: one PostgreSQL schema per context, one constraint naming rule."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def serves(queries: str) -> dict[str, str]:
    """`info` for an index, or for the constraint that makes one: the queries it serves.
    `mercato schema docs` prints it in docs/schema.md and refuses an index without one."""
    return {"serves": queries}


def schema_metadata(schema: str) -> MetaData:
    """The metadata a context declares its tables on: its own schema, shared names."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def idempotency_table(metadata: MetaData) -> Table:
    """Stored answers to unsafe requests, by (caller, Idempotency-Key): a context that
    takes such requests declares one in its own schema (see core/idempotency.py)."""
    return Table(
        "idempotency_keys",
        metadata,
        Column("owner", Text),
        Column("key", Text),
        Column("fingerprint", LargeBinary, nullable=False),
        Column("status_code", SmallInteger, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint(
            "owner",
            "key",
            info=serves(
                "`replay` (`owner = $1 AND key = $2`, the age checked on the row), the "
                "conflict target of `remember` (core/idempotency.py)"
            ),
        ),
        Index(
            f"ix_{metadata.schema}_idempotency_keys_created_at",
            "created_at",
            info=serves(
                "`prune` (`created_at < now() - 24 h`): by the expiry sweep (orders) and "
                "reconciliation (payments)"
            ),
        ),
    )
