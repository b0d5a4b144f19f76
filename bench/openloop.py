"""An open-loop HTTP/1.1 load generator that does not suffer from coordinated omission.

Requests are scheduled at a fixed rate (request i is due at start + i / rate) whatever the
server does; each one's latency is measured from its *intended* send time, so time spent
waiting for a free keep-alive connection, or lost to a stalled server, counts. Latencies go
into an HdrHistogram. Prints one JSON object.

    python bench/openloop.py --port 8101 --paths-file bench/results/paths_w1.txt \
        --rate 700 --duration 10
    python bench/openloop.py --port 8101 --orders-file bench/results/w4_data.txt \
        --rate 400 --duration 10

`--orders-file` (W4) sends `POST /api/v1/orders` instead: each request as a random one of
the file's customers ("T <access token>" lines), 1-3 distinct random products ("P <id>"),
quantity 1, and a fresh Idempotency-Key, as bench/wrk/w4_order.lua does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import uvloop
from hdrh.histogram import HdrHistogram

HOST = "127.0.0.1"
MAX_LATENCY_US = 120_000_000


class ResponseError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.usable = True

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ResponseError(lines[0])
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            await self._read_chunks()
        elif status not in (204, 304) and status >= 200:
            raise ResponseError("response without a length")
        if headers.get("connection") == "close":
            self.close()
        return status

    async def _read_chunks(self) -> None:
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            await self.reader.readexactly(size + 2)
            if size == 0:
                return

    def close(self) -> None:
        self.usable = False
        self.writer.close()


@dataclass
class Results:
    histogram: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, MAX_LATENCY_US, 3))
    # How late each request left against its intended time: the generator's own share.
    send_lag: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, MAX_LATENCY_US, 3))
    ok: int = 0
    bad_status: int = 0
    errors: int = 0


class Pool:
    """Idle keep-alive connections; opens new ones up to `limit`, then requests queue."""

    def __init__(self, port: int, limit: int) -> None:
        self.port = port
        self.limit = limit
        self.opened = 0
        self.idle: asyncio.Queue[Connection] = asyncio.Queue()

    async def prefill(self, count: int) -> None:
        for _ in range(min(count, self.limit)):
            self.opened += 1
            self.idle.put_nowait(await Connection.open(self.port))

    async def acquire(self) -> Connection:
        if not self.idle.empty() or self.opened >= self.limit:
            return await self.idle.get()
        self.opened += 1
        try:
            return await Connection.open(self.port)
        except OSError:
            self.opened -= 1
            raise

    def release(self, conn: Connection) -> None:
        if conn.usable:
            self.idle.put_nowait(conn)
        else:
            self.opened -= 1

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().close()


async def one_request(pool: Pool, request: bytes, due: float, results: Results) -> None:
    lag_us = int((time.perf_counter() - due) * 1_000_000)
    results.send_lag.record_value(min(max(lag_us, 1), MAX_LATENCY_US))
    try:
        conn = await pool.acquire()
    except OSError:
        results.errors += 1
        return
    try:
        status = await conn.send(request)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ResponseError):
        conn.close()
        results.errors += 1
        return
    finally:
        pool.release(conn)
    latency_us = max(1, int((time.perf_counter() - due) * 1_000_000))
    results.histogram.record_value(min(latency_us, MAX_LATENCY_US))
    if 200 <= status < 400:
        results.ok += 1
    else:
        results.bad_status += 1


def gets(port: int, paths: list[str], rng: random.Random) -> Callable[[], bytes]:
    requests = [f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode() for path in paths]
    return lambda: rng.choice(requests)


def orders(port: int, lines: list[str], rng: random.Random) -> Callable[[], bytes]:
    """W4: a new order each call, with its own Idempotency-Key."""
    tokens = [line[2:] for line in lines if line.startswith("T ")]
    products = [line[2:] for line in lines if line.startswith("P ")]
    if not tokens or len(products) < 3:
        sys.exit("the orders file needs customers (T lines) and at least 3 products (P lines)")
    run = uuid.uuid4().hex[:12]
    counter = 0

    def order() -> bytes:
        nonlocal counter
        counter += 1
        chosen = rng.sample(products, rng.randint(1, 3))
        body = orjson.dumps(
            {"lines": [{"product_id": product, "quantity": 1} for product in chosen]}
        )
        head = (
            f"POST /api/v1/orders HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Authorization: Bearer {rng.choice(tokens)}\r\n"
            f"Content-Type: application/json\r\nIdempotency-Key: ol-{run}-{counter}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    return order


async def run(
    *,
    port: int,
    next_request: Callable[[], bytes],
    rate: float,
    duration: float,
    connections: int,
    grace: float,
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    pool = Pool(port, connections)
    await pool.prefill(min(connections, 16))
    results = Results()
    tasks: set[asyncio.Task[None]] = set()
    interval = 1.0 / rate
    # perf_counter, not loop.time(): uvloop's clock only ticks in whole milliseconds.
    clock = time.perf_counter
    start = clock() + 0.01
    total = int(rate * duration)
    sent = 0
    cpu_started = time.process_time()
    while sent < total:
        now = clock()
        due = start + sent * interval
        if due > now:
            # Event-loop timers tick in milliseconds: a shorter sleep returns at once and
            # the loop would spin, eating the CPU the server needs. Sleeping at least 1 ms
            # makes requests leave up to ~1 ms late; the lateness is reported (send_lag)
            # and counted in their latency, so it can only overstate latency.
            await asyncio.sleep(max(due - now, 0.001))
            now = clock()
        # Issue everything that is due: a late wake-up must not thin out the schedule.
        while sent < total and start + sent * interval <= now:
            task = loop.create_task(
                one_request(pool, next_request(), start + sent * interval, results)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
    unfinished = 0
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=grace)
        unfinished = len(pending)
        for task in pending:
            task.cancel()
    elapsed = clock() - start
    pool.close()
    h = results.histogram
    completed = results.ok + results.bad_status

    def ms(percentile: float) -> float:
        return round(h.get_value_at_percentile(percentile) / 1000, 3) if completed else 0.0

    return {
        "rate": rate,
        "duration_s": round(elapsed, 3),
        "sent": sent,
        "ok": results.ok,
        "bad_status": results.bad_status,
        "errors": results.errors,
        "unfinished": unfinished,
        "connections_opened": pool.opened,
        "p50_ms": ms(50),
        "p90_ms": ms(90),
        "p95_ms": ms(95),
        "p99_ms": ms(99),
        "p999_ms": ms(99.9),
        "max_ms": round(h.get_max_value() / 1000, 3) if completed else 0.0,
        "send_lag_p50_ms": round(results.send_lag.get_value_at_percentile(50) / 1000, 3),
        "send_lag_p99_ms": round(results.send_lag.get_value_at_percentile(99) / 1000, 3),
        "generator_cpu_s": round(time.process_time() - cpu_started, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="Port on 127.0.0.1.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--paths-file", help="GET these request paths, one a line.")
    source.add_argument("--orders-file", help="POST orders (W4): T <token> and P <id> lines.")
    parser.add_argument("--rate", type=float, required=True, help="Requests per second.")
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds of sending.")
    parser.add_argument("--connections", type=int, default=64, help="Keep-alive limit.")
    parser.add_argument("--grace", type=float, default=10.0, help="Wait for stragglers.")
    args = parser.parse_args()
    with open(args.paths_file or args.orders_file) as file:
        lines = [line.strip() for line in file if line.strip()]
    if not lines or args.rate <= 0:
        sys.exit("need at least one path and a positive rate")
    rng = random.Random(42)
    make = orders if args.orders_file else gets
    result = uvloop.run(
        run(
            port=args.port,
            next_request=make(args.port, lines, rng),
            rate=args.rate,
            duration=args.duration,
            connections=args.connections,
            grace=args.grace,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
