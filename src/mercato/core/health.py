"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from mercato.core.access import METRICS, PUBLIC, add_route
from mercato.core.database import Database
from mercato.core.errors import ServiceUnavailable
from mercato.core.http import JSONResponse


async def live() -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    db: Database = request.app.state.db
    try:
        await db.ping()
    except Exception as exc:
        raise ServiceUnavailable("The database is not reachable.") from exc
    return JSONResponse({"status": "ok", "checks": {"database": "ok"}})


async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def register_routes(app: FastAPI) -> None:
    add_route(app, "/health/live", live, method="GET", access=PUBLIC, tags=["operations"])
    add_route(app, "/health/ready", ready, method="GET", access=PUBLIC, tags=["operations"])
    add_route(app, "/metrics", metrics, method="GET", access=METRICS, include_in_schema=False)
