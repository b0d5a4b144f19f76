"""The one place where every error becomes the error model."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from mercato.core.errors import (
    DomainError,
    MalformedJson,
    MethodNotAllowed,
    RouteNotFound,
    TooManyAttempts,
    ValidationFailed,
    error_body,
    validation_details,
)
from mercato.core.observability import request_id_var


def error_response(error: DomainError) -> Response:
    body = error_body(error.code, error.detail_message, request_id_var.get(), error.details)
    headers = {"www-authenticate": "Bearer"} if error.status == 401 else {}
    if isinstance(error, TooManyAttempts):
        headers["retry-after"] = str(error.retry_after)
    return Response(
        orjson.dumps(body), status_code=error.status, media_type="application/json", headers=headers
    )


async def _domain_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return error_response(MalformedJson())
    return error_response(ValidationFailed(details=validation_details(errors)))


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(RouteNotFound())
    if exc.status_code == 405:
        return error_response(MethodNotAllowed())
    body = error_body("HTTP_ERROR", str(exc.detail), request_id_var.get())
    return Response(
        orjson.dumps(body),
        status_code=exc.status_code,
        media_type="application/json",
        headers=exc.headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
