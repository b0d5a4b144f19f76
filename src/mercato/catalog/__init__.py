"""The catalog context: categories (a tree), products, inventory counts, search.

Other contexts use only what this facade exports. Its tables live in the `catalog` schema.
"""

from mercato.catalog.errors import OutOfStock, ProductNotFound, ProductUnavailable
from mercato.catalog.events import EVENT_PAYLOADS
from mercato.catalog.stock import ReservedProduct, StockLine
from mercato.catalog.stock import release as release_stock
from mercato.catalog.stock import reserve as reserve_stock

__all__ = [
    "EVENT_PAYLOADS",
    "OutOfStock",
    "ProductNotFound",
    "ProductUnavailable",
    "ReservedProduct",
    "StockLine",
    "release_stock",
    "reserve_stock",
]
