"""Keyset positions for product listings: what a cursor stores for each sort."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from mercato.catalog.rules import SORT_KEYS, ProductFilters, ProductSort
from mercato.core.errors import InvalidCursor
from mercato.core.pagination import fingerprint


def query_fingerprint(
    sort: ProductSort, category_id: uuid.UUID | None, filters: ProductFilters
) -> str:
    return fingerprint(
        sort.value,
        category_id,
        filters.min_price,
        filters.max_price,
        filters.brand,
        filters.in_stock,
        filters.tsquery,
    )


def position_of(row: asyncpg.Record, sort: ProductSort) -> list[Any]:
    column = SORT_KEYS[sort].column
    value = row[column]
    if isinstance(value, datetime):
        value = value.isoformat()
    elif isinstance(value, Decimal):
        value = str(value)
    return [value, str(row["id"])]


def parse_position(raw: list[Any], sort: ProductSort) -> list[Any]:
    """Rebuild typed keyset values from a decoded cursor; anything odd is an invalid cursor."""
    column = SORT_KEYS[sort].column
    try:
        value, raw_id = raw
        row_id = uuid.UUID(raw_id)
        if column == "created_at":
            return [datetime.fromisoformat(value), row_id]
        if column == "price":
            return [Decimal(value), row_id]
        if column == "rank":
            return [float(value), row_id]
        if not isinstance(value, str):
            raise TypeError(column)
        return [value, row_id]
    except (ValueError, TypeError, InvalidOperation, AttributeError) as exc:
        raise InvalidCursor() from exc
