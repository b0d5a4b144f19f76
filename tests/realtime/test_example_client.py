"""The documented example client runs, replays and follows live events."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.realtime.conftest import serving

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "stream_client.py"


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("stream_client_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_example_client_replays_then_follows(
    fresh_db_url: str, write_events: Callable[..., Any]
) -> None:
    example = _load_example()
    seen: list[int] = []

    async def handle(message: dict[str, Any]) -> None:
        seen.append(message["position"])

    async with serving(fresh_db_url) as address:
        await write_events(3)  # before the client connects: replayed from after=0
        following = asyncio.create_task(
            example.follow(
                f"ws://{address}/api/v1/stream", ["products"], handle, after=0, stop_after=5
            )
        )
        while len(seen) < 3:
            await asyncio.sleep(0.05)
        await write_events(2)  # live
        last = await asyncio.wait_for(following, 20)
    assert seen == [1, 2, 3, 4, 5]
    assert last == 5
