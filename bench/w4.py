"""W4 place order: POST /api/v1/orders against the pgbench floor of the same transaction.

Setup: 1,000 live products get a stock no run can exhaust, 50 customers are created and
given access tokens (signed with the app's own key set, which lives in the database). The
app (1 worker, production settings) takes orders of 1-3 random products, each with a fresh
Idempotency-Key: first closed-loop from wrk (64 connections) for its peak, then open-loop
(bench/openloop.py) at 70% of that peak for its latency, measured from each request's
intended send time, once per wrk repeat (the run with the median p95 is reported). Around each app phase, the checker compares every product's stock
with the quantities ordered: any difference or negative count is an oversell. The floor
is the same transaction as pgbench scripts (bench/w4_floor.py) at several client counts,
the best of which is the floor, as the reference figures of BENCHMARKS.md are; each wrk
repeat is followed by a floor repeat.
"""

from __future__ import annotations

import asyncio
import statistics
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import loadgen
import report
import w4_floor
from report import Workload
from servers import Server

from mercato.core.config import Settings
from mercato.core.database import Database
from mercato.core.mail import FileMailer
from mercato.core.ratelimit import FailureThrottle, RateLimiter
from mercato.identity import IdentityRuntime
from mercato.identity.tokens import ensure_signing_key

PRODUCTS = 1_000
CUSTOMERS = 50
STOCK = 100_000_000
OPEN_LOOP_SHARE = 0.7
W4 = Workload("W4", "place order", "w4_order.lua", "w4_data.txt", "", 50, True)
HEADER = ["run", "orders/s", "p50 ms", "p95 ms", "p99 ms", "server µs/order", "db µs/order"]
HEADER += ["errors"]
# Tables the runs write to: vacuumed before each phase, so neither starts on the other's
# dead rows.
WRITTEN = (
    "catalog.products",
    "orders.orders",
    "orders.order_lines",
    "orders.idempotency_keys",
    "events.outbox",
)


@dataclass
class W4Run:
    app: list[loadgen.WrkResult] = field(default_factory=list)
    open_loop: loadgen.OpenLoopResult | None = None  # the median of `open_loops` by p95
    open_loops: list[loadgen.OpenLoopResult] = field(default_factory=list)
    floor: list[w4_floor.FloorRun] = field(default_factory=list)
    oversold: int = -1
    ordered: int = 0
    load_before: str = ""

    def peak(self) -> float:
        return statistics.median(r.rps for r in self.app) if self.app else 0.0

    def floor_by_clients(self) -> dict[int, float]:
        """Median tps for each client count."""
        counts = sorted({run.clients for run in self.floor})
        return {
            c: statistics.median(run.tps for run in self.floor if run.clients == c) for c in counts
        }

    def paired_ratios(self) -> list[float]:
        """Each wrk repeat against the best floor of the repeat that followed it."""
        per_repeat = len(w4_floor.CLIENTS)
        ratios = []
        for i, app in enumerate(self.app):
            floors = self.floor[i * per_repeat : (i + 1) * per_repeat]
            if floors:
                ratios.append(app.rps / max(run.tps for run in floors))
        return ratios

    def best_floor(self) -> tuple[int, float]:
        by_clients = self.floor_by_clients()
        if not by_clients:
            return 0, 0.0
        clients = max(by_clients, key=lambda c: by_clients[c])
        return clients, by_clients[clients]


async def _prepare(url: str, env: dict[str, str], results: Path) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        ids = [
            row["id"]
            for row in await conn.fetch(
                "SELECT id FROM catalog.products WHERE deleted_at IS NULL AND is_active"
                " ORDER BY id LIMIT $1",
                PRODUCTS,
            )
        ]
        await conn.execute(
            "UPDATE catalog.products SET inventory_count = $2 WHERE id = ANY($1::uuid[])",
            ids,
            STOCK,
        )
        await _settle_pending(conn)
        await _forget_earlier_runs(conn)
        # Numbered in id order: the floor's scripts lock products by ascending number.
        await _lookup_table(conn, w4_floor.PRODUCTS_TABLE, ids)
    finally:
        await conn.close()
    customers, tokens = await _customers(url, env, results)
    conn = await asyncpg.connect(url)
    try:
        await _lookup_table(conn, w4_floor.CUSTOMERS_TABLE, customers)
    finally:
        await conn.close()
    (results / W4.app_data).write_text(
        "\n".join([*(f"T {t}" for t in tokens), *(f"P {i}" for i in ids)]) + "\n"
    )
    w4_floor.write_scripts(results, products=len(ids), customers=len(customers))
    return [str(i) for i in ids]


