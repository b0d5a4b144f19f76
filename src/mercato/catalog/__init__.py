"""The catalog context: categories (a tree), products, inventory counts, search.

Other contexts use only what this facade exports. Its tables live in the `catalog` schema.
"""

from mercato.catalog.errors import OutOfStock, ProductNotFound, ProductUnavailable
from mercato.catalog.events import (
    EVENT_PAYLOADS,
    PRODUCT_CREATED,
    PRODUCT_UPDATED,
    product_event,
)
from mercato.catalog.repository import PRODUCT_COLUMNS, list_categories, product_payload_sql
from mercato.catalog.schemas import CategoryCreate, ProductCreate
from mercato.catalog.service import create_category
from mercato.catalog.stock import ReservedProduct, StockLine, TakenStock
from mercato.catalog.stock import release as release_stock
from mercato.catalog.stock import take as take_stock

__all__ = [
    "EVENT_PAYLOADS",
    "PRODUCT_COLUMNS",
    "PRODUCT_CREATED",
    "PRODUCT_UPDATED",
    "CategoryCreate",
    "OutOfStock",
    "ProductCreate",
    "ProductNotFound",
    "ProductUnavailable",
    "ReservedProduct",
    "StockLine",
    "TakenStock",
    "create_category",
    "list_categories",
    "product_event",
    "product_payload_sql",
    "release_stock",
    "take_stock",
]
