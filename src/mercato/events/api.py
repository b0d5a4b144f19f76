"""Reading the event log over HTTP (staff): replay, audit, and re-sync after a gap."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from mercato.core.access import add_route, requires
from mercato.core.deps import database
from mercato.core.errors import ErrorResponse
from mercato.core.http import envelope
from mercato.events import repository

MAX_PAGE_SIZE = 1000


class EventOut(BaseModel):
    position: int
    event_id: str
    type: str
    schema_version: int
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    occurred_at: str
    trace_context: dict[str, Any]
    payload: dict[str, Any]


class EventPageMeta(BaseModel):
    after: int
    next_after: int
    last_position: int


class EventPage(BaseModel):
    data: list[EventOut]
    meta: EventPageMeta


async def list_events(
    request: Request,
    after: Annotated[int, Query(ge=0, description="Return events after this position.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    type: Annotated[list[str] | None, Query(max_length=20, description="Only these types.")] = None,
) -> Response:
    db = database(request)
    rows = await repository.read_log(db.reader, after=after, limit=limit, types=type)
    last, _ = await repository.positions(db.reader)
    events = [repository.event_json(row) for row in rows]
    next_after = events[-1]["position"] if events else after
    body = envelope(events, {"after": after, "next_after": next_after, "last_position": last})
    return Response(orjson.dumps(body), media_type="application/json")


def register_routes(app: FastAPI, *, prefix: str) -> None:
    add_route(
        app,
        f"{prefix}/events",
        list_events,
        method="GET",
        access=requires("events:read"),
        tags=["events"],
        response_model=EventPage,
        responses={401: {"model": ErrorResponse}},
        summary="Read the event log in stream-position order",
    )
