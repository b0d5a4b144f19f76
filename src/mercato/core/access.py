"""Access rules: every route declares exactly one, and a test walks the app to prove it.

Routes are registered through `add_route(..., access=...)` with one of:

- `PUBLIC`: anyone; the route carries no dependency at all (each `Depends()` costs tens of
  microseconds per request, more than a primary-key read in PostgreSQL).
- `AUTHENTICATED`: any signed-in principal; the use case then checks the object (a customer
  reads only their own data).
- `requires("products:write")`: a principal holding that permission.
- `METRICS`: public when configured so, otherwise `metrics:read`.

The rule is recorded on the operation (`x-access` in the OpenAPI document) and enforced by
a dependency that reads the principal the authentication middleware resolved.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.responses import Response

from mercato.core.config import Settings
from mercato.core.errors import ErrorResponse, Forbidden, Unauthenticated
from mercato.core.routing import DirectRoute, Handler
from mercato.core.security import Principal, check_permission, principal_in, require_principal

ACCESS_KEY = "x-access"


def current_principal(request: Request) -> Principal:
    """The caller of a route whose rule already demanded authentication."""
    return require_principal(request.scope)


def optional_principal(request: Request) -> Principal | None:
    return principal_in(request.scope)


# Dependencies are `async def`: FastAPI runs plain `def` dependencies in a thread pool.
async def require_authenticated(request: Request) -> None:
    """Any signed-in caller."""
    require_principal(request.scope)


def _permission_guard(permission: str) -> Callable[[Request], Any]:
    async def guard(request: Request) -> None:
        principal = principal_in(request.scope)
        if principal is None:
            raise Unauthenticated()
        if not principal.can(permission):
            raise Forbidden(f"This needs the {permission!r} permission.")

    guard.__name__ = f"requires_{permission.replace(':', '_')}"
    return guard


async def metrics_access(request: Request) -> None:
    """Prometheus scrapes: public when configured so, otherwise `metrics:read`."""
    settings: Settings = request.app.state.settings
    if not settings.metrics_public:
        await _METRICS_GUARD(request)


_METRICS_GUARD = _permission_guard("metrics:read")


@dataclass(frozen=True, slots=True)
class Access:
    name: str
    guard: Callable[..., Any] | None
    permission: str | None = None


PUBLIC = Access("public", None)
AUTHENTICATED = Access("authenticated", require_authenticated)
METRICS = Access("metrics", metrics_access, "metrics:read")


@functools.cache
def requires(permission: str) -> Access:
    """The rule "holds `permission`" (one shared guard per permission)."""
    check_permission(permission)
    return Access(f"permission:{permission}", _permission_guard(permission), permission)


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
    operation and `handler(request)` serves it (a `DirectRoute`): FastAPI's resolver never
    runs there, so the rule's guard is called before the handler instead of as a dependency
    (it is still declared as one, which documents it and lets the access test find it)."""
    if handler is not None:
        kwargs.setdefault("name", handler.__name__)  # operation ids follow the handler
        if access.guard is not None:
            handler = _guarded(access.guard, handler)
        route_class = cast(type[APIRoute], functools.partial(DirectRoute, handler=handler))
        kwargs["route_class_override"] = route_class
    app.router.add_api_route(
        path,
        endpoint,
        methods=[method],
        dependencies=[Depends(access.guard)] if access.guard else None,
        openapi_extra={ACCESS_KEY: access.name, **_security_requirement(access)},
        **kwargs,
    )


def _guarded(guard: Callable[[Request], Awaitable[None]], handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        await guard(request)
        return await handler(request)

    return guarded


BEARER_SCHEME = "bearer"


def _security_requirement(access: Access) -> dict[str, Any]:
    """Restricted operations name the bearer scheme, so /docs offers to send a token."""
    return {"security": [{BEARER_SCHEME: []}]} if access.guard is not None else {}


def add_security_scheme(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token from POST /api/v1/auth/login, or an API key (mk_…).",
    }
    return document


class RouteAdder(Protocol):
    def __call__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        method: str,
        access: Access,
        summary: str,
        **kwargs: Any,
    ) -> None: ...


def route_adder(app: FastAPI, *, prefix: str, tag: str, errors: tuple[int, ...]) -> RouteAdder:
    """`add(path, endpoint, method, access, summary, **kwargs)` for one context's routes:
    its prefix, OpenAPI tag and documented error statuses (all in the error model).

    Routes go straight onto the app (no nested router): one less dispatch level per
    request, and `scope["route"].path` is the full template the metrics are labelled with.
    """
    responses: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse} for s in errors}

    def add(
        path: str,
        endpoint: Callable[..., Any],
        method: str,
        access: Access,
        summary: str,
        **kwargs: Any,
    ) -> None:
        add_route(
            app,
            prefix + path,
            endpoint,
            method=method,
            access=access,
            tags=[tag],
            responses=responses,
            summary=summary,
            **kwargs,
        )

    return add


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
