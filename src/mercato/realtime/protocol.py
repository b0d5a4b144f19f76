"""The stream protocol: what clients send, what the server answers, and the close codes.

Client → server (JSON text frames, at most MAX_MESSAGE_BYTES each):
    {"type": "auth", "token": "<credential>"}
    {"type": "subscribe", "topics": ["products", "inventory:<id>"], "after": 1234, "batch": true}
    {"type": "unsubscribe", "topics": ["products"]}
    {"type": "ping"}
Server → client:
    {"type": "subscribed", "topics": [...], "position": <cursor>}
    {"type": "event", "position": N, "topic": "...", "event": {...}}
    {"type": "events", "events": [<event message>, ...]}  (only after "batch": true)
    {"type": "heartbeat", "head": N, "position": <cursor>}
    {"type": "error", "code": "...", "message": "..."}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGE_BYTES = 4_096

# Close codes (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4001
CLOSE_SLOW_CONSUMER = 4008  # resume with after=<last position received>
CLOSE_RESYNC_REQUIRED = 4010  # the requested position is older than the retained log
CLOSE_TOO_MANY_CONNECTIONS = 4029
# 1012 (service restart) is sent by the server on shutdown: reconnect, possibly elsewhere.


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Auth(_Message):
    type: Literal["auth"]
    token: Annotated[str, Field(min_length=1, max_length=512)]


class Subscribe(_Message):
    type: Literal["subscribe"]
    topics: Annotated[
        list[Annotated[str, Field(max_length=100)]], Field(min_length=1, max_length=50)
    ]
    after: Annotated[int | None, Field(ge=0)] = None
    # true: from now on, events arrive as `events` messages, several per message when more
    # than one is waiting; false: one `event` message each again (the default).
    batch: bool | None = None


class Unsubscribe(_Message):
    type: Literal["unsubscribe"]
    topics: Annotated[
        list[Annotated[str, Field(max_length=100)]], Field(min_length=1, max_length=50)
    ]


class Ping(_Message):
    type: Literal["ping"]


ClientMessage = Annotated[Auth | Subscribe | Unsubscribe | Ping, Field(discriminator="type")]
