"""The orders context's API shapes. Inputs forbid unknown fields."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from mercato.orders.rules import Status

MAX_LINES = 50
MAX_QUANTITY = 1_000
MAX_PAGE_SIZE = 100


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LineIn(Input):
    product_id: uuid.UUID
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)]


class OrderCreate(Input):
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=MAX_LINES)]


class OrderCancel(Input):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class OrderListQuery(Input):
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = 20
    cursor: Annotated[str, StringConstraints(max_length=512)] | None = None
    status: Status | None = None
    customer_id: uuid.UUID | None = None  # staff only
    created_from: datetime | None = None
    created_to: datetime | None = None


class LineOut(BaseModel):
    product_id: uuid.UUID
    sku: str
    name: str
    unit_price: Decimal
    quantity: int
    line_total: Decimal


class OrderOut(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    status: Status
    currency: str
    total: Decimal
    item_count: int
    reservation_expires_at: datetime | None
    cancel_reason: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    lines: list[LineOut]


class OrderEnvelope(BaseModel):
    data: OrderOut


class PageMeta(BaseModel):
    limit: int
    count: int
    next_cursor: str | None


class OrderPage(BaseModel):
    data: list[OrderOut]
    meta: PageMeta
