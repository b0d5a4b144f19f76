"""The app's process-wide start-up work."""

from __future__ import annotations

import gc
import re

from asgi_lifespan import LifespanManager
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Match

from mercato.app import YOUNG_GENERATION_THRESHOLD, create_app
from mercato.core.config import Environment
from tests.settings import make_settings


async def test_a_server_freezes_its_start_up_heap_and_tests_do_not(fresh_db_url: str) -> None:
    gc.unfreeze()
    thresholds = gc.get_threshold()
    quiet = {"database_url": fresh_db_url, "relay_in_process": False}
    async with LifespanManager(create_app(make_settings(**quiet))):
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == thresholds
    try:
        server = make_settings(environment=Environment.DEVELOPMENT, **quiet)
        async with LifespanManager(create_app(server)):
            # Full collections no longer walk what start-up built (it lives as long as the
            # process), and young ones come less often; see app._freeze_startup_heap.
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_no_route_is_shadowed_by_one_registered_before_it() -> None:
    """Routes are tried in registration order (the busiest contexts first): each route's own
    path, its parameters filled in, must reach that route and not an earlier one."""
    app = create_app(make_settings())
    routes = [r for r in app.routes if isinstance(r, APIRoute | APIWebSocketRoute)]
    for route in routes:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        methods = getattr(route, "methods", None) or {"GET"}
        kind = "websocket" if isinstance(route, APIWebSocketRoute) else "http"
        for method in methods:
            scope = {"type": kind, "path": path, "method": method}
            first = next(r for r in routes if r.matches(scope)[0] is Match.FULL)
            assert first is route, f"{method} {route.path} is shadowed by {first.path}"
