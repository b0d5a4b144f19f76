"""S1 stream latency: N WebSocket subscribers on /api/v1/stream, events committed at a rate.

Starts the app (production settings, 1 or 2 workers, relay in process or in `mercato
worker`), opens N subscribers to the `products` topic spread over several processes
(`stream_clients.py`), then commits `product.updated` events straight into
`events.outbox`, one per transaction, at a fixed rate from a separate asyncpg connection.
Each event's payload carries `sent_at`, the database's clock_timestamp() at insert (same
machine, same wall clock); latency is the subscriber's receive time minus that. A checker
verifies every subscriber saw dense, strictly increasing positions and every committed
event. Then the relay alone: 20,000 events inserted in one transaction, timed until
relay_state.last_position has moved them.

    .venv/bin/python bench/run.py --only-s1 [--s1-rate 50 --s1-seconds 10]
        [--s1-workers 2] [--s1-batch] [--s1-clients 2] [--s1-relay-worker] [--s1-port 8103]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import uvloop
from hdrh.histogram import HdrHistogram
from servers import Server, launch_server, launch_worker, stop_server, wait_ready
from stream_clients import ClientPool

PORT = 8103
TARGET_P99_MS = 100.0
TARGET_SUBSCRIBERS = 1_000
RELAY_EVENTS = 20_000
DRAIN_STALL_S, DRAIN_CAP_S = 10.0, 300.0
INSERT = (
    "INSERT INTO events.outbox (event_id, type, schema_version, aggregate_type, aggregate_id, "
    "aggregate_version, payload) VALUES ($1, 'product.updated', 1, 'product', $2, 1, "
    "jsonb_build_object('sent_at', extract(epoch FROM clock_timestamp())))"
)
BULK_INSERT = (
    "INSERT INTO events.outbox (event_id, type, schema_version, aggregate_type, aggregate_id, "
    "aggregate_version, payload) SELECT gen_random_uuid(), 'product.updated', 1, 'product', "
    "gen_random_uuid()::text, 1, jsonb_build_object('sent_at', 0) FROM generate_series(1, $1)"
)


@dataclass
class S1Result:
    subscribers: int
    rate: float
    seconds: float
    committed: int = 0
    deliveries: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    deliveries_per_s: float = 0.0
    gaps: int = 0
    duplicates: int = 0
    reorders: int = 0
    missing: int = 0
    closed_early: int = 0
    commit_lag_max_ms: float = 0.0
    connect_s: float = 0.0
    server_cpu: float = 0.0  # share of one core over the send + drain window
    client_cpu: float = 0.0
    server_cpu_s: float = 0.0  # CPU seconds over the send + drain window
    client_cpu_s: float = 0.0

    @property
    def server_ms_per_1k(self) -> float:
        """Server CPU ms per 1,000 deliveries: robust to other load on the machine."""
        return 1e6 * self.server_cpu_s / self.deliveries if self.deliveries else 0.0

    @property
    def client_ms_per_1k(self) -> float:
        return 1e6 * self.client_cpu_s / self.deliveries if self.deliveries else 0.0

    @property
    def clean(self) -> bool:
        return not (self.gaps or self.duplicates or self.reorders or self.missing)


async def _commit(conn: asyncpg.Connection, rate: float, seconds: float) -> tuple[set[str], float]:
    count = max(1, round(rate * seconds))
    ids: set[str] = set()
    start, worst = time.monotonic(), 0.0
    for i in range(count):
        intended = start + i / rate
        delay = intended - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        worst = max(worst, time.monotonic() - intended)
        event_id = uuid.uuid4()
        async with conn.transaction():
            await conn.execute(INSERT, event_id, str(uuid.uuid4()))
        ids.add(str(event_id))
    return ids, worst * 1000


async def measure(
    database_url: str,
    pool: ClientPool,
    subscribers: int,
    rate: float,
    seconds: float,
    server: AppCpu,
) -> S1Result:
    """Commit events at `rate` for `seconds` while `pool`'s subscribers (already connected)
    receive them, drain, and check what every subscriber got."""
    result = S1Result(subscribers, rate, seconds)
    conn = await asyncpg.connect(database_url)
    try:
        cpu0, server0, wall0 = time.process_time(), server.cpu_seconds(), time.monotonic()
        committed, result.commit_lag_max_ms = await _commit(conn, rate, seconds)
        result.committed = len(committed)
        # Drain: wait while deliveries still progress (a saturated server catches up late),
        # up to DRAIN_CAP_S; what never arrives counts as missing.
        last_total, last_progress, cap = -1, time.monotonic(), time.monotonic() + DRAIN_CAP_S
        while time.monotonic() < cap and time.monotonic() - last_progress < DRAIN_STALL_S:
            total, fewest = pool.received()
            if fewest >= len(committed):
                break
            if total != last_total:
                last_total, last_progress = total, time.monotonic()
            await asyncio.sleep(0.05)
        wall = time.monotonic() - wall0
        result.server_cpu_s = server.cpu_seconds() - server0
        committer_cpu_s = time.process_time() - cpu0
    finally:
        await conn.close()
    summaries = await asyncio.get_running_loop().run_in_executor(None, pool.finish, committed)
    result.client_cpu_s = committer_cpu_s + sum(c.cpu_seconds for c in summaries)
    result.client_cpu = result.client_cpu_s / wall
    result.server_cpu = result.server_cpu_s / wall
    histogram = HdrHistogram(1, 600_000_000, 3)  # microseconds
    first_sent, last_received = float("inf"), 0.0
    for summary in summaries:
        result.closed_early += summary.closed_early
        result.gaps += summary.gaps
        result.duplicates += summary.duplicates
        result.reorders += summary.reorders
        result.missing += summary.missing
        result.deliveries += summary.deliveries
        for latency in summary.latencies_us:
            histogram.record_value(latency)
        first_sent = min(first_sent, summary.first_sent)
        last_received = max(last_received, summary.last_received)
    result.p50_ms = histogram.get_value_at_percentile(50) / 1000
    result.p99_ms = histogram.get_value_at_percentile(99) / 1000
    result.max_ms = histogram.get_max_value() / 1000
    if last_received > first_sent:
        result.deliveries_per_s = result.deliveries / (last_received - first_sent)
    return result


async def relay_throughput(database_url: str, events: int = RELAY_EVENTS) -> tuple[float, float]:
    """(seconds, events/s) for the relay to move `events` committed in one transaction."""
    conn = await asyncpg.connect(database_url)
    try:
        idle_deadline = time.monotonic() + 30
        while await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events.outbox)"):
            if time.monotonic() > idle_deadline:
                raise RuntimeError("the relay did not drain the outbox within 30 s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let the relay back off to its idle poll interval
        before = await conn.fetchval("SELECT last_position FROM events.relay_state WHERE id = 1")
        async with conn.transaction():
            await conn.execute(BULK_INSERT, events)
        started = time.monotonic()
        while True:
            position = await conn.fetchval(
                "SELECT last_position FROM events.relay_state WHERE id = 1"
            )
            if position - before >= events:
                break
            if time.monotonic() - started > 300:
                raise RuntimeError(f"relay moved only {position - before} of {events} in 300 s")
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        return elapsed, events / elapsed
    finally:
        await conn.close()


def _raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@dataclass
class AppCpu:
    """The app's processes (serving, and the worker if any), metered together."""

    parts: list[Server]

    def cpu_seconds(self) -> float:
        return sum(part.cpu_seconds() for part in self.parts)


