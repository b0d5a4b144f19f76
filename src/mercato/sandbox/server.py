"""The sandbox's HTTP face: Stripe's /v1 routes with auth and idempotency, and /_sandbox controls.

See the package docstring (`mercato.sandbox`) for the protocol and the test payment methods.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mercato.sandbox.objects import Stored
from mercato.sandbox.protocol import (
    Answer,
    Call,
    StripeError,
    dumps,
    invalid_request,
    new_id,
    not_found,
    param_error,
    parse_form,
)
from mercato.sandbox.state import SandboxState
from mercato.sandbox.webhooks import Endpoint

Operation = Callable[[SandboxState, Call], Answer]
Endpoint_ = Callable[[Request], Awaitable[Response]]

log = logging.getLogger("mercato.sandbox")


class ConnectionDropped(httpx.RemoteProtocolError):
    """The response to this request is lost: the connection closes without one.

    An httpx error, so that an httpx client calling the app in process (`ASGITransport`)
    sees the same exception class as over a real socket, where the dropped connection is
    reported as `httpx.RemoteProtocolError`.
    """


class _DroppedResponse(Response):
    """Closes the connection without writing a byte of response.

    uvicorn (httptools and h11 alike) writes the status line as soon as it is handed
    `http.response.start`, but validates the headers first and refuses a value holding a
    newline with an exception, before writing anything. Raising afterwards makes it close
    the connection, as the ASGI spec asks once a response has started: the client sees a
    server that hung up without answering (httpx: `RemoteProtocolError`). Under
    `httpx.ASGITransport` the exception reaches the caller as `ConnectionDropped`, itself an
    `httpx.RemoteProtocolError`.
    """

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(Exception):
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"x-sandbox-dropped", b"response\nlost")],
                }
            )
        raise ConnectionDropped("Server disconnected without sending a response (sandbox).")


class _HideDroppedConnections(logging.Filter):
    """Keeps uvicorn from logging a traceback for each deliberately dropped response."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


def _quiet_uvicorn() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDroppedConnections) for f in logger.filters):
        logger.addFilter(_HideDroppedConnections())


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status, headers=headers, media_type="application/json")