async def _lookup_table(conn: asyncpg.Connection, table: str, ids: list[uuid.UUID]) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {table}")
    await conn.execute(
        f"CREATE TABLE {table} AS SELECT row_number() OVER (ORDER BY id) AS n, id"
        " FROM unnest($1::uuid[]) AS t(id)",
        ids,
    )
    await conn.execute(f"CREATE UNIQUE INDEX ON {table} (n)")
    await conn.execute(f"ANALYZE {table}")


async def _settle_pending(conn: asyncpg.Connection) -> None:
    """Close earlier runs' orders without touching stock: left pending, the app's expiry job
    would give their stock back during a later run, and the checker would see an oversell."""
    await conn.execute(
        "UPDATE orders.orders SET status = 'cancelled', cancel_reason = 'bench',"
        " reservation_expires_at = NULL WHERE status = 'pending_payment' AND customer_id IN"
        " (SELECT id FROM identity.users WHERE password_hash = 'x')"
    )


async def _forget_earlier_runs(conn: asyncpg.Connection) -> None:
    """Every run starts from the same, empty order history. Run after run (a few hundred
    thousand orders each) the tables the transaction writes, above all the idempotency keys
    (random keys, about 1 KB of stored answer each), outgrew PostgreSQL's buffers, and every
    figure, app and floor alike, drifted down by a fifth within an hour of repeats."""
    await conn.execute(
        "TRUNCATE orders.order_lines, orders.stock_reservations, orders.orders,"
        " orders.idempotency_keys, events.outbox, events.event_log"
    )  # the log's positions live on in the relay's state: new events continue them


async def _vacuum(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"VACUUM (ANALYZE) {', '.join(WRITTEN)}")
    finally:
        await conn.close()


async def _customers(
    url: str, env: dict[str, str], results: Path
) -> tuple[list[uuid.UUID], list[str]]:
    """New customers: (their ids, an access token each)."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="production",
        database_url=url,
        secret_key=env["MERCATO_SECRET_KEY"],
        data_keys=env["MERCATO_DATA_KEYS"],
        blind_index_key=env["MERCATO_BLIND_INDEX_KEY"],
        payment_webhook_secret=env["MERCATO_PAYMENT_WEBHOOK_SECRET"],
        payment_api_key=env["MERCATO_PAYMENT_API_KEY"],
    )
    db = await Database.connect(url, min_size=1, max_size=2)
    try:
        runtime = IdentityRuntime(
            settings,
            db,
            mailer=FileMailer(results / "mail"),
            throttle=FailureThrottle(RateLimiter.create(None)),
        )
        created: list[uuid.UUID] = []
        tokens = []
        async with db.transaction() as conn:
            await ensure_signing_key(conn, runtime.ring)
            for n in range(CUSTOMERS):
                user_id = uuid.uuid4()
                created.append(user_id)
                email = f"w4-{user_id.hex[:12]}-{n}@bench.example"
                await conn.execute(
                    "INSERT INTO identity.users (id, email_index, email, first_name, last_name,"
                    " data_key_version, password_hash) VALUES ($1, $2, $3, $3, $3, 1, 'x')",
                    user_id,
                    runtime.blind_index.email(email),
                    runtime.ring.seal(email, context=b"bench"),
                )
                await conn.execute(
                    "INSERT INTO identity.user_roles (user_id, role) VALUES ($1, 'customer')",
                    user_id,
                )
        for user_id in created:
            tokens.append((await runtime.tokens.issue(user_id, session_version=1)).token)
        return created, tokens
    finally:
        await db.close()


ORDERED = (
    "SELECT p.id, p.inventory_count, coalesce(o.units, 0) AS ordered"
    " FROM catalog.products p LEFT JOIN (SELECT product_id, sum(quantity) AS units"
    "   FROM orders.order_lines WHERE product_id = ANY($1::uuid[]) GROUP BY product_id) o"
    "   ON o.product_id = p.id"
    " WHERE p.id = ANY($1::uuid[])"
)


async def _ordered_units(url: str, ids: list[str]) -> dict[str, tuple[int, int]]:
    """Per product: (stock, units on every order line so far)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(ORDERED, [uuid.UUID(i) for i in ids])
    finally:
        await conn.close()
    return {str(r["id"]): (r["inventory_count"], r["ordered"]) for r in rows}


