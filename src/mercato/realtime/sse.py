"""`GET /api/v1/stream/sse`: the same ordered, resumable stream as Server-Sent Events.

For clients that cannot use WebSocket. Each event's SSE `id` is its stream position, so a
reconnecting `EventSource` resumes by itself through `Last-Event-ID`; `after=` does the same
explicitly. Topics come from the query string; credentials (staff view) only from the
`Authorization` header, never the URL. A client that stops reading is held back by TCP
flow control: the server keeps no per-client buffer beyond the socket's.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response, StreamingResponse

from mercato.core.access import optional_principal
from mercato.core.errors import Conflict, Forbidden, Unauthenticated, ValidationFailed
from mercato.core.security import bearer_credential
from mercato.events import oldest_retained_position
from mercato.realtime.hub import StreamHub
from mercato.realtime.topics import (
    MAX_TOPICS,
    is_valid_topic,
    matching_topic,
    refused_topics,
    topics_of,
)
from mercato.realtime.visibility import visible_to


class ResyncRequired(Conflict):
    code = "RESYNC_REQUIRED"
    message = "This position is older than the retained log; re-read state, then resume."


class TooManyConnections(Conflict):
    code = "TOO_MANY_CONNECTIONS"
    status = 429
    message = "Too many stream connections from this client."


class SseQuery(BaseModel):
    topics: str = Field(min_length=1, max_length=2_000, description="Comma-separated topics.")
    after: int | None = Field(default=None, ge=0, description="Resume after this position.")


def _topics(raw: str) -> set[str]:
    topics = {t.strip() for t in raw.split(",") if t.strip()}
    unknown = sorted(t for t in topics if not is_valid_topic(t))
    if unknown or not topics or len(topics) > MAX_TOPICS:
        raise ValidationFailed(
            details=[
                {"field": "query.topics", "message": f"unknown or too many topics: {unknown[:5]}"}
            ]
        )
    return topics


def _format(event: dict[str, Any], topic: str) -> bytes:
    data = orjson.dumps({"position": event["position"], "topic": topic, "event": event})
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event["position"], event["type"].encode(), data)


async def sse_stream(request: Request, params: Annotated[SseQuery, Query()]) -> Response:
    state = request.app.state
    hub: StreamHub = state.stream_hub
    topics = _topics(params.topics)
    last_event_id = request.headers.get("last-event-id")
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else params.after
    caller = optional_principal(request)
    principal = "staff" if caller is not None and caller.can("products:write") else None
    refused = await refused_topics(topics, caller, hub.db_reader)
    if refused:
        raise Forbidden(f"Not allowed: {', '.join(sorted(refused)[:5])}.")
    hub.start()
    await hub.ready.wait()
    if after is not None and after < await oldest_retained_position(hub.db_reader) - 1:
        raise ResyncRequired()
    client = request.client.host if request.client else "unknown"
    if not state.stream_limits.admit(client):
        raise TooManyConnections()
    heartbeat = state.settings.stream_heartbeat_seconds
    credential = bearer_credential(request.scope) if caller is not None else None

    async def still_allowed() -> bool:
        """The credential, checked again every heartbeat interval: an expired token, a
        logout everywhere or a lost permission ends the stream (the client reconnects
        with a fresh token and resumes from its Last-Event-ID)."""
        if credential is None:
            return True
        try:
            current = await state.authenticator.authenticate(credential)
        except Unauthenticated:
            return False
        return not await refused_topics(topics, current, hub.db_reader)

    async def events(cursor: int) -> AsyncIterator[bytes]:
        checked = time.monotonic()
        try:
            yield b"retry: 1000\n\n"
            while True:
                if time.monotonic() - checked > heartbeat:
                    if not await still_allowed():
                        yield b"event: unauthorized\ndata: {}\n\n"
                        return
                    checked = time.monotonic()
                batch = await hub.events_after(cursor, limit=500)
                if not batch:
                    if not await hub.wait_beyond(cursor, heartbeat):
                        yield b": heartbeat %d\n\n" % cursor
                    continue
                for event in batch:
                    topic = matching_topic(topics_of(event), topics)
                    if topic is not None:
                        yield _format(visible_to(event, principal=principal), topic)
                    cursor = event["position"]
        finally:
            state.stream_limits.release(client)

    start = min(after, hub.head) if after is not None else hub.head
    return StreamingResponse(
        events(start),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
