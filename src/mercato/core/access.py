"""Access rules: every route declares exactly one, and a test walks the app to prove it.

Routes are registered through `add_route(..., access=PUBLIC | ADMIN | METRICS)`. The rule
is recorded on the operation (`x-access` in the OpenAPI document) and, where it restricts,
enforced by a dependency. A public route carries no dependency at all: each `Depends()`
costs tens of microseconds per request, more than a primary-key read in PostgreSQL.

Until the identity context lands, "admin" means the configured admin API key sent as
`Authorization: Bearer <key>`. Identity will replace `require_admin` with real principals
and permissions; routes do not change.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, APIWebSocketRoute

from mercato.core.config import Settings
from mercato.core.errors import Unauthenticated
from mercato.core.routing import DirectRoute, Handler

ACCESS_KEY = "x-access"


def is_admin_key(settings: Settings, token: str) -> bool:
    expected = settings.admin_api_key
    if expected is None:
        return False
    # Constant-time comparison: the key must not leak one byte at a time through timing.
    return hmac.compare_digest(token.encode(), expected.get_secret_value().encode())


def presented_admin_key(request: Request) -> bool:
    header = request.headers.get("authorization")
    if not header or not header.lower().startswith("bearer "):
        return False
    return is_admin_key(request.app.state.settings, header[7:].strip())


# Dependencies are `async def`: FastAPI runs plain `def` dependencies in a thread pool.
async def require_admin(request: Request) -> None:
    """Only an administrator may call this route."""
    if not presented_admin_key(request):
        raise Unauthenticated("An admin credential is required (Authorization: Bearer <key>).")


async def metrics_access(request: Request) -> None:
    """Prometheus scrapes: public when configured so, otherwise the admin credential."""
    settings: Settings = request.app.state.settings
    if not settings.metrics_public:
        await require_admin(request)


@dataclass(frozen=True, slots=True)
class Access:
    name: str
    guard: Callable[..., Any] | None


PUBLIC = Access("public", None)
ADMIN = Access("admin", require_admin)
METRICS = Access("metrics", metrics_access)


def add_route(
    app: FastAPI,
    path: str,
    endpoint: Callable[..., Any],
    *,
    method: str,
    access: Access,
    handler: Handler | None = None,
    **kwargs: Any,
) -> None:
    """Register a route with its access rule. With `handler`, `endpoint` only documents the
    operation and `handler(request)` serves it (a `DirectRoute`, public reads only)."""
    if handler is not None:
        if access.guard is not None:
            raise ValueError("direct routes skip dependencies: they can only be public")
        route_class = cast(type[APIRoute], functools.partial(DirectRoute, handler=handler))
        kwargs["route_class_override"] = route_class
        kwargs.setdefault("name", handler.__name__)  # operation ids follow the handler
    app.router.add_api_route(
        path,
        endpoint,
        methods=[method],
        dependencies=[Depends(access.guard)] if access.guard else None,
        openapi_extra={ACCESS_KEY: access.name},
        **kwargs,
    )


def add_websocket_route(
    app: FastAPI, path: str, endpoint: Callable[..., Any], *, access: Access
) -> None:
    """WebSocket routes check credentials inside their protocol (never in the URL), so the
    rule is recorded for the access test; PUBLIC means "may connect"."""
    app.add_api_websocket_route(path, endpoint)
    route = app.router.routes[-1]
    assert isinstance(route, APIWebSocketRoute)
    setattr(route, ACCESS_ATTRIBUTE, access.name)


ACCESS_ATTRIBUTE = "mercato_access"


def access_rule_of(route: APIRoute | APIWebSocketRoute) -> str | None:
    """The rule a route declared, or None when it was registered without one."""
    if isinstance(route, APIWebSocketRoute):
        rule = getattr(route, ACCESS_ATTRIBUTE, None)
        return rule if isinstance(rule, str) else None
    extra = route.openapi_extra or {}
    name = extra.get(ACCESS_KEY)
    return name if isinstance(name, str) else None


def guards_of(route: APIRoute) -> list[Callable[..., Any]]:
    return [dependency.call for dependency in route.dependant.dependencies if dependency.call]