@dataclass
class S1Run:
    results: list[S1Result]
    relay_seconds: float
    relay_rate: float
    pinning: str
    setup: S1Setup


@dataclass(frozen=True)
class S1Setup:
    """How S1 runs: server workers, subscriber processes, batched delivery, and the port."""

    workers: int = 1
    client_processes: int = 2
    batch: bool = False
    port: int = PORT
    relay_worker: bool = False  # the relay in `mercato worker`, not in the serving process

    def describe(self) -> str:
        delivery = 'batched delivery (`"batch": true`)' if self.batch else "one message per event"
        relay = (
            "relay and background jobs in a `mercato worker` (`MERCATO_RELAY_IN_PROCESS=false`)"
            if self.relay_worker
            else "relay in the serving process"
        )
        return (
            f"{self.workers} worker(s), {self.client_processes} subscriber process(es), "
            f"{delivery}, {relay}"
        )


def run_s1(
    *,
    database_url: str,
    env: dict[str, str],
    cwd: Path,
    log: Path,
    servers: list[Server],
    subscribers: Sequence[int] = (100, 1_000),
    rate: float = 50.0,
    seconds: float = 10.0,
    pin: bool = True,
    setup: S1Setup = S1Setup(),
    say: Callable[[str], None] = print,
) -> S1Run:
    """Start the app, measure every subscriber count, then the relay; stop the app."""
    _raise_open_files(max(subscribers) + 1_024)
    mercato = str(Path(sys.executable).with_name("mercato"))
    command = [mercato, "serve", "--port", str(setup.port), "--workers", str(setup.workers)]
    # Every subscriber comes from 127.0.0.1: lift the per-address cap (100 by default).
    env = {**env, "MERCATO_STREAM_MAX_PER_CLIENT": str(max(subscribers) + 100)}
    if setup.relay_worker:
        env["MERCATO_RELAY_IN_PROCESS"] = "false"
    # One worker gets core 0 and the subscribers core 1; two workers need both cores.
    pin = pin and setup.workers == 1 and len(os.sched_getaffinity(0)) >= 2
    serving = launch_server(
        "stream-app", command, port=setup.port, env=env, cwd=cwd, log=log, cpus="0" if pin else None
    )
    servers.append(serving)
    parts = [serving]
    if setup.relay_worker:
        worker_log = log.with_suffix(".worker.log")
        parts.append(launch_worker([mercato, "worker"], env=env, cwd=cwd, log=worker_log))
        servers.append(parts[-1])
    server = AppCpu(parts)
    affinity = os.sched_getaffinity(0)
    try:
        wait_ready(serving)
        if pin:
            os.sched_setaffinity(0, {1})  # inherited by the subscriber processes
        ws_url = f"ws://127.0.0.1:{setup.port}/api/v1/stream"
        results = []
        for count in subscribers:
            pool = ClientPool(ws_url, count, setup.client_processes, batch=setup.batch)
            try:
                started = time.monotonic()
                pool.start()
                connect_s = time.monotonic() - started
                result = uvloop.run(measure(database_url, pool, count, rate, seconds, server))
            finally:
                pool.close()
            result.connect_s = connect_s
            results.append(result)
            say(
                f"  S1 {count:>5} subscribers: p50 {result.p50_ms:.1f} p99 {result.p99_ms:.1f} "
                f"max {result.max_ms:.1f} ms, {result.deliveries_per_s:,.0f} deliveries/s, "
                f"gaps {result.gaps} dup {result.duplicates} reorder {result.reorders} "
                f"missing {result.missing}, server CPU {result.server_cpu:.0%}, "
                f"client CPU {result.client_cpu:.0%}; CPU ms per 1,000 deliveries: server "
                f"{result.server_ms_per_1k:.1f}, client {result.client_ms_per_1k:.1f}"
            )
        relay_seconds, relay_rate = uvloop.run(relay_throughput(database_url))
        say(f"  relay: {RELAY_EVENTS:,} events in {relay_seconds:.2f} s = {relay_rate:,.0f}/s")
    finally:
        os.sched_setaffinity(0, affinity)
        for part in parts:
            with contextlib.suppress(ValueError):
                servers.remove(part)
            stop_server(part)
    pinning = (
        "app on core 0, subscribers and committer on core 1"
        if pin
        else "no pinning (app, subscribers and committer share both cores)"
    )
    return S1Run(results, relay_seconds, relay_rate, pinning, setup)


