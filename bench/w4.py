"""W4 place order: POST /api/v1/orders against the pgbench floor of the same transaction.

Setup: 1,000 live products get a stock no run can exhaust, 50 customers are created and
given access tokens (signed with the app's own key set, which lives in the database). The
app (1 worker, production settings) takes closed-loop orders from wrk: 1-3 random products
each, a fresh Idempotency-Key each. The floor is pgbench running the statements the app's
transaction runs (idempotency lock and lookup, one conditional decrement per line, the
inventory events, the order, its lines, the order event, the stored answer) with the same
concurrency. Afterwards the checker compares every product's stock with the quantities
ordered: any difference or negative count is an oversell.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import loadgen
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
W4 = Workload("W4", "place order", "w4_order.lua", "w4_data.txt", "", 0, False)
HEADER = ["run", "orders/s (median)", "p50 ms", "p95 ms", "p99 ms", "server µs/order", "errors"]

PGBENCH_SCRIPT = """
\\set n random(1, 3)
\\set a random(1, {products})
\\set b random(1, {products})
\\set c random(1, {products})
BEGIN;
SELECT pg_try_advisory_xact_lock(hashtextextended('bench|' || :client_id || '|' || random(), 0));
SELECT fingerprint FROM orders.idempotency_keys WHERE owner = 'bench' AND key = md5(random()::text);
UPDATE catalog.products SET inventory_count = inventory_count - 1, version = version + 1, updated_at = now()
  WHERE id = (SELECT id FROM bench_w4_products WHERE n = :a) AND deleted_at IS NULL AND is_active AND inventory_count >= 1
  RETURNING id, sku, name, price, currency, inventory_count, version, is_active, deleted_at;
\\if :n >= 2
UPDATE catalog.products SET inventory_count = inventory_count - 1, version = version + 1, updated_at = now()
  WHERE id = (SELECT id FROM bench_w4_products WHERE n = :b) AND deleted_at IS NULL AND is_active AND inventory_count >= 1
  RETURNING id, sku, name, price, currency, inventory_count, version, is_active, deleted_at;
\\endif
\\if :n >= 3
UPDATE catalog.products SET inventory_count = inventory_count - 1, version = version + 1, updated_at = now()
  WHERE id = (SELECT id FROM bench_w4_products WHERE n = :c) AND deleted_at IS NULL AND is_active AND inventory_count >= 1
  RETURNING id, sku, name, price, currency, inventory_count, version, is_active, deleted_at;
\\endif
INSERT INTO events.outbox (event_id, type, schema_version, aggregate_type, aggregate_id, aggregate_version, payload)
  SELECT gen_random_uuid(), 'inventory.changed', 1, 'inventory', gen_random_uuid()::text, 1,
         '{{"product_id": "x", "inventory_count": 1, "previous_count": 2, "visible": true}}'::jsonb
  FROM generate_series(1, :n);
INSERT INTO orders.orders (customer_id, status, currency, total, item_count, reservation_expires_at, created_at, updated_at)
  VALUES (gen_random_uuid(), 'pending_payment', 'USD', 42.00, :n, clock_timestamp() + interval '15 minutes', clock_timestamp(), clock_timestamp())
  RETURNING quote_literal(id) AS id \\gset
INSERT INTO orders.order_lines (order_id, line_no, product_id, sku, name, unit_price, quantity, line_total)
  SELECT (:id)::uuid, g, gen_random_uuid(), 'SKU', 'Product', 14.00, 1, 14.00 FROM generate_series(1, :n) AS g;
INSERT INTO events.outbox (event_id, type, schema_version, aggregate_type, aggregate_id, aggregate_version, payload)
  VALUES (gen_random_uuid(), 'order.created', 1, 'order', :id, 1, '{{"id": "x", "lines": []}}'::jsonb);
INSERT INTO orders.idempotency_keys (owner, key, fingerprint, status_code, headers, body)
  VALUES ('bench', gen_random_uuid()::text, '\\x00', 201, '{{}}'::jsonb, '\\x00');
