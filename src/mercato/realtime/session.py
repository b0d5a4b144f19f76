"""One client's stream: its topics, its cursor in the log, and its bounded send buffer.

A session is in one of two modes. *Catching up*: its pump task reads the events after its
cursor (from the hub's window, or the log) and queues their frames, waiting when the
buffer is full. *Live*: once the cursor reaches the hub's head, the session registers with
the hub, which then hands it each new stretch of the log as it arrives (`push`, no task
switch per event); the session falls back to catching up whenever a stretch does not fit
its buffer or does not start right after its cursor. Either way every position after the
cursor is examined once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from pydantic import TypeAdapter, ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from mercato.core.security import Principal
from mercato.events import oldest_retained_position
from mercato.realtime import protocol
from mercato.realtime.hub import StreamHub
from mercato.realtime.outbox import Outbox, SlowConsumer
from mercato.realtime.topics import MAX_TOPICS, is_valid_topic, refused_topics

log = structlog.get_logger("mercato.realtime")
_messages: TypeAdapter[Any] = TypeAdapter(protocol.ClientMessage)
CLOSE_TIMEOUT = 30.0
PUMP_BATCH = 500


class CloseStream(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class StreamSession:
    def __init__(
        self,
        websocket: WebSocket,
        hub: StreamHub,
        *,
        authenticate: Callable[[str], Awaitable[Principal | None]],
        buffer_messages: int,
        heartbeat_interval: float,
        stall_seconds: float,
    ) -> None:
        self._ws = websocket
        self._hub = hub
        self._authenticate = authenticate
        self._heartbeat_interval = heartbeat_interval
        self._stall_seconds = stall_seconds
        self._outbox = Outbox(buffer_messages, stall_seconds=stall_seconds)
        self.topics: set[str] = set()
        self.cursor: int | None = None  # last log position examined for this client
        self.sent_position = 0  # last event position handed to the socket
        self.principal: Principal | None = None
        self._credential: str | None = None
        self._generation = 0
        self._subscribed = asyncio.Event()
        self._live = False  # registered with the hub, which pushes new events to it
        self._behind = asyncio.Event()  # wakes the pump of a live session that fell behind

    async def run(self) -> None:
        try:
            await self._serve()
        finally:
            self._leave_live()

    async def _serve(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read())
                tasks.create_task(self._pump())
                tasks.create_task(self._write())
                tasks.create_task(self._recheck())
        except* WebSocketDisconnect:
            pass
        except* CloseStream as group:
            error = group.exceptions[0]
            assert isinstance(error, CloseStream)
            await self._close(error.code, error.reason)
        except* SlowConsumer:
            log.info("stream_slow_consumer", sent_position=self.sent_position)
            await self._close(
                protocol.CLOSE_SLOW_CONSUMER, f"slow consumer; resume after={self.sent_position}"
            )

    async def _close(self, code: int, reason: str) -> None:
        # The close frame queues behind what the socket still holds: a slow client that
        # wakes up reads its backlog, then the close code telling it where to resume. One
        # that never reads is dropped when this times out.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(code=code, reason=reason), CLOSE_TIMEOUT)

    async def _enqueue(self, message: dict[str, Any]) -> None:
        await self._outbox.add(orjson.dumps(message).decode(), 0)

    async def _error(self, code: str, message: str) -> None:
        await self._enqueue({"type": "error", "code": code, "message": message})

    # --- client messages --------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            raw = await self._ws.receive_text()
            if len(raw) > protocol.MAX_MESSAGE_BYTES:
                await self._error(
                    "MESSAGE_TOO_LARGE",
                    f"messages are limited to {protocol.MAX_MESSAGE_BYTES} bytes",
                )
                continue
            try:
                message = _messages.validate_json(raw)
            except ValidationError as error:
                await self._error(
                    "INVALID_MESSAGE", error.errors()[0]["msg"] if error.errors() else "invalid"
                )
                continue
            await self._handle(message)

    async def _handle(self, message: Any) -> None:
        if isinstance(message, protocol.Ping):
            await self._enqueue({"type": "pong", "head": self._hub.head})
        elif isinstance(message, protocol.Auth):
            principal = await self._authenticate(message.token)
            if principal is None:
                raise CloseStream(protocol.CLOSE_UNAUTHENTICATED, "authentication failed")
            self.principal, self._credential = principal, message.token
            await self._enqueue({"type": "authenticated", "principal": str(principal.subject_id)})
            await self._drop_refused_topics()
        elif isinstance(message, protocol.Subscribe):
            await self._subscribe(message)
        elif isinstance(message, protocol.Unsubscribe):
            self.topics.difference_update(message.topics)
            await self._enqueue({"type": "unsubscribed", "topics": sorted(message.topics)})

    async def _drop_refused_topics(self) -> None:
        """A new or re-checked credential may see less than before: drop what it may not
        follow, and say so."""
        dropped = await refused_topics(self.topics, self.principal, self._hub.db_reader)
        if dropped:
            self.topics.difference_update(dropped)
            await self._error("FORBIDDEN_TOPIC", f"unsubscribed: {', '.join(dropped[:5])}")

    async def _recheck(self) -> None:
        """Every heartbeat interval, check the credential again: an expired token, a
        logout everywhere, a deleted account or a removed role ends what it allowed."""
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            if self._credential is None:
                continue
            principal = await self._authenticate(self._credential)
            if principal is None:
                raise CloseStream(
                    protocol.CLOSE_UNAUTHENTICATED, "the credential expired or was revoked"
                )
            self.principal = principal
            await self._drop_refused_topics()

    async def _subscribe(self, message: protocol.Subscribe) -> None:
        unknown = [t for t in message.topics if not is_valid_topic(t)]
        if unknown:
            await self._error("UNKNOWN_TOPIC", f"no such topic: {', '.join(unknown[:5])}")
            return
        if len(self.topics | set(message.topics)) > MAX_TOPICS:
            await self._error("TOO_MANY_TOPICS", f"at most {MAX_TOPICS} topics per connection")
            return
        refused = await refused_topics(message.topics, self.principal, self._hub.db_reader)
        if refused:
            await self._error("FORBIDDEN_TOPIC", f"not allowed: {', '.join(refused[:5])}")
            return
        if message.after is not None:
            oldest = await oldest_retained_position(self._hub.db_reader)
            if message.after < oldest - 1:
                raise CloseStream(
                    protocol.CLOSE_RESYNC_REQUIRED,
                    f"position {message.after} is no longer retained; re-sync, then resume",
                )
            self._leave_live()  # the pump replays from the new cursor
            self.cursor = min(message.after, self._hub.head)
            self._generation += 1
        elif self.cursor is None:
            self.cursor = self._hub.head
        if message.batch is not None:
            self._outbox.batched = message.batch
        self.topics.update(message.topics)
        await self._enqueue(
            {"type": "subscribed", "topics": sorted(self.topics), "position": self.cursor}
        )
        self._subscribed.set()

    # --- delivery -----------------------------------------------------------------------

    def _anonymous(self) -> bool:
        # Only staff see inactive and deleted products; everyone else gets tombstones.
        return self.principal is None or not self.principal.can("products:write")

    def push(self, events: list[dict[str, Any]]) -> None:
        """The hub's new events for a live session, queued without a task switch. A stretch
        that does not follow the cursor or does not fit the buffer goes back to the pump,
        which waits for room (and closes a slow consumer) as usual."""
        assert self.cursor is not None
        if events[0]["position"] != self.cursor + 1 or len(events) > self._outbox.room():
            self._leave_live()
            return
        hub, topics, anonymous = self._hub, self.topics, self._anonymous()
        for event in events:
            topic = hub.matching_topic(event, topics)
            if topic is not None:
                self._outbox.add_nowait(
                    hub.frame(event, topic, anonymous=anonymous), event["position"]
                )
        self.cursor = events[-1]["position"]

    def _leave_live(self) -> None:
        if self._live:
            self._live = False
            self._hub.unfollow(self)
            self._behind.set()

    async def _pump(self) -> None:
        await self._subscribed.wait()
        while True:
            assert self.cursor is not None
            generation, cursor = self._generation, self.cursor
            events = await self._hub.events_after(cursor, limit=PUMP_BATCH)
            if generation != self._generation:
                continue  # the client re-subscribed from another position meanwhile
            if events:
                await self._queue(events, generation)
            elif self._hub.follow(self, cursor):
                self._live = True
                await self._stay_live()

    async def _queue(self, events: list[dict[str, Any]], generation: int) -> None:
        anonymous = self._anonymous()
        for event in events:
            topic = self._hub.matching_topic(event, self.topics)
            if topic is not None:
                frame = self._hub.frame(event, topic, anonymous=anonymous)
                await self._outbox.add(frame, event["position"])
                if generation != self._generation:
                    return  # re-subscribed while this waited for room
            self.cursor = event["position"]

    async def _stay_live(self) -> None:
        """While the hub pushes events, send a heartbeat after each quiet interval; return
        when the session falls behind or re-subscribes."""
        while self._live:
            added = self._outbox.added
            self._behind.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat_interval):
                    await self._behind.wait()
            # Queued without waiting, so that no pushed event can come between reading
            # the cursor and queueing it; a full buffer is no idle connection anyway.
            if self._live and self._outbox.added == added and self._outbox.room() > 0:
                heartbeat = {"type": "heartbeat", "head": self._hub.head, "position": self.cursor}
                self._outbox.add_nowait(orjson.dumps(heartbeat).decode(), 0)

    async def _write(self) -> None:
        while True:
            frame, position = await self._outbox.take()
            await self._ws.send_text(frame)
            if position:
                self.sent_position = position
