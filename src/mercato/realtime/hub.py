"""The stream hub: this instance's window onto the event log.

It learns of new positions from PostgreSQL notifications sent by the relay (whichever
instance runs it), with a slow poll as a safety net, and reads each new stretch of the log
once into a bounded in-memory window. Every client session reads from that window, or
from the log itself when it is further behind, so a client can never see a gap: positions
are dense, and whatever is not in memory is read from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from typing import Any, Protocol

import asyncpg
import orjson
import structlog

from mercato.core.database import Database, Executor, asyncpg_dsn
from mercato.events import NOTIFY_CHANNEL, last_position, read_events
from mercato.realtime.topics import matching_topic, topics_of
from mercato.realtime.visibility import visible_to

log = structlog.get_logger("mercato.realtime")


class LiveSession(Protocol):
    def push(self, events: list[dict[str, Any]]) -> None: ...


class StreamHub:
    def __init__(
        self, db: Database, *, window: int = 10_000, poll_interval: float = 1.0, batch: int = 1_000
    ) -> None:
        self._db = db
        self._recent: deque[dict[str, Any]] = deque(maxlen=window)
        # Per event in the window: its topics and its frames, built once for all sessions.
        # Keys are inserted in position order, so the oldest are evicted from the front.
        self._topics: dict[int, tuple[str, ...]] = {}
        self._frames: dict[int, dict[tuple[str, bool], str]] = {}
        self._poll_interval = poll_interval
        self._batch = batch
        self._wake = asyncio.Event()
        self._advanced = asyncio.Condition()
        # Sessions at the head: handed each new stretch of the log as soon as it is read.
        self._live: dict[LiveSession, None] = {}
        self.head = 0
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start following the log, on first use: an instance with no stream clients
        keeps no listener connection and does no work."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(self._stop), name="mercato-stream-hub")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    @property
    def db_reader(self) -> Executor:
        return self._db.reader

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if not self.ready.is_set():
                    self.head = await last_position(self._db.reader)
                    self.ready.set()
                await self._follow(stop)
            except Exception as error:
                # Never die: sessions wait on this hub. Log, pause, follow again.
                log.warning("hub_connection_lost", error=str(error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_interval)

    async def _follow(self, stop: asyncio.Event) -> None:
        listener = await asyncpg.connect(asyncpg_dsn(self._db.url))
        try:
            await listener.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
            while not stop.is_set():
                await self.catch_up()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)
                self._wake.clear()
        finally:
            with contextlib.suppress(Exception):
                await listener.close()

    async def catch_up(self) -> None:
        """Read whatever the log holds beyond `head` into the window, then wake sessions."""
        while True:
            events = await read_events(self._db.reader, after=self.head, limit=self._batch)
            if not events:
                return
            self._recent.extend(events)
            self.head = events[-1]["position"]
            for event in events:
                self._topics[event["position"]] = topics_of(event)
                self._frames[event["position"]] = {}
            oldest = self._recent[0]["position"]
            while self._topics and next(iter(self._topics)) < oldest:
                position = next(iter(self._topics))
                del self._topics[position], self._frames[position]
            # Straight after moving the head, with no await in between: a session that
            # followed at the old head gets exactly the positions after it.
            for session in tuple(self._live):
                session.push(events)
            async with self._advanced:
                self._advanced.notify_all()

    def follow(self, session: LiveSession, cursor: int) -> bool:
        """Push new events to `session` from now on, if `cursor` is the head (else False:
        the session reads what it is missing first)."""
        if cursor != self.head:
            return False
        self._live[session] = None
        return True

    def unfollow(self, session: LiveSession) -> None:
        self._live.pop(session, None)

    def matching_topic(self, event: dict[str, Any], subscribed: set[str]) -> str | None:
        """The most specific subscribed topic of the event (topics computed once per event)."""
        return matching_topic(self._topics.get(event["position"]) or topics_of(event), subscribed)

    def frame(self, event: dict[str, Any], topic: str, *, anonymous: bool) -> str:
        """The event's WebSocket frame: built once per (topic, audience) for all sessions."""
        frames = self._frames.get(event["position"])
        key = (topic, anonymous)
        if frames is not None and key in frames:
            return frames[key]
        shown = visible_to(event, principal=None if anonymous else "staff")
        text = (
            f'{{"type":"event","position":{event["position"]},'
            f'"topic":{orjson.dumps(topic).decode()},"event":{orjson.dumps(shown).decode()}}}'
        )
        if frames is not None:
            frames[key] = text
        return text

    async def events_after(self, position: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` events after `position`, from memory when it still holds them."""
        if self._recent and position >= self._recent[0]["position"] - 1:
            start = position - self._recent[0]["position"] + 1  # positions are dense
            return list(itertools.islice(self._recent, start, start + limit))
        return await read_events(self._db.reader, after=position, limit=limit, up_to=self.head)

    async def wait_beyond(self, position: int, seconds: float) -> bool:
        """Wait until the head passes `position`; False when `seconds` pass first."""
        async with self._advanced:
            try:
                await asyncio.wait_for(
                    self._advanced.wait_for(lambda: self.head > position), seconds
                )
            except TimeoutError:
                return False
        return True