END;
"""


@dataclass
class W4Run:
    app: list[loadgen.WrkResult] = field(default_factory=list)
    floor_tps: list[float] = field(default_factory=list)
    oversold: int = -1
    ordered: int = 0


async def _prepare(url: str, env: dict[str, str], results: Path) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        ids = [
            str(row["id"])
            for row in await conn.fetch(
                "SELECT id FROM catalog.products WHERE deleted_at IS NULL AND is_active"
                " ORDER BY id LIMIT $1",
                PRODUCTS,
            )
        ]
        await conn.execute(
            "UPDATE catalog.products SET inventory_count = $2 WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
            STOCK,
        )
        await conn.execute("DROP TABLE IF EXISTS bench_w4_products")
        await conn.execute(
            "CREATE TABLE bench_w4_products AS SELECT row_number() OVER (ORDER BY id) AS n, id"
            " FROM catalog.products WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
        )
        await conn.execute("CREATE UNIQUE INDEX ON bench_w4_products (n)")
    finally:
        await conn.close()
    tokens = await _customers(url, env, results)
    (results / W4.app_data).write_text(
        "\n".join([*(f"T {t}" for t in tokens), *(f"P {i}" for i in ids)]) + "\n"
    )
    (results / "w4_pgbench.sql").write_text(PGBENCH_SCRIPT.format(products=len(ids)))
    return ids


async def _customers(url: str, env: dict[str, str], results: Path) -> list[str]:
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
        tokens = []
        async with db.transaction() as conn:
            await ensure_signing_key(conn, runtime.ring)
            for n in range(CUSTOMERS):
                user_id = uuid.uuid4()
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
        for row_id in await db.reader.fetch(
            "SELECT id FROM identity.users WHERE password_hash = 'x' ORDER BY created_at DESC"
            " LIMIT $1",
            CUSTOMERS,
        ):
            tokens.append((await runtime.tokens.issue(row_id["id"], session_version=1)).token)
        return tokens
    finally:
        await db.close()


ORDERED = (
    "SELECT p.id, p.inventory_count,"
    " coalesce((SELECT sum(l.quantity) FROM orders.order_lines l"
    "   WHERE l.product_id = p.id), 0) AS ordered"
    " FROM catalog.products p WHERE p.id = ANY($1::uuid[])"
)


async def _ordered_units(url: str, ids: list[str]) -> dict[str, tuple[int, int]]:
    """Per product: (stock, units on every order line so far)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(ORDERED, [uuid.UUID(i) for i in ids])
    finally:
        await conn.close()
    return {str(r["id"]): (r["inventory_count"], r["ordered"]) for r in rows}


def _oversold(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> tuple[int, int]:
    """(products whose stock fell by other than the units ordered, units ordered)."""
    oversold, ordered = 0, 0
    for product, (stock, units) in after.items():
        taken, newly_ordered = before[product][0] - stock, units - before[product][1]
        ordered += newly_ordered
        if stock < 0 or taken != newly_ordered:
            oversold += 1
    return oversold, ordered


def _pgbench(url: str, script: Path, seconds: float, cpus: str | None) -> float:
    command = [
        "pgbench",
        "-n",
        "-c",
        str(loadgen.CONNECTIONS),
        "-j",
        "2",
        "-T",
        str(round(seconds)),
    ]
    command = loadgen._pin([*command, "-f", str(script), url], cpus)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    match = re.search(r"tps = ([0-9.]+)", done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed: {done.stdout}\n{done.stderr}")
    return float(match.group(1))


def run_w4(
    *,
    app: Server,
    url: str,
    env: dict[str, str],
    results: Path,
    wrk: Callable[[Server, Workload, float], loadgen.WrkResult],
    seconds: float,
    repeats: int,
    cpus: str | None,
) -> W4Run:
    ids = asyncio.run(_prepare(url, env, results))
    before = asyncio.run(_ordered_units(url, ids))
    run = W4Run()
    wrk(app, W4, 1.0)  # warm-up
    for _ in range(repeats):
        result = wrk(app, W4, seconds)
        run.app.append(result)
        print(
            f"  W4   app       {result.rps:9,.0f} orders/s  p95 {result.p95_ms:7.1f} ms  "
            f"server {result.server_us_per_request:6,.0f} µs/order  errors {result.errors}"
        )
    # Checked before pgbench runs: its statements take stock without real order lines.
    run.oversold, run.ordered = _oversold(before, asyncio.run(_ordered_units(url, ids)))
    for _ in range(repeats):
        tps = _pgbench(url, results / "w4_pgbench.sql", seconds, cpus)
        run.floor_tps.append(tps)
        print(f"  W4   pgbench   {tps:9,.0f} tps (the floor)")
    return run


def w4_rows(run: W4Run) -> list[list[str]]:
    def median(values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    app = run.app
    return [
        [
            "app (1 worker)",
            f"{median([r.rps for r in app]):,.0f}",
            f"{median([r.p50_ms for r in app]):.1f}",
            f"{median([r.p95_ms for r in app]):.1f}",
            f"{median([r.p99_ms for r in app]):.1f}",
            f"{median([r.server_us_per_request for r in app]):,.0f}",
            str(sum(r.errors for r in app)),
        ],
        ["pgbench floor", f"{median(run.floor_tps):,.0f}", "", "", "", "", ""],
    ]


def w4_section(run: W4Run, table: Callable[[list[str], list[list[str]]], Any]) -> list[str]:
    app = statistics.median(r.rps for r in run.app) if run.app else 0.0
    floor = statistics.median(run.floor_tps) if run.floor_tps else 0.0
    p95 = statistics.median(r.p95_ms for r in run.app) if run.app else 0.0
    return [
        "## W4 place order",
        "",
        table(HEADER, w4_rows(run)),
        "",
        f"- **{app / floor if floor else 0:.2f} x the pgbench floor** (target >= 0.5); "
        f"**p95 {p95:.1f} ms** (target <= 50 ms) with 64 connections, closed loop; "
        f"**oversell: {run.oversold}** products whose stock differs from the units ordered "
        f"({run.ordered:,} units ordered in all).",
        "- `bench/w4.py`: 1,000 products with stock no run exhausts, 50 customers with access "
        "tokens; `bench/wrk/w4_order.lua` posts 1-3 random products with a fresh "
        "Idempotency-Key; the floor runs the same statements from `results/w4_pgbench.sql` "
        "(pgbench -c 64 -j 2).",
    ]
