"""The catalog's HTTP routes: translate HTTP to a use case and back, nothing more."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from mercato.catalog import repository, service
from mercato.catalog.errors import CategoryNotFound, ProductNotFound
from mercato.catalog.pagination import parse_position, position_of, query_fingerprint
from mercato.catalog.rules import ProductFilters, ProductSort, prefix_tsquery
from mercato.catalog.schemas import (
    CategoryCreate,
    CategoryEnvelope,
    CategoryTree,
    CategoryUpdate,
    ProductCreate,
    ProductEnvelope,
    ProductListQuery,
    ProductPage,
    ProductReadQuery,
    ProductUpdate,
)
from mercato.core.access import PUBLIC, optional_principal, requires, route_adder
from mercato.core.deps import cursor_codec, database
from mercato.core.errors import ValidationFailed
from mercato.core.http import (
    cached_json,
    content_etag,
    envelope,
    expected_version,
    json_with_etag,
    version_etag,
)
from mercato.core.pagination import next_page
from mercato.core.routing import path_uuid, query_model


def _resource(request: Request, data: dict[str, Any], version: int) -> Response:
    """A single resource read: answers 304 when the client's copy is current."""
    return cached_json(request, orjson.dumps(envelope(data)), version_etag(version))


def _written(data: dict[str, Any], version: int, status: int = 200) -> Response:
    return json_with_etag(orjson.dumps(envelope(data)), version_etag(version), status_code=status)


# --- products ---------------------------------------------------------------------------


# Hot public reads run as direct routes (see core/routing.py): each has a handler that
# takes the request and a `*_doc` signature that documents the operation.


async def get_product(request: Request) -> Response:
    product_id = path_uuid(request, "product_id")
    params = query_model(request, ProductReadQuery)
    principal = optional_principal(request) if "authorization" in request.headers else None
    is_admin = principal is not None and principal.can("products:write")
    row = await repository.get_product(
        database(request).reader,
        product_id,
        include_inactive=is_admin,
        include_deleted=params.include_deleted and is_admin,
    )
    if row is None:
        raise ProductNotFound()
    response = _resource(request, repository.product_json(row), row["version"])
    response.headers["vary"] = "Authorization"
    return response


def get_product_doc(
    product_id: uuid.UUID, params: Annotated[ProductReadQuery, Query()]
) -> ProductEnvelope:
    raise NotImplementedError  # documents the operation; `get_product` serves it


async def list_products(request: Request) -> Response:
    params = query_model(request, ProductListQuery)
    db = database(request)
    cursors = cursor_codec(request)
    q = params.q
    tsquery = prefix_tsquery(q) if q is not None else None
    sort = params.sort or (ProductSort.RELEVANCE if q is not None else ProductSort.NEWEST)
    if sort is ProductSort.RELEVANCE and q is None:
        raise ValidationFailed(details=[{"field": "query.sort", "message": "relevance needs q"}])
    filters = ProductFilters(
        min_price=params.min_price,
        max_price=params.max_price,
        brand=params.brand,
        in_stock=params.in_stock,
        tsquery=tsquery,
    )
    fingerprint = query_fingerprint(sort, params.category_id, filters)
    rows: list[Any] = []
    if q is None or tsquery is not None:  # a q with no searchable word matches nothing
        after = (
            parse_position(cursors.decode(fingerprint, params.cursor), sort)
            if params.cursor
            else None
        )
        filters = await service.resolve_filters(
            db.reader, category_id=params.category_id, filters=filters
        )
        rows = await repository.list_products(
            db.reader, filters=filters, sort=sort, after=after, limit=params.limit + 1
        )
    rows, next_cursor = next_page(
        cursors, fingerprint, rows, limit=params.limit, position=lambda row: position_of(row, sort)
    )
    body = orjson.dumps(
        envelope(
            [repository.product_json(row) for row in rows],
            {"limit": params.limit, "count": len(rows), "next_cursor": next_cursor},
        )
    )
    return cached_json(request, body, content_etag(body))


def list_products_doc(params: Annotated[ProductListQuery, Query()]) -> ProductPage:
    raise NotImplementedError  # documents the operation; `list_products` serves it


async def create_product(request: Request, data: ProductCreate) -> Response:
    db = database(request)
    async with db.transaction() as conn:
        row = await service.create_product(conn, data)
    response = _written(repository.product_json(row), row["version"], status=201)
    response.headers["location"] = f"/api/v1/products/{row['id']}"
    return response


async def update_product(request: Request, product_id: uuid.UUID, data: ProductUpdate) -> Response:
    db = database(request)
    version = expected_version(request)
    try:
        changes = data.changes()
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from exc
    async with db.transaction() as conn:
        row = await service.update_product(
            conn, product_id, changes=changes, expected_version=version
        )
    return _written(repository.product_json(row), row["version"])


