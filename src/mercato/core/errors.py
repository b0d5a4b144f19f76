"""The error model: typed domain errors, each with a stable machine code and an HTTP status.

Contexts raise subclasses of `DomainError`; the API layer turns every error, domain or
framework, into one JSON shape:

    {"error": {"code": "PRODUCT_NOT_FOUND", "message": "...", "details": [...],
               "request_id": "..."}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel


class DomainError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500
    message: ClassVar[str] = "Internal error."

    def __init__(self, message: str | None = None, *, details: list[dict[str, Any]] | None = None):
        self.detail_message = message or self.message
        self.details = details or []
        super().__init__(self.detail_message)


class BadRequest(DomainError):
    code = "BAD_REQUEST"
    status = 400
    message = "The request is malformed."


class NotFound(DomainError):
    code = "NOT_FOUND"
    status = 404
    message = "Resource not found."


class Conflict(DomainError):
    code = "CONFLICT"
    status = 409
    message = "The request conflicts with the current state."


class ValidationFailed(DomainError):
    code = "VALIDATION_FAILED"
    status = 422
    message = "The request is not valid."


class PreconditionFailed(DomainError):
    code = "PRECONDITION_FAILED"
    status = 412
    message = "The resource has changed since you read it (If-Match did not match)."


class PreconditionRequired(DomainError):
    code = "PRECONDITION_REQUIRED"
    status = 428
    message = "This request needs an If-Match header with the resource's ETag."


class InvalidCursor(DomainError):
    code = "INVALID_CURSOR"
    status = 400
    message = "The cursor is malformed, forged, or belongs to another query."


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"
    status = 401
    message = "Authentication is required."


class Forbidden(DomainError):
    code = "FORBIDDEN"
    status = 403
    message = "You are not allowed to do this."


class TooManyAttempts(DomainError):
    code = "TOO_MANY_ATTEMPTS"
    status = 429
    message = "Too many failed attempts; wait before trying again."

    def __init__(self, message: str | None = None, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class MalformedJson(DomainError):
    code = "MALFORMED_JSON"
    status = 400
    message = "The request body is not valid JSON."


class PayloadTooLarge(DomainError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413
    message = "The request body is too large."


class UnsupportedMediaType(DomainError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415
    message = "Send the request body as application/json."


class RouteNotFound(DomainError):
    code = "ROUTE_NOT_FOUND"
    status = 404
    message = "No such endpoint."


class MethodNotAllowed(DomainError):
    code = "METHOD_NOT_ALLOWED"
    status = 405
    message = "This method is not allowed on this endpoint."


class ServiceUnavailable(DomainError):
    code = "SERVICE_UNAVAILABLE"
    status = 503
    message = "A dependency is unavailable; retry later."


def error_body(
    code: str, message: str, request_id: str | None, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details or [],
            "request_id": request_id,
        }
    }


def validation_details(
    errors: Sequence[Mapping[str, Any]], *, prefix: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Pydantic's errors as the error model's details (at most 50), each field named by its
    location under `prefix`. The offending input is deliberately left out: it may be huge,
    or a secret."""
    return [
        {
            "field": ".".join(map(str, (*prefix, *error.get("loc", ())))),
            "message": error.get("msg", ""),
            "type": error.get("type"),
        }
        for error in errors[:50]
    ]


class ErrorDetail(BaseModel):
    field: str | None = None
    message: str
    type: str | None = None


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail]
    request_id: str | None


class ErrorResponse(BaseModel):
    """The error model, for the OpenAPI document."""

    error: ErrorInfo
