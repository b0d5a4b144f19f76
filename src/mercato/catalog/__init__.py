"""The catalog context: categories (a tree), products, inventory counts, search.

Other contexts use only what this facade exports. Its tables live in the `catalog` schema.
"""

from mercato.catalog.errors import ProductNotFound
from mercato.catalog.events import EVENT_PAYLOADS

__all__ = ["EVENT_PAYLOADS", "ProductNotFound"]
