"""S1's subscribers, spread over several processes so that the client side is not the limit.

Each process runs uvloop with a plain asyncio.Protocol per connection driving `websockets`'
sans-I/O client: a frame is parsed and recorded inside `data_received`, with no task switch
per message (the asyncio client API costs about twice as much CPU per message). A process
records, per subscriber, the positions and event ids it received and each event's latency
(receive time - the payload's `sent_at`), checks them once the parent sends the committed
event ids, and returns the summary.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import multiprocessing.synchronize
import queue
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import uvloop
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

CONNECT_CONCURRENCY = 50


def check(positions: Sequence[int]) -> tuple[int, int, int]:
    """(gaps, duplicates, reorders) in one subscriber's positions, from the first received."""
    gaps = duplicates = reorders = 0
    for previous, current in itertools.pairwise(positions):
        if current == previous + 1:
            continue
        if current > previous + 1:
            gaps += 1
        elif current == previous:
            duplicates += 1
        else:
            reorders += 1
    return gaps, duplicates, reorders


class Subscriber(asyncio.Protocol):
    def __init__(self, url: str, subscribe: bytes) -> None:
        self.ws = ClientProtocol(parse_uri(url), max_size=None)
        self.subscribe = subscribe
        self.subscribed = asyncio.get_running_loop().create_future()
        self.positions = array("q")
        self.latencies_us = array("q")
        self.event_ids: list[str] = []
        self.first_sent = float("inf")
        self.last_received = 0.0
        self.close_code: int | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.ws.send_request(self.ws.connect())
        self._flush()

    def _flush(self) -> None:
        assert self.transport is not None
        for chunk in self.ws.data_to_send():
            if chunk:
                self.transport.write(chunk)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.ws.receive_data(data)
        for item in self.ws.events_received():
            if isinstance(item, Response):
                self.ws.send_text(self.subscribe)
            elif isinstance(item, Frame) and item.opcode is Opcode.TEXT:
                self._message(orjson.loads(item.data), now)
        self._flush()
        if self.ws.close_code is not None and self.close_code is None:
            self.close_code = self.ws.close_code

    def _message(self, message: dict[str, Any], now: float) -> None:
        kind = message["type"]
        if kind == "event":
            self._event(message, now)
        elif kind == "events":
            for item in message["events"]:
                self._event(item, now)
        elif kind == "subscribed" and not self.subscribed.done():
            self.subscribed.set_result(None)

    def _event(self, message: dict[str, Any], now: float) -> None:
        event = message["event"]
        sent = event["payload"].get("sent_at", now)
        self.positions.append(message["position"])
        self.latencies_us.append(max(1, int((now - sent) * 1e6)))
        self.event_ids.append(event["event_id"])
        self.first_sent = min(self.first_sent, sent)
        self.last_received = now

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = self.ws.close_code or 1006
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("closed before subscribing"))


@dataclass
class ClientSummary:
    subscribers: int = 0
    deliveries: int = 0
    gaps: int = 0
    duplicates: int = 0
    reorders: int = 0
    missing: int = 0
    closed_early: int = 0
    first_sent: float = float("inf")
    last_received: float = 0.0
    cpu_seconds: float = 0.0
    latencies_us: array[int] = field(default_factory=lambda: array("q"))


async def _run(
    url: str,
    count: int,
    batch: bool,
    ready: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    progress: Any,
    index: int,
    committed: multiprocessing.Queue[set[str]],
    results: multiprocessing.Queue[ClientSummary | str],
) -> None:
    loop = asyncio.get_running_loop()
    host, _, port = url.split("/")[2].partition(":")
    options = {"batch": True} if batch else {}
    text = orjson.dumps({"type": "subscribe", "topics": ["products"], **options})
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one() -> Subscriber:
        async with gate:
            _, sub = await loop.create_connection(lambda: Subscriber(url, text), host, int(port))
            await asyncio.wait_for(sub.subscribed, 60)
            return sub

    subs = list(await asyncio.gather(*(open_one() for _ in range(count))))
    cpu0 = time.process_time()
    ready.set()
    while not stop.is_set():
        # The parent drains until every live subscriber has every committed event.
        live = [len(s.positions) for s in subs if s.close_code is None]
        progress[2 * index] = sum(len(s.positions) for s in subs)
        progress[2 * index + 1] = min(live) if live else 2**62
        await asyncio.sleep(0.05)
    summary = ClientSummary(subscribers=count, cpu_seconds=time.process_time() - cpu0)
    summary.closed_early = sum(s.close_code is not None for s in subs)
    for sub in subs:
        if sub.transport is not None:
            sub.transport.abort()
    ids = await loop.run_in_executor(None, committed.get)
    for sub in subs:
        gaps, duplicates, reorders = check(sub.positions)
        summary.gaps += gaps
        summary.duplicates += duplicates
        summary.reorders += reorders
        summary.missing += len(ids - set(sub.event_ids))
        summary.deliveries += len(sub.positions)
        summary.latencies_us.extend(sub.latencies_us)
        summary.first_sent = min(summary.first_sent, sub.first_sent)
        summary.last_received = max(summary.last_received, sub.last_received)
    results.put(summary)


def _process_main(*args: Any) -> None:
    results = args[-1]
    try:
        uvloop.run(_run(*args))
    except BaseException as error:
        results.put(f"{type(error).__name__}: {error}")
        raise


class ClientPool:
    """`processes` subscriber processes holding `subscribers` connections between them."""

    def __init__(self, url: str, subscribers: int, processes: int, *, batch: bool) -> None:
        context = multiprocessing.get_context("spawn")
        self.processes = max(1, min(processes, subscribers))
        self._ready = [context.Event() for _ in range(self.processes)]
        self._stop = context.Event()
        self._progress = context.Array("q", 2 * self.processes, lock=False)
        self._committed = [context.Queue() for _ in range(self.processes)]
        self._results: multiprocessing.Queue[ClientSummary | str] = context.Queue()
        shares = [subscribers // self.processes] * self.processes
        for i in range(subscribers % self.processes):
            shares[i] += 1
        self._workers = [
            context.Process(
                target=_process_main,
                args=(
                    url,
                    share,
                    batch,
                    self._ready[i],
                    self._stop,
                    self._progress,
                    i,
                    self._committed[i],
                    self._results,
                ),
                daemon=True,
            )
            for i, share in enumerate(shares)
        ]

    def start(self, timeout: float = 180.0) -> None:
        for worker in self._workers:
            worker.start()
        deadline = time.monotonic() + timeout
        for ready in self._ready:
            while not ready.wait(0.2):
                self._raise_if_failed()
                if time.monotonic() > deadline:
                    raise RuntimeError("subscribers did not connect in time")

    def _raise_if_failed(self) -> None:
        try:
            message = self._results.get_nowait()
        except queue.Empty:
            return
        raise RuntimeError(f"a subscriber process failed: {message}")

    def received(self) -> tuple[int, int]:
        """(deliveries so far, fewest deliveries of any live subscriber)."""
        totals = self._progress[0::2]
        return sum(totals), min(self._progress[1::2])

    def finish(self, committed: set[str]) -> list[ClientSummary]:
        self._stop.set()
        for channel in self._committed:
            channel.put(committed)
        summaries = []
        for _ in self._workers:
            result = self._results.get(timeout=300)
            if isinstance(result, str):
                raise RuntimeError(f"a subscriber process failed: {result}")
            summaries.append(result)
        for worker in self._workers:
            worker.join(timeout=30)
        return summaries

    def close(self) -> None:
        self._stop.set()
        for worker in self._workers:
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=5)