async def delete_product(request: Request, product_id: uuid.UUID) -> Response:
    db = database(request)
    version = expected_version(request)
    async with db.transaction() as conn:
        await service.delete_product(conn, product_id, expected_version=version)
    return Response(status_code=204)


async def restore_product(request: Request, product_id: uuid.UUID) -> Response:
    db = database(request)
    version = expected_version(request, required=False)
    async with db.transaction() as conn:
        row = await service.restore_product(conn, product_id, expected_version=version)
    return _written(repository.product_json(row), row["version"])


# --- categories -------------------------------------------------------------------------


async def category_tree(request: Request) -> Response:
    """The whole tree, nested (served as a direct route)."""
    db = database(request)
    rows = await repository.list_categories(db.reader, limit=service.MAX_CATEGORIES_LISTED)
    body = orjson.dumps(envelope(service.category_tree(rows), {"count": len(rows)}))
    return cached_json(request, body, content_etag(body))


async def get_category(request: Request) -> Response:
    category_id = path_uuid(request, "category_id")
    db = database(request)
    row = await repository.get_category(db.reader, category_id)
    if row is None:
        raise CategoryNotFound()
    return _resource(request, repository.category_json(row), row["version"])


def category_tree_doc() -> CategoryTree:
    raise NotImplementedError  # documents the operation; `category_tree` serves it


def get_category_doc(category_id: uuid.UUID) -> CategoryEnvelope:
    raise NotImplementedError  # documents the operation; `get_category` serves it


async def create_category(request: Request, data: CategoryCreate) -> Response:
    db = database(request)
    async with db.transaction() as conn:
        row = await service.create_category(conn, data)
    response = _written(repository.category_json(row), row["version"], status=201)
    response.headers["location"] = f"/api/v1/categories/{row['id']}"
    return response


async def update_category(
    request: Request, category_id: uuid.UUID, data: CategoryUpdate
) -> Response:
    db = database(request)
    version = expected_version(request)
    async with db.transaction() as conn:
        row = await service.update_category(conn, category_id, data=data, expected_version=version)
    return _written(repository.category_json(row), row["version"])


async def delete_category(
    request: Request,
    category_id: uuid.UUID,
    move_products_to: Annotated[
        uuid.UUID | None, Query(description="Move this category's products there first.")
    ] = None,
) -> Response:
    db = database(request)
    version = expected_version(request)
    async with db.transaction() as conn:
        await service.delete_category(
            conn, category_id, expected_version=version, move_products_to=move_products_to
        )
    return Response(status_code=204)


# --- the route table --------------------------------------------------------------------

PRODUCTS_WRITE = requires("products:write")
CATEGORIES_WRITE = requires("categories:write")


def register_routes(app: FastAPI, *, prefix: str) -> None:
    add = route_adder(
        app, prefix=prefix, tag="catalog", errors=(400, 401, 404, 409, 412, 413, 415, 422, 428)
    )

    # Public reads: documented by their `*_doc` signature, served by the direct handler.
    add(
        "/products",
        list_products_doc,
        "GET",
        PUBLIC,
        "List or search products",
        handler=list_products,
    )
    add(
        "/products/{product_id}",
        get_product_doc,
        "GET",
        PUBLIC,
        "Read a product",
        handler=get_product,
    )
    add("/categories", category_tree_doc, "GET", PUBLIC, "The category tree", handler=category_tree)
    add(
        "/categories/{category_id}",
        get_category_doc,
        "GET",
        PUBLIC,
        "Read a category",
        handler=get_category,
    )

    add(
        "/products",
        create_product,
        "POST",
        PRODUCTS_WRITE,
        "Create a product",
        response_model=ProductEnvelope,
        status_code=201,
    )
    add(
        "/products/{product_id}",
        update_product,
        "PATCH",
        PRODUCTS_WRITE,
        "Update a product (If-Match required)",
        response_model=ProductEnvelope,
    )
    add(
        "/products/{product_id}",
        delete_product,
        "DELETE",
        PRODUCTS_WRITE,
        "Soft-delete a product (If-Match required)",
        status_code=204,
    )
    add(
        "/products/{product_id}/restore",
        restore_product,
        "POST",
        PRODUCTS_WRITE,
        "Restore a deleted product",
        response_model=ProductEnvelope,
    )
    add(
        "/categories",
        create_category,
        "POST",
        CATEGORIES_WRITE,
        "Create a category",
        response_model=CategoryEnvelope,
        status_code=201,
    )
    add(
        "/categories/{category_id}",
        update_category,
        "PATCH",
        CATEGORIES_WRITE,
        "Update or move a category (If-Match required)",
        response_model=CategoryEnvelope,
    )
    add(
        "/categories/{category_id}",
        delete_category,
        "DELETE",
        CATEGORIES_WRITE,
        "Delete an empty category (If-Match required)",
        status_code=204,
    )