S1_HEADER = [
    "subscribers",
    "rate x seconds",
    "p50 / p99 / max ms",
    "p99 target (≤ 100 ms at 1,000)",
    "deliveries/s",
    "gaps / dup / reorder / missing",
    "closed early",
    "app CPU",
    "client CPU",
    "CPU ms / 1,000 deliveries: app, clients",
    "connect s",
]


def s1_rows(run: S1Run) -> list[list[str]]:
    rows = []
    for r in run.results:
        ok = r.p99_ms <= TARGET_P99_MS
        if r.subscribers >= TARGET_SUBSCRIBERS:
            over = "" if ok else f" (+{r.p99_ms - TARGET_P99_MS:,.0f} ms, x{r.p99_ms / 100:.1f})"
            target = ("pass" if ok else "**miss**") + over
        else:
            target = "≤ 100" if ok else f"> 100 ({r.p99_ms:,.0f})"
        rows.append(
            [
                f"{r.subscribers:,}",
                f"{r.rate:g}/s x {r.seconds:g} s ({r.committed:,})",
                f"{r.p50_ms:,.1f} / {r.p99_ms:,.1f} / {r.max_ms:,.1f}",
                target,
                f"{r.deliveries_per_s:,.0f} ({r.deliveries:,})",
                f"{r.gaps} / {r.duplicates} / {r.reorders} / {r.missing}"
                + ("" if r.clean else " **miss**"),
                str(r.closed_early),
                f"{r.server_cpu:.0%}",
                f"{r.client_cpu:.0%}",
                f"{r.server_ms_per_1k:.1f}, {r.client_ms_per_1k:.1f}",
                f"{r.connect_s:.1f}",
            ]
        )
    return rows


