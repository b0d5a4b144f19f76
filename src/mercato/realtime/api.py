"""`/api/v1/stream`: ordered, resumable change streams over WebSocket."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, WebSocket
from starlette.responses import StreamingResponse

from mercato.core.access import PUBLIC, add_route, add_websocket_route
from mercato.core.config import Settings
from mercato.core.errors import ErrorResponse, Unauthenticated
from mercato.core.security import Authenticator, Principal
from mercato.realtime import protocol
from mercato.realtime.hub import StreamHub
from mercato.realtime.session import StreamSession
from mercato.realtime.sse import sse_stream


class ConnectionLimits:
    """Connections per instance and per client address."""

    def __init__(self, *, per_instance: int, per_client: int) -> None:
        self.per_instance = per_instance
        self.per_client = per_client
        self.by_client: Counter[str] = Counter()

    def admit(self, client: str) -> bool:
        if self.by_client.total() >= self.per_instance or self.by_client[client] >= self.per_client:
            return False
        self.by_client[client] += 1
        return True

    def release(self, client: str) -> None:
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]


def _authenticator(authenticator: Authenticator) -> Callable[[str], Awaitable[Principal | None]]:
    async def authenticate(token: str) -> Principal | None:
        # Catalog topics are public; a credential shows staff what customers do not see
        # (inactive products) and will gate per-customer topics (orders:<id>).
        try:
            return await authenticator.authenticate(token)
        except Unauthenticated:
            return None

    return authenticate


async def stream(websocket: WebSocket) -> None:
    state = websocket.app.state
    hub: StreamHub = state.stream_hub
    limits: ConnectionLimits = state.stream_limits
    settings: Settings = state.settings
    client = websocket.client.host if websocket.client else "unknown"
    await websocket.accept()
    if not limits.admit(client):
        await websocket.close(
            code=protocol.CLOSE_TOO_MANY_CONNECTIONS, reason="too many connections"
        )
        return
    try:
        hub.start()
        await hub.ready.wait()
        session = StreamSession(
            websocket,
            hub,
            authenticate=_authenticator(state.authenticator),
            buffer_messages=settings.stream_buffer_messages,
            heartbeat_interval=settings.stream_heartbeat_seconds,
            stall_seconds=settings.stream_stall_seconds,
        )
        await session.run()
    finally:
        limits.release(client)


def register_routes(app: FastAPI, *, prefix: str) -> None:
    add_websocket_route(app, f"{prefix}/stream", stream, access=PUBLIC)
    add_route(
        app,
        f"{prefix}/stream/sse",
        sse_stream,
        method="GET",
        access=PUBLIC,
        tags=["streams"],
        summary="The change stream as Server-Sent Events (resume with Last-Event-ID)",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {}}},
            409: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            429: {"model": ErrorResponse},
        },
    )
