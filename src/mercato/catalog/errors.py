"""The catalog's domain errors, each with its stable code."""

from __future__ import annotations

from mercato.core.errors import Conflict, NotFound, ValidationFailed


class ProductNotFound(NotFound):
    code = "PRODUCT_NOT_FOUND"
    message = "No such product."


class CategoryNotFound(NotFound):
    code = "CATEGORY_NOT_FOUND"
    message = "No such category."


class UnknownCategory(ValidationFailed):
    code = "UNKNOWN_CATEGORY"
    message = "The category given does not exist."


class SkuAlreadyExists(Conflict):
    code = "SKU_ALREADY_EXISTS"
    message = "A product with this SKU already exists."


class CategorySlugTaken(Conflict):
    code = "CATEGORY_SLUG_TAKEN"
    message = "A sibling category already uses this slug."


class CategoryNotEmpty(Conflict):
    code = "CATEGORY_NOT_EMPTY"
    message = (
        "The category still has products (deleted ones count: they can be restored); "
        "move them first with move_products_to=<category id>."
    )


class CategoryHasChildren(Conflict):
    code = "CATEGORY_HAS_CHILDREN"
    message = "The category still has subcategories; delete or move them first."


class CategoryCycle(Conflict):
    code = "CATEGORY_CYCLE"
    message = "A category cannot be moved under itself or one of its descendants."


class CategoryTooDeep(ValidationFailed):
    code = "CATEGORY_TOO_DEEP"
    message = "Categories may not be nested deeper than this."


class ProductNotDeleted(Conflict):
    code = "PRODUCT_NOT_DELETED"
    message = "Only a deleted product can be restored."


class OutOfStock(Conflict):
    code = "OUT_OF_STOCK"
    message = "Not enough stock for one or more lines; nothing was reserved."


class ProductUnavailable(ValidationFailed):
    code = "PRODUCT_UNAVAILABLE"
    message = "One or more products do not exist or are not for sale."


class ReservationNotFound(NotFound):
    code = "STOCK_RESERVATION_NOT_FOUND"
    message = "No such stock reservation."


class ReservationMismatch(ValidationFailed):
    code = "STOCK_RESERVATION_MISMATCH"
    message = "This reservation id was used for other lines."


class ReservationReleased(Conflict):
    code = "STOCK_RESERVATION_RELEASED"
    message = "This reservation was released (by its caller, or at its deadline)."
