"""A stream session's bounded send buffer: frames in order, taken by one writer task.

Frames go in already encoded (the hub builds each event's frame once for every session).
A session that asked for batched delivery gets the event frames waiting here written as
one `events` message per write instead of one message each: a client that is behind, or a
burst of events, then costs one WebSocket send per batch rather than one per event.
"""

from __future__ import annotations

import asyncio
from collections import deque

# A batch holds at most this many characters of event frames (one larger event still goes
# alone), well under the 1 MiB message limit of common client libraries.
BATCH_CHARS = 65_536


class SlowConsumer(Exception):
    pass


class Outbox:
    def __init__(self, capacity: int, *, stall_seconds: float) -> None:
        self.capacity = capacity
        self.batched = False
        self.added = 0  # frames ever added: tells an idle session from a quiet one
        self._stall_seconds = stall_seconds
        # (frame text, event position or 0 for other messages)
        self._frames: deque[tuple[str, int]] = deque()
        self._filled = asyncio.Event()
        self._drained = asyncio.Event()

    def room(self) -> int:
        return self.capacity - len(self._frames)

    def add_nowait(self, frame: str, position: int) -> None:
        """Add a frame; the caller has checked `room()`."""
        self._frames.append((frame, position))
        self.added += 1
        self._filled.set()

    async def add(self, frame: str, position: int) -> None:
        """Add a frame, waiting while the buffer is full; a buffer that stays full for
        `stall_seconds` means the client does not keep up (ADR 0019)."""
        if len(self._frames) >= self.capacity:
            try:
                async with asyncio.timeout(self._stall_seconds):
                    while len(self._frames) >= self.capacity:
                        self._drained.clear()
                        await self._drained.wait()
            except TimeoutError:
                raise SlowConsumer() from None
        self.add_nowait(frame, position)

    async def take(self) -> tuple[str, int]:
        """The next message to write, and the last event position it carries (0: none)."""
        frames = self._frames
        while not frames:
            self._filled.clear()
            await self._filled.wait()
        text, position = frames.popleft()
        if self.batched and position:
            # Consecutive event frames, in order, as one message; other messages
            # (heartbeats, errors) keep their place in the sequence.
            parts, size = [text], len(text)
            while frames and frames[0][1] and size + len(frames[0][0]) <= BATCH_CHARS:
                text, position = frames.popleft()
                parts.append(text)
                size += len(text)
            text = '{"type":"events","events":[' + ",".join(parts) + "]}"
        self._drained.set()
        return text, position
