"""The catalog's API shapes. Inputs forbid unknown fields: nothing is mass-assigned."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from mercato.catalog.rules import MAX_PAGE_SIZE, ProductSort, gtin_is_valid

Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._/-]+$")]
Slug = Annotated[
    str, StringConstraints(min_length=1, max_length=120, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
]
ProductName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
CategoryName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)
]
Description = Annotated[str, StringConstraints(max_length=5000)]
Brand = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Mpn = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
AttributeValue = Annotated[str, StringConstraints(max_length=500)] | bool | int | float
Attributes = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], AttributeValue],
    Field(max_length=50),
]
Inventory = Annotated[int, Field(ge=0, le=2_000_000_000)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def _check_gtin(value: str | None) -> str | None:
    if value is not None and not gtin_is_valid(value):
        raise PydanticCustomError(
            "gtin_check_digit", "not a valid GTIN-8/12/13/14 (digits and check digit)"
        )
    return value


class ProductCreate(Input):
    sku: Sku
    name: ProductName
    description: Description | None = None
    brand: Brand | None = None
    gtin: str | None = Field(default=None, max_length=14)
    mpn: Mpn | None = None
    price: Price
    currency: Currency = "USD"
    category_id: uuid.UUID | None = None
    inventory_count: Inventory = 0
    attributes: Attributes = Field(default_factory=dict)
    is_active: bool = True

    _gtin = field_validator("gtin")(_check_gtin)


class ProductUpdate(Input):
    """Every field optional; a field sent as null is cleared (where it may be empty)."""

    sku: Sku | None = None
    name: ProductName | None = None
    description: Description | None = None
    brand: Brand | None = None
    gtin: str | None = Field(default=None, max_length=14)
    mpn: Mpn | None = None
    price: Price | None = None
    currency: Currency | None = None
    category_id: uuid.UUID | None = None
    inventory_count: Inventory | None = None
    attributes: Attributes | None = None
    is_active: bool | None = None

    _gtin = field_validator("gtin")(_check_gtin)

    NOT_NULLABLE: ClassVar[frozenset[str]] = frozenset(
        {"sku", "name", "price", "currency", "inventory_count", "attributes", "is_active"}
    )

    def changes(self) -> dict[str, Any]:
        changes = {name: getattr(self, name) for name in self.model_fields_set}
        nulls = sorted(n for n, v in changes.items() if v is None and n in self.NOT_NULLABLE)
        if nulls:
            raise ValueError(f"these fields cannot be null: {', '.join(nulls)}")
        return changes


class CategoryCreate(Input):
    name: CategoryName
    slug: Slug | None = None
    parent_id: uuid.UUID | None = None
    description: Description | None = None


class CategoryUpdate(Input):
    name: CategoryName | None = None
    slug: Slug | None = None
    parent_id: uuid.UUID | None = None
    description: Description | None = None


# Query strings of the public reads.


class ProductReadQuery(BaseModel):
    include_deleted: bool = Field(default=False, description="Staff only: show a deleted product.")


class ProductListQuery(BaseModel):
    q: str | None = Field(
        default=None, max_length=200, description="Full-text search, prefix-matched."
    )
    category_id: uuid.UUID | None = Field(
        default=None, description="A category and its descendants."
    )
    min_price: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)] | None = None
    max_price: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)] | None = None
    brand: str | None = Field(default=None, min_length=1, max_length=100)
    in_stock: bool | None = None
    sort: ProductSort | None = Field(
        default=None, description="Default: relevance with q, else newest."
    )
    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(default=None, max_length=512)


# Output shapes: used for the OpenAPI document. Handlers serialise rows directly (see
# `repository.product_json`), and a test checks that both agree.


class ProductOut(BaseModel):
    id: uuid.UUID
    sku: str
    name: str
    description: str | None
    brand: str | None
    gtin: str | None
    # Not required in the schema: added after v1 of the product events was published.
    mpn: str | None = None
    price: str = Field(description='Decimal string, two places: "12.50".')
    currency: str
    category_id: uuid.UUID | None
    inventory_count: int
    attributes: dict[str, Any]
    is_active: bool
    version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class CategoryOut(BaseModel):
    id: uuid.UUID
    parent_id: uuid.UUID | None
    name: str
    slug: str
    path: str
    depth: int
    description: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class CategoryNode(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    depth: int
    children: list[CategoryNode]


class PageMeta(BaseModel):
    limit: int
    count: int
    next_cursor: str | None


class ProductEnvelope(BaseModel):
    data: ProductOut
    meta: dict[str, Any]


class ProductPage(BaseModel):
    data: list[ProductOut]
    meta: PageMeta


class CategoryEnvelope(BaseModel):
    data: CategoryOut
    meta: dict[str, Any]


class CategoryTree(BaseModel):
    data: list[CategoryNode]
    meta: dict[str, Any]


# --- stock reservations (the stock port over HTTP) -----------------------------------------


class ReservationLineIn(Input):
    product_id: uuid.UUID
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]


class ReservationCreate(Input):
    lines: Annotated[list[ReservationLineIn], Field(min_length=1, max_length=100)]


class ReservedLineOut(BaseModel):
    product_id: uuid.UUID
    sku: str
    name: str
    unit_price: Decimal
    currency: str
    quantity: int


class ReservationOut(BaseModel):
    id: uuid.UUID
    status: str  # reserved, confirmed, released
    expires_at: datetime | None
    lines: list[ReservedLineOut]


class ReservationEnvelope(BaseModel):
    data: ReservationOut
