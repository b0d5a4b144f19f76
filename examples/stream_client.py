"""Follow Mercato's change stream and never miss an event, across disconnects.

    python examples/stream_client.py ws://127.0.0.1:8000/api/v1/stream products inventory

It remembers the position of the last event it handled and, whenever the connection drops
(network, server restart: close 1012, or being too slow: close 4008), reconnects and
subscribes with `after=<that position>`: the server replays what was missed, then goes live.
Close 4010 means the position is older than the server keeps: re-read the resources (the
REST API), then resume from the stream's current position.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import websockets

RESYNC_REQUIRED = 4010


async def follow(
    url: str,
    topics: list[str],
    handle: Callable[[dict[str, Any]], Awaitable[None]],
    *,
    after: int | None = None,
    stop_after: int | None = None,
) -> int:
    """Deliver events to `handle` in position order; return the last position handled."""
    handled = 0
    while True:
        try:
            async with websockets.connect(url) as connection:
                subscribe: dict[str, Any] = {"type": "subscribe", "topics": topics}
                if after is not None:
                    subscribe["after"] = after
                await connection.send(json.dumps(subscribe))
                async for raw in connection:
                    message = json.loads(raw)
                    if message["type"] == "subscribed" and after is None:
                        after = message["position"]
                    elif message["type"] == "event":
                        await handle(message)
                        after = message["position"]
                        handled += 1
                        if stop_after is not None and handled >= stop_after:
                            return after
                    elif message["type"] == "heartbeat":
                        after = message["position"]  # nothing for us up to here
        except websockets.ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code == RESYNC_REQUIRED:
                raise
        except OSError:
            pass
        await asyncio.sleep(1)  # then resume from `after`


async def _print(message: dict[str, Any]) -> None:
    event = message["event"]
    print(message["position"], event["type"], event["aggregate_id"], flush=True)


if __name__ == "__main__":
    asyncio.run(follow(sys.argv[1], sys.argv[2:] or ["products"], _print))
