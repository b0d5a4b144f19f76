"""Direct routes: documented like any FastAPI route, run without FastAPI's resolver.

FastAPI resolves a route's parameters on every request through its dependency machinery,
which costs more CPU than a primary-key read in PostgreSQL (docs/benchmarks.md). A
`DirectRoute` takes its OpenAPI description from `signature` (a function whose parameters
declare the operation exactly as a FastAPI endpoint would), but at run time hands the
request straight to `handler(request)`, which parses its own parameters with the helpers
below and the same Pydantic models. Used for the hot public reads and for placing an
order; a direct route with an access rule runs its guard itself (`core.access.add_route`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mercato.core.errors import MalformedJson, ValidationFailed, validation_details

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
ModelT = TypeVar("ModelT", bound=BaseModel)


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], *, handler: Handler, **kwargs: Any):
        self._handler = handler  # read by get_route_handler(), which __init__ calls
        super().__init__(path, endpoint, **kwargs)
        # Not FastAPI's request_response wrapper either: it opens two AsyncExitStacks per
        # request (for dependencies with yield, which a direct route has none of) and its own
        # exception wrapper. A handler's errors reach the app's ExceptionMiddleware, which
        # maps them as it does for every route.
        self.app = _serve(handler)

    def get_route_handler(self) -> Handler:
        return self._handler


def _serve(handler: Handler) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await handler(Request(scope, receive, send))
        await response(scope, receive, send)

    return app


def path_uuid(request: Request, name: str) -> uuid.UUID:
    raw = request.path_params[name]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValidationFailed(
            details=[
                {
                    "field": f"path.{name}",
                    "message": "Input should be a valid UUID",
                    "type": "uuid_parsing",
                }
            ]
        ) from None


def query_model(request: Request, model: type[ModelT]) -> ModelT:
    """Validate the query string against `model`; errors name `query.<field>`."""
    try:
        if not request.scope["query_string"]:
            return model()  # the common case on hot reads: nothing to parse
        return model.model_validate(dict(request.query_params))
    except ValidationError as error:
        raise _validation_failed("query", error) from None


async def json_body(request: Request, model: type[ModelT]) -> ModelT:
    """Parse and validate the JSON body against `model` in one call (pydantic's own parser);
    errors name `body.<field>`, and a body that is not JSON is MALFORMED_JSON, as on routes
    FastAPI resolves. The body's size and media type were checked by the edge middleware."""
    raw = await request.body()
    if not raw:
        missing = {"field": "body", "message": "Field required", "type": "missing"}
        raise ValidationFailed(details=[missing])
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            raise MalformedJson() from None
        raise _validation_failed("body", error) from None


def _validation_failed(where: str, error: ValidationError) -> ValidationFailed:
    return ValidationFailed(details=validation_details(error.errors(), prefix=(where,)))