def s1_section(run: S1Run, table: Callable[[list[str], list[list[str]]], str]) -> list[str]:
    return [
        "## S1 stream latency (WebSocket)",
        "",
        table(S1_HEADER, s1_rows(run)),
        "",
        f"- **Relay alone**: {RELAY_EVENTS:,} events committed to the outbox in one "
        f"transaction, moved into the log in {run.relay_seconds:.2f} s = "
        f"**{run.relay_rate:,.0f} events/s** (relay_state.last_position polled every 10 ms; "
        "includes up to 0.2 s of the idle relay's back-off before it first looks).",
        f"- `bench/stream.py`: `mercato serve --workers {run.setup.workers}` (production, relay "
        f"in process) on port {run.setup.port}; {run.setup.describe()}. Subscribers are plain "
        "asyncio protocols over `websockets`' sans-I/O client (uvloop, no permessage-deflate), "
        "each subscribed to `products` live from now; events inserted "
        "into `events.outbox`, one per transaction, at a fixed rate from a separate asyncpg "
        "connection. Latency = receive time - the payload's `sent_at` (PostgreSQL "
        "clock_timestamp() at insert, same machine), HdrHistogram. Deliveries/s = event "
        "frames received by all subscribers ÷ (last receive - first insert). The checker "
        "wants positions +1 each from the first received and every committed event id.",
        f"- {run.pinning}; CPU columns are shares of one core over the send and drain window. "
        "*CPU ms per 1,000 deliveries* (app: every process of the server; clients: the "
        "subscriber processes and the committer) is the figure to compare across runs: other "
        "work on the machine moves latencies much more than it moves CPU per delivery. "
        "`MERCATO_STREAM_MAX_PER_CLIENT` is raised for the run: every subscriber is "
        "127.0.0.1. A client CPU near 100% means the subscribers themselves lag, which "
        "inflates the latencies.",
    ]