class OversellCheck:
    """Around each app phase: every product's stock must fall by exactly the units its new
    order lines hold, and never below zero. (The floor's phases in between are left out.)"""

    def __init__(self, url: str, ids: list[str]) -> None:
        self.url = url
        self.ids = ids
        self.oversold: set[str] = set()
        self.ordered = 0
        self._before: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> None:
        self._before = asyncio.run(_ordered_units(self.url, self.ids))

    def __exit__(self, *exc: object) -> None:
        after = asyncio.run(_ordered_units(self.url, self.ids))
        for product, (stock, units) in after.items():
            taken = self._before[product][0] - stock
            newly_ordered = units - self._before[product][1]
            self.ordered += newly_ordered
            if stock < 0 or taken != newly_ordered:
                self.oversold.add(product)


def run_w4(
    *,
    app: Server,
    url: str,
    env: dict[str, str],
    results: Path,
    wrk: Callable[[Server, Workload, float], loadgen.WrkResult],
    seconds: float,
    repeats: int,
    open_loop_seconds: float,
    cpus: str | None,
) -> W4Run:
    """App and floor alternate, repeat by repeat, so that both see the same machine: it is
    shared, and its load drifts from minute to minute."""
    run = W4Run(load_before=report.load_average())
    ids = asyncio.run(_prepare(url, env, results))
    check = OversellCheck(url, ids)
    wrk(app, W4, 1.0)  # warm-up
    for _ in range(repeats):
        asyncio.run(_vacuum(url))
        with check:
            result = wrk(app, W4, seconds)
        run.app.append(result)
        print(
            f"  W4   app       {result.rps:9,.0f} orders/s  p95 {result.p95_ms:7.1f} ms  "
            f"server {result.server_us_per_request:6,.0f} µs/order  "
            f"db {result.db_us_per_request:6,.0f} µs/order  errors {result.errors}"
        )
        for clients in w4_floor.CLIENTS:
            floor = w4_floor.run_pgbench(
                url, w4_floor.scripts(results), clients=clients, seconds=seconds, cpus=cpus
            )
            run.floor.append(floor)
            print(
                f"  W4   pgbench   {floor.tps:9,.0f} tps with {clients:2} clients  latency "
                f"{floor.latency_ms:5.1f} ms  db {floor.db_us_per_transaction:6,.0f} µs/txn  "
                f"failed {floor.failed}"
            )
    rate = OPEN_LOOP_SHARE * run.peak()
    # As many open-loop runs as wrk repeats: on a shared machine one short run's p95 moved
    # between 12 and 120 ms with the same code; the median run is the figure reported.
    for _ in range(repeats):
        asyncio.run(_vacuum(url))
        with check:
            latency = loadgen.run_open_loop(
                app,
                results / W4.app_data,
                rate=rate,
                seconds=open_loop_seconds,
                cpus=cpus,
                orders=True,
            )
        run.open_loops.append(latency)
        print(
            f"  W4   app       open loop at {rate:,.0f} orders/s: p50 {latency.p50_ms:.1f} "
            f"p95 {latency.p95_ms:.1f} p99 {latency.p99_ms:.1f} ms, {latency.failed} failed"
        )
    ranked = sorted(run.open_loops, key=lambda r: r.p95_ms)
    run.open_loop = ranked[(len(ranked) - 1) // 2]
    run.oversold, run.ordered = len(check.oversold), check.ordered
    asyncio.run(_settle_pending_at(url))
    return run


async def _settle_pending_at(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await _settle_pending(conn)
    finally:
        await conn.close()
