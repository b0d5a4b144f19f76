"""Pure ASGI middleware for the HTTP edge.

Plain ASGI classes rather than Starlette's BaseHTTPMiddleware: that one wraps every request
in extra tasks and streams, which costs tens of microseconds per request and breaks
contextvars. Order, outermost first: security headers → request context → body guard.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mercato.core.errors import (
    BadRequest,
    DomainError,
    PayloadTooLarge,
    UnsupportedMediaType,
    error_body,
)
from mercato.core.observability import HttpMetrics, request_id_var

log = structlog.get_logger("mercato.http")

_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{8,64}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# The interactive docs load Swagger UI / ReDoc from a CDN and run an inline bootstrap script.
DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    b"https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; frame-ancestors 'none'"
)
HSTS = b"max-age=63072000; includeSubDomains"


async def send_error(send: Send, error: DomainError) -> None:
    body = orjson.dumps(
        error_body(error.code, error.detail_message, request_id_var.get(), error.details)
    )
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.force_hsts = hsts
        self.common = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"] in ("/docs", "/redoc") else API_CSP
        extra = [*self.common, (b"content-security-policy", csp)]
        if self.force_hsts or scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", HSTS))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestContextMiddleware:
    """Request id, access log line, RED metrics, and the last-resort 500 in the error model."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or os.urandom(16).hex()
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        request_id_header = (b"x-request-id", request_id.encode())

        async def send_with_context(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        except Exception:
            log.exception("unhandled_error", path=scope["path"], method=scope["method"])
            if not response_started:
                await send_error(send_with_context, DomainError())
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.metrics.observe(scope["method"], template, status, elapsed)
            if self.access_log:
                client = scope.get("client")
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    route=template,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    client_ip=client[0] if client else None,
                )
            request_id_var.reset(token)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode() if _VALID_REQUEST_ID.match(value) else None
    return None


class _BodyTooLarge(Exception):
    pass


class BodyGuardMiddleware:
    """Refuses bodies over the size limit (declared or streamed) and non-JSON API bodies."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        json_only_prefix: str = "/api/",
        other_media_types: dict[str, tuple[str, ...]] | None = None,
        larger_bodies: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Path prefix → its own size limit (e.g. file uploads).
        self.larger_bodies = larger_bodies or {}
        self.json_only_prefix = json_only_prefix
        # Path prefix → extra media types accepted there (e.g. file uploads).
        self.other_media_types = other_media_types or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = _header_map(scope)
        limit = self._limit(scope["path"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_error(send, BadRequest("Invalid Content-Length."))
                return
            if int(declared) > limit:
                await send_error(send, _too_large(limit))
                return
        has_body = declared not in (None, b"0") or b"transfer-encoding" in headers
        if (
            has_body
            and scope["path"].startswith(self.json_only_prefix)
            and not self._media_type_allowed(scope["path"], headers.get(b"content-type", b""))
        ):
            await send_error(send, UnsupportedMediaType())
            return

        received = 0
        response_started = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, response_started, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now: frameworks turn errors raised while reading a body into
                    # their own 400, so the 413 cannot be left to an exception handler.
                    if not response_started:
                        response_started = refused = True
                        await send_error(send, _too_large(limit))
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return  # the 413 has been sent; drop whatever the app answers after it
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, counting_receive, tracking_send)

    def _limit(self, path: str) -> int:
        for prefix, limit in self.larger_bodies.items():
            if path.startswith(prefix):
                return limit
        return self.max_body_bytes

    def _media_type_allowed(self, path: str, content_type: bytes) -> bool:
        media_type = content_type.split(b";", 1)[0].strip().lower().decode("latin-1")
        if media_type == "application/json" or (
            media_type.startswith("application/") and media_type.endswith("+json")
        ):
            return True
        return any(
            path.startswith(prefix) and media_type in types
            for prefix, types in self.other_media_types.items()
        )


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.")


def _header_map(scope: Scope) -> dict[bytes, Any]:
    return dict(scope["headers"])