def _api_key(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    key = ""
    if scheme.lower() == "bearer":
        key = credentials.strip()
    elif scheme.lower() == "basic":  # curl -u sk_test_...:
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            key = base64.b64decode(credentials, validate=True).decode().partition(":")[0]
    if not header:
        raise StripeError(
            401,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
        )
    if not key.startswith("sk_test_"):
        shown = f"{key[:8]}{'*' * max(len(key) - 12, 0)}{key[-4:]}" if len(key) > 12 else "****"
        raise StripeError(401, "invalid_request_error", f"Invalid API Key provided: {shown}")
    return key


def _idempotency_key(request: Request) -> str | None:
    if request.method != "POST":
        return None
    key = request.headers.get("idempotency-key", "").strip()
    if len(key) > 255:
        raise invalid_request(
            "Idempotency-Key is too long: at most 255 characters.", code="idempotency_key_too_long"
        )
    return key or None


def _mismatch(stored: Stored, endpoint: str, key: str) -> Response:
    if stored.endpoint != endpoint:
        message = (
            "Keys for idempotent requests can only be used for the same endpoint they were "
            f"first used for ('{stored.endpoint}' vs '{endpoint}')."
        )
    else:
        message = (
            "Keys for idempotent requests can only be used with the same parameters they "
            "were first used with."
        )
    message += f" Try using a key other than '{key}' if you meant to execute a different request."
    return _json(400, StripeError(400, "idempotency_error", message).body())


def _api(state: SandboxState, operation: Operation) -> Endpoint_:
    """A /v1 route: outage, auth, form parsing, then the operation under the state's lock,
    its answer kept under the Idempotency-Key (per API key) and replayed on a retry."""

    async def endpoint(request: Request) -> Response:
        request_id = new_id("req", 14)
        try:
            if state.down:
                raise StripeError(
                    503, "api_error", "The sandbox is simulating an outage (/_sandbox/outage)."
                )
            api_key = _api_key(request)
            raw = await request.body() if request.method == "POST" else request.url.query.encode()
            try:
                params = parse_form(raw.decode())
            except UnicodeDecodeError:
                raise param_error(
                    "The body is not UTF-8.", code="parameter_invalid", param="body"
                ) from None
            key = _idempotency_key(request)
        except StripeError as error:
            return _json(error.status, error.body(), {"Request-Id": request_id})
        call = Call(dict(request.path_params), params, key, request_id)
        where = f"{request.method} {request.url.path}"
        fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        headers = {"Request-Id": request_id, **({"Idempotency-Key": key} if key else {})}
        async with state.lock:
            stored = state.idempotency.get((api_key, key)) if key else None
            if key and stored is not None:
                if (stored.endpoint, stored.fingerprint) != (where, fingerprint):
                    return _mismatch(stored, where, key)
                replayed = {**headers, "Idempotent-Replayed": "true"}
                return Response(stored.body, stored.status, replayed, "application/json")
            try:
                answer = operation(state, call)
            except StripeError as error:
                answer = Answer(error.status, error.body(), stored=error.stored)
            body = dumps(answer.body)
            if key and answer.stored:
                state.idempotency[(api_key, key)] = Stored(where, fingerprint, answer.status, body)
        if answer.drop:
            log.info("dropping the response to %s (request %s)", where, request_id)
            return _DroppedResponse()
        return Response(body, answer.status, headers, "application/json")

    return endpoint


def _retrieve_intent(state: SandboxState, call: Call) -> Answer:
    return Answer(200, state.intent(call.path["id"]).as_json())


def _retrieve_refund(state: SandboxState, call: Call) -> Answer:
    refund = state.refunds.get(call.path["id"])
    if refund is None:
        raise not_found("refund", call.path["id"])
    return Answer(200, refund)


def _retrieve_event(state: SandboxState, call: Call) -> Answer:
    event = state.webhooks.event(call.path["id"])
    if event is None:
        raise not_found("event", call.path["id"])
    return Answer(200, event)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise invalid_request("Send a JSON object.")
    return body


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        raise invalid_request(f'Send {{"{name}": true}} or {{"{name}": false}}.', param=name)
    return value


def _controls(state: SandboxState) -> list[Route]:
    """The /_sandbox routes tests use to stage failures and to look inside."""

    def control(handler: Callable[[Request], Awaitable[Any]], status: int = 200) -> Endpoint_:
        async def endpoint(request: Request) -> Response:
            try:
                return _json(status, await handler(request))
            except StripeError as error:
                return _json(error.status, error.body())

        return endpoint

    async def outage(request: Request) -> dict[str, bool]:
        state.down = _flag(await _json_body(request), "down")
        return {"down": state.down}

    async def pause(request: Request) -> dict[str, bool]:
        state.webhooks.paused = _flag(await _json_body(request), "paused")
        return {"paused": state.webhooks.paused}

    async def resend(request: Request) -> dict[str, Any]:
        event = state.webhooks.event(request.path_params["id"])
        if event is None:
            raise not_found("event", request.path_params["id"])
        return {"id": event["id"], "endpoints": state.webhooks.send(event)}

    async def add_endpoint(request: Request) -> list[dict[str, str]]:
        body = await _json_body(request)
        url, secret = body.get("url"), body.get("secret") or new_id("whsec", 32)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise invalid_request("Send an http(s) url.", param="url")
        if not isinstance(secret, str):
            raise invalid_request("The secret must be a string.", param="secret")
        state.endpoints.append(Endpoint(url, secret))
        return [e.as_json() for e in state.endpoints]

    async def endpoints(_: Request) -> list[dict[str, str]]:
        return [e.as_json() for e in state.endpoints]

    async def events(_: Request) -> list[dict[str, Any]]:
        return state.webhooks.events

    async def deliveries(_: Request) -> list[dict[str, Any]]:
        return [d.as_json() for d in state.webhooks.deliveries]

    async def charges(_: Request) -> list[dict[str, Any]]:
        return [c.as_json() for c in state.charges]

    return [
        Route("/_sandbox/outage", control(outage), methods=["POST"]),
        Route("/_sandbox/webhooks", control(pause), methods=["POST"]),
        Route("/_sandbox/events", control(events), methods=["GET"]),
        Route("/_sandbox/events/{id}/resend", control(resend, 202), methods=["POST"]),
        Route("/_sandbox/deliveries", control(deliveries), methods=["GET"]),
        Route("/_sandbox/charges", control(charges), methods=["GET"]),
        Route("/_sandbox/endpoints", control(endpoints), methods=["GET"]),
        Route("/_sandbox/endpoints", control(add_endpoint, 201), methods=["POST"]),
    ]


async def _unrouted(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = f"Unrecognized request URL ({request.method}: {request.url.path})."
    return JSONResponse({"error": {"type": "invalid_request_error", "message": message}}, status)


def create_sandbox_app(
    *,
    webhook_endpoints: list[tuple[str, str]] | None = None,
    settle_delay: float = 2.0,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The sandbox as an ASGI app; its state is `app.state.sandbox` (see `sandbox_state`).

    `webhook_endpoints` are `(url, signing secret)` pairs. `webhook_transport` replaces the
    network for webhook deliveries (e.g. `httpx.ASGITransport(mercato_app)`).
    """
    state = SandboxState(
        settle_delay=settle_delay,
        endpoints=[Endpoint(url, secret) for url, secret in webhook_endpoints or []],
        webhook_transport=webhook_transport,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await state.aclose()

    def post(path: str, operation: Operation) -> Route:
        return Route(path, _api(state, operation), methods=["POST"])

    def get(path: str, operation: Operation) -> Route:
        return Route(path, _api(state, operation), methods=["GET"])

    routes = [
        post("/v1/payment_intents", SandboxState.create_intent),
        get("/v1/payment_intents/{id}", _retrieve_intent),
        post("/v1/payment_intents/{id}/confirm", SandboxState.confirm),
        post("/v1/payment_intents/{id}/cancel", SandboxState.cancel),
        post("/v1/refunds", SandboxState.refund),
        get("/v1/refunds/{id}", _retrieve_refund),
        get("/v1/events/{id}", _retrieve_event),
        *_controls(state),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _unrouted})
    app.state.sandbox = state
    _quiet_uvicorn()
    return app


def sandbox_state(app: Starlette) -> SandboxState:
    state: SandboxState = app.state.sandbox
    return state


def main(
    port: int,
    webhook_url: str | None,
    webhook_secret: str | None,
    *,
    host: str = "127.0.0.1",
    settle_delay: float = 2.0,
) -> None:
    """Serve the sandbox with uvicorn until interrupted (`mercato sandbox-pay`)."""
    if webhook_secret and not webhook_url:
        raise ValueError("A webhook secret needs a webhook URL.")
    endpoints = []
    if webhook_url:
        secret = webhook_secret or new_id("whsec", 32)
        endpoints.append((webhook_url, secret))
        print(f"Webhooks go to {webhook_url}")  # the secret is not printed: it is a secret
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    app = create_sandbox_app(webhook_endpoints=endpoints, settle_delay=settle_delay)
    uvicorn.run(app, host=host, port=port, log_level="info")
