"""The catalog's HTTP routes: translate HTTP to a use case and back, nothing more."""

from __future__ import annotations

import uuid
from decimal import Decimal
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
    ProductPage,
    ProductUpdate,
)
from mercato.core.access import ADMIN, PUBLIC, Access, add_route, presented_admin_key
from mercato.core.deps import cursor_codec, database
from mercato.core.errors import ErrorResponse, ValidationFailed
from mercato.core.http import (
    cached_json,
    content_etag,
    envelope,
    expected_version,
    json_with_etag,
    version_etag,
)

MAX_PAGE_SIZE = 100


def _resource(request: Request, data: dict[str, Any], version: int) -> Response:
    """A single resource read: answers 304 when the client's copy is current."""
    return cached_json(request, orjson.dumps(envelope(data)), version_etag(version))


def _written(data: dict[str, Any], version: int, status: int = 200) -> Response:
    return json_with_etag(orjson.dumps(envelope(data)), version_etag(version), status_code=status)


# --- products ---------------------------------------------------------------------------


async def get_product(
    request: Request,
    product_id: uuid.UUID,
    include_deleted: Annotated[
        bool, Query(description="Staff only: show a deleted product.")
    ] = False,
) -> Response:
    db = database(request)
    is_admin = presented_admin_key(request) if request.headers.get("authorization") else False
    row = await repository.get_product(
        db.reader,
        product_id,
        include_inactive=is_admin,
        include_deleted=include_deleted and is_admin,
    )
    if row is None:
        raise ProductNotFound()
    response = _resource(request, repository.product_json(row), row["version"])
    response.headers["vary"] = "Authorization"
    return response


async def list_products(
    request: Request,
    q: Annotated[
        str | None, Query(max_length=200, description="Full-text search, prefix-matched.")
    ] = None,
    category_id: Annotated[
        uuid.UUID | None, Query(description="A category and its descendants.")
    ] = None,
    min_price: Annotated[Decimal | None, Query(ge=0, max_digits=12, decimal_places=2)] = None,
    max_price: Annotated[Decimal | None, Query(ge=0, max_digits=12, decimal_places=2)] = None,
    brand: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    in_stock: bool | None = None,
    sort: Annotated[
        ProductSort | None, Query(description="Default: relevance with q, else newest.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    db = database(request)
    cursors = cursor_codec(request)
    tsquery = prefix_tsquery(q) if q is not None else None
    sort = sort or (ProductSort.RELEVANCE if q is not None else ProductSort.NEWEST)
    if sort is ProductSort.RELEVANCE and q is None:
        raise ValidationFailed(details=[{"field": "query.sort", "message": "relevance needs q"}])
    filters = ProductFilters(
        min_price=min_price, max_price=max_price, brand=brand, in_stock=in_stock, tsquery=tsquery
    )
    fingerprint = query_fingerprint(sort, category_id, filters)
    rows: list[Any] = []
    if q is None or tsquery is not None:  # a q with no searchable word matches nothing
        after = parse_position(cursors.decode(fingerprint, cursor), sort) if cursor else None
        filters = await service.resolve_filters(db.reader, category_id=category_id, filters=filters)
        rows = await repository.list_products(
            db.reader, filters=filters, sort=sort, after=after, limit=limit + 1
        )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = cursors.encode(fingerprint, position_of(rows[-1], sort))
    body = orjson.dumps(
        envelope(
            [repository.product_json(row) for row in rows],
            {"limit": limit, "count": len(rows), "next_cursor": next_cursor},
        )
    )
    return cached_json(request, body, content_etag(body))


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
    db = database(request)
    rows = await repository.list_categories(db.reader, limit=service.MAX_CATEGORIES_LISTED)
    body = orjson.dumps(envelope(service.category_tree(rows), {"count": len(rows)}))
    return cached_json(request, body, content_etag(body))


async def get_category(request: Request, category_id: uuid.UUID) -> Response:
    db = database(request)
    row = await repository.get_category(db.reader, category_id)
    if row is None:
        raise CategoryNotFound()
    return _resource(request, repository.category_json(row), row["version"])


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

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 412, 413, 415, 422, 428)
}


def register_routes(app: FastAPI, *, prefix: str) -> None:
    # Routes go straight onto the app (no nested router): one less dispatch level per
    # request, and `scope["route"].path` is the full template the metrics are labelled with.
    read, write = PUBLIC, ADMIN

    def add(path: str, endpoint: Any, method: str, access: Access, **kwargs: Any) -> None:
        add_route(
            app,
            prefix + path,
            endpoint,
            method=method,
            access=access,
            tags=["catalog"],
            responses=_ERRORS,
            **kwargs,
        )

    add(
        "/products",
        list_products,
        "GET",
        read,
        response_model=ProductPage,
        summary="List or search products",
    )
    add(
        "/products",
        create_product,
        "POST",
        write,
        response_model=ProductEnvelope,
        status_code=201,
        summary="Create a product",
    )
    add(
        "/products/{product_id}",
        get_product,
        "GET",
        read,
        response_model=ProductEnvelope,
        summary="Read a product",
    )
    add(
        "/products/{product_id}",
        update_product,
        "PATCH",
        write,
        response_model=ProductEnvelope,
        summary="Update a product (If-Match required)",
    )
    add(
        "/products/{product_id}",
        delete_product,
        "DELETE",
        write,
        status_code=204,
        summary="Soft-delete a product (If-Match required)",
    )
    add(
        "/products/{product_id}/restore",
        restore_product,
        "POST",
        write,
        response_model=ProductEnvelope,
        summary="Restore a deleted product",
    )
    add(
        "/categories",
        category_tree,
        "GET",
        read,
        response_model=CategoryTree,
        summary="The category tree",
    )
    add(
        "/categories",
        create_category,
        "POST",
        write,
        response_model=CategoryEnvelope,
        status_code=201,
        summary="Create a category",
    )
    add(
        "/categories/{category_id}",
        get_category,
        "GET",
        read,
        response_model=CategoryEnvelope,
        summary="Read a category",
    )
    add(
        "/categories/{category_id}",
        update_category,
        "PATCH",
        write,
        response_model=CategoryEnvelope,
        summary="Update or move a category (If-Match required)",
    )
    add(
        "/categories/{category_id}",
        delete_category,
        "DELETE",
        write,
        status_code=204,
        summary="Delete an empty category (If-Match required)",
    )
