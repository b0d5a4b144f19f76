"""The orders context's HTTP routes. Every unsafe route needs an Idempotency-Key."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from mercato.core.access import (
    AUTHENTICATED,
    current_principal,
    requires,
    route_adder,
)
from mercato.core.database import WriteBatch
from mercato.core.deps import cursor_codec, database
from mercato.core.errors import Forbidden
from mercato.core.http import envelope
from mercato.core.idempotency import (
    StoredAnswer,
    fingerprint,
    idempotency_key,
    run_once,
    stored_answer,
)
from mercato.core.pagination import decode_stamp_cursor, next_page, stamp_position
from mercato.core.pagination import fingerprint as query_fingerprint
from mercato.core.routing import json_body
from mercato.core.security import Principal
from mercato.orders import repository, service
from mercato.orders.rules import Action
from mercato.orders.schemas import (
    OrderCancel,
    OrderCreate,
    OrderEnvelope,
    OrderListQuery,
    OrderPage,
)
from mercato.orders.stock import StockPort

PRIVATE = {"cache-control": "no-store"}


def _answer(order: dict[str, Any], status: int = 200) -> StoredAnswer:
    headers = {**PRIVATE, "etag": f'"{order["version"]}"'}
    if status == 201:
        headers["location"] = f"/api/v1/orders/{order['id']}"
    return StoredAnswer(status, orjson.dumps(envelope(order)), headers)


def _customer(request: Request) -> Principal:
    principal = current_principal(request)
    if principal.kind != "user":
        raise Forbidden("Orders are placed by people; API keys cannot place them.")
    return principal


def _idempotency_scope(request: Request, principal: Principal, body: Any) -> dict[str, Any]:
    return {
        "table": repository.IDEMPOTENCY_TABLE,
        "owner": f"{principal.kind}:{principal.subject_id}",
        "key": idempotency_key(request),
        # The matched path itself (what `request.url.path` gives for these routes, without
        # building a URL): a route's own path and the same body make "the same request".
        "request_fingerprint": fingerprint(request.method, request.scope["path"], body),
    }


async def _idempotent(request: Request, principal: Principal, body: Any, action: Any) -> Response:
    scope = _idempotency_scope(request, principal, body)
    return await run_once(database(request), action=action, **scope)


def place_order_doc(data: OrderCreate) -> OrderEnvelope:
    raise NotImplementedError  # documents the operation; `place_order` serves it


async def place_order(request: Request) -> Response:
    """The busiest write, served as a direct route: FastAPI's resolver cost more CPU per
    order than any of its round trips (ADR 0047)."""
    data = await json_body(request, OrderCreate)
    principal = _customer(request)
    holds_for = timedelta(minutes=request.app.state.settings.order_reservation_minutes)
    body = data.model_dump(mode="json")
    stock: StockPort = request.app.state.stock
    if stock.reserves_ahead:
        # Stock is asked for before the order's transaction: a request already answered is
        # replayed first, not sent to the catalog again.
        scope = _idempotency_scope(request, principal, body)
        replayed = await stored_answer(database(request).reader, **scope)
        if replayed is not None:
            return replayed
    order_id = uuid.uuid4()
    async with stock.hold(order_id, service.stock_lines_of(data.lines)) as hold:

        async def place(conn: Any, writes: WriteBatch) -> StoredAnswer:
            order = await service.place_order(
                conn,
                writes,
                hold,
                principal.subject_id,
                data.lines,
                order_id=order_id,
                holds_for=holds_for,
            )
            return _answer(order, status=201)

        return await _idempotent(request, principal, body, place)


async def cancel_order(request: Request, order_id: uuid.UUID, data: OrderCancel) -> Response:
    principal = current_principal(request)

    async def cancel(conn: Any, writes: WriteBatch) -> StoredAnswer:
        order = await service.change_status(
            conn, principal, order_id, Action.CANCEL, reason=data.reason
        )
        return _answer(order)

    return await _idempotent(request, principal, data.model_dump(mode="json"), cancel)


async def fulfil_order(request: Request, order_id: uuid.UUID) -> Response:
    principal = current_principal(request)

    async def fulfil(conn: Any, writes: WriteBatch) -> StoredAnswer:
        return _answer(await service.change_status(conn, principal, order_id, Action.FULFIL))

    return await _idempotent(request, principal, None, fulfil)


async def get_order(request: Request, order_id: uuid.UUID) -> Response:
    order = await service.read_order(database(request).reader, current_principal(request), order_id)
    return _answer(order).response()


async def list_orders(request: Request, params: Annotated[OrderListQuery, Query()]) -> Response:
    """A customer sees their own orders; staff with `orders:read:any` see everyone's."""
    principal = current_principal(request)
    filters: dict[str, Any] = {
        name: getattr(params, name)
        for name in ("status", "created_from", "created_to", "customer_id")
        if getattr(params, name) is not None
    }
    if not principal.can(service.READ_ANY):
        if principal.kind != "user":
            raise Forbidden("An API key lists orders only with the orders:read:any scope.")
        if "customer_id" in filters and filters["customer_id"] != principal.subject_id:
            raise Forbidden("Only staff can list other customers' orders.")
        filters["customer_id"] = principal.subject_id
    if "status" in filters:
        filters["status"] = filters["status"].value
    codec = cursor_codec(request)
    bound_to = query_fingerprint("orders", sorted((k, str(v)) for k, v in filters.items()))
    before = decode_stamp_cursor(codec, bound_to, params.cursor)
    db = database(request).reader
    rows = await repository.list_orders(db, filters=filters, before=before, limit=params.limit + 1)
    rows, next_cursor = next_page(
        codec, bound_to, rows, limit=params.limit, position=stamp_position("created_at")
    )
    lines = await repository.lines_of(db, [row["id"] for row in rows])
    body = envelope(
        [service.order_json(row, lines[row["id"]]) for row in rows],
        {"limit": params.limit, "count": len(rows), "next_cursor": next_cursor},
    )
    return Response(orjson.dumps(body), media_type="application/json", headers=PRIVATE)


def register_routes(app: FastAPI, *, prefix: str) -> None:
    add = route_adder(
        app, prefix=prefix, tag="orders", errors=(400, 401, 403, 404, 409, 422, 429, 503)
    )

    add(
        "/orders",
        place_order_doc,
        "POST",
        AUTHENTICATED,
        "Place an order (Idempotency-Key required): reserves stock, freezes prices; 503 "
        "STOCK_SERVICE_UNAVAILABLE when the catalog cannot be reached (order service alone)",
        status_code=201,
        response_model=OrderEnvelope,
        handler=place_order,
    )
    add(
        "/orders",
        list_orders,
        "GET",
        AUTHENTICATED,
        "List your orders (staff: everyone's)",
        response_model=OrderPage,
    )
    add(
        "/orders/{order_id}",
        get_order,
        "GET",
        AUTHENTICATED,
        "Read an order",
        response_model=OrderEnvelope,
    )
    add(
        "/orders/{order_id}/cancel",
        cancel_order,
        "POST",
        AUTHENTICATED,
        "Cancel an order (Idempotency-Key required); its stock is released",
        response_model=OrderEnvelope,
    )
    add(
        "/orders/{order_id}/fulfil",
        fulfil_order,
        "POST",
        requires("orders:write:any"),
        "Mark a paid order fulfilled (Idempotency-Key required)",
        response_model=OrderEnvelope,
    )
