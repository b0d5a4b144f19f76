"""The stock port over HTTP: reservations a service (the order service) holds by its own id.

Every route needs `stock:reserve`, held by the calling service's API key; no person places
a reservation here. Each route is idempotent by the reservation id in its path, so callers
retry them freely; there is no Idempotency-Key to send.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from mercato.catalog import reservations
from mercato.catalog.schemas import ReservationCreate, ReservationEnvelope
from mercato.catalog.stock import StockLine
from mercato.core.access import requires, route_adder
from mercato.core.deps import database
from mercato.core.http import envelope

STOCK_RESERVE = requires("stock:reserve")
PRIVATE = {"cache-control": "no-store"}


def _answer(row: object) -> Response:
    body = orjson.dumps(envelope(reservations.reservation_json(row)))
    return Response(body, media_type="application/json", headers=PRIVATE)


async def reserve(request: Request, reservation_id: uuid.UUID, data: ReservationCreate) -> Response:
    minutes = request.app.state.settings.stock_reservation_minutes
    lines = [StockLine(line.product_id, line.quantity) for line in data.lines]
    async with database(request).transaction() as conn:
        row = await reservations.reserve(
            conn, reservation_id, lines, holds_for=timedelta(minutes=minutes)
        )
    return _answer(row)


async def confirm(request: Request, reservation_id: uuid.UUID) -> Response:
    async with database(request).transaction() as conn:
        return _answer(await reservations.confirm(conn, reservation_id))


async def release(request: Request, reservation_id: uuid.UUID) -> Response:
    async with database(request).transaction() as conn:
        return _answer(await reservations.release(conn, reservation_id))


async def read(request: Request, reservation_id: uuid.UUID) -> Response:
    return _answer(await reservations.read(database(request).reader, reservation_id))


def register_routes(app: FastAPI, *, prefix: str) -> None:
    add = route_adder(app, prefix=prefix, tag="stock", errors=(401, 403, 404, 409, 422, 429))
    path = "/stock/reservations/{reservation_id}"
    add(
        path,
        reserve,
        "PUT",
        STOCK_RESERVE,
        "Reserve stock for every line or none, under the caller's id (a repeat answers the "
        "first result); unconfirmed, it is released at its deadline",
        response_model=ReservationEnvelope,
    )
    add(path, read, "GET", STOCK_RESERVE, "Read a reservation", response_model=ReservationEnvelope)
    add(
        path + "/confirm",
        confirm,
        "POST",
        STOCK_RESERVE,
        "Confirm a reservation (its order exists): no deadline any more; idempotent",
        response_model=ReservationEnvelope,
    )
    add(
        path + "/release",
        release,
        "POST",
        STOCK_RESERVE,
        "Release a reservation's stock; idempotent, and a no-op for an unknown id",
        response_model=ReservationEnvelope,
    )
