"""The W4 floor: the app's order transaction as pgbench scripts, run straight in PostgreSQL.

One script per line count (1, 2, 3 products), picked with equal weight as the app's
generator picks its line count. Each script sends the statements `POST /api/v1/orders`
sends, in the same order and as the same number of round trips, with `-M prepared` (asyncpg
prepares and caches every statement too):

  (before BEGIN) the principal read authentication does for every signed-in request
  BEGIN
  take the idempotency key and read its stored answer     core/idempotency.py replay
  lock the products in id order and take their stock      catalog/stock.py TAKE
  the order, its lines, its events and the stored answer  core/database.py WriteBatch
    (one statement of four data-modifying WITH members)   (orders, events, idempotency)
  COMMIT

The statements are the app's text, except where pgbench has to get its values some other
way: product and customer ids come from two lookup tables by number (an index probe inside
the same statement), the stock statement's rows are folded into one (pgbench's `gset`
takes one row), and values the app computes in Python (the order's id, time and JSON, the
line totals, the fingerprint) are computed by PostgreSQL in the statement that needs them.
The products are distinct, chosen uniformly among the same 1,000 as the app's, and the
stock statement locks them in ascending id order as the app's does, so runs never deadlock.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from servers import postgres_cpu_by_pid, postgres_cpu_delta

PRODUCTS_TABLE = "bench_w4_products"  # (n, id), n ascending with id
CUSTOMERS_TABLE = "bench_w4_customers"  # (n, id)
# 64 clients did worse than 16 in every trial (356-680 tps against 570-1,040), and with
# max_connections = 100 shared with other work they do not always get connections.
CLIENTS = (8, 16, 32)
LOOKUP = "(SELECT id FROM {table} WHERE n = :{var})"

PRINCIPAL = (
    # identity/repository.py principal_row, joined to the customer lookup for the owner.
    "SELECT c.id AS customer, 'user:' || c.id AS owner, u.session_version,\n"
    "  ARRAY(SELECT role FROM identity.user_roles ur WHERE ur.user_id = u.id) AS roles,\n"
    "  ARRAY(SELECT DISTINCT unnest(r.permissions) FROM identity.user_roles ur\n"
    "        JOIN identity.roles r ON r.name = ur.role WHERE ur.user_id = u.id) AS permissions\n"
    "  FROM {customers} c JOIN identity.users u ON u.id = c.id\n"
    "  WHERE c.n = :u AND u.deleted_at IS NULL \\gset"
)
REPLAY = (
    "SELECT pg_try_advisory_xact_lock(hashtextextended("
    "'orders.idempotency_keys|' || :owner || '|' || :key, 0)) AS locked,\n"
    "  s.fingerprint, s.status_code, s.headers, s.body FROM (SELECT) AS one\n"
    "  LEFT JOIN orders.idempotency_keys AS s ON s.owner = :owner AND s.key = :key::text\n"
    "  AND s.created_at > now() - '24 hours'::interval;"
)
TAKE = (
    "WITH locked AS MATERIALIZED (SELECT p.id, w.quantity FROM catalog.products AS p\n"
    "  JOIN unnest(ARRAY[{ids}]::uuid[], ARRAY[{quantities}]::int[]) AS w(id, quantity)"
    " ON w.id = p.id\n"
    "  WHERE p.deleted_at IS NULL AND p.is_active ORDER BY p.id FOR UPDATE OF p),\n"
    "taken AS (UPDATE catalog.products AS p SET inventory_count = p.inventory_count"
    " - l.quantity,\n"
    "  version = p.version + 1, updated_at = now() FROM locked AS l\n"
    "  WHERE p.id = l.id AND p.deleted_at IS NULL AND p.is_active"
    " AND p.inventory_count >= l.quantity\n"
    "  RETURNING p.id, p.sku, p.name, p.price, p.currency, p.inventory_count, p.version,"
    " p.is_active, p.deleted_at)\n"
    "SELECT {columns} FROM taken \\gset"
)
TAKEN_COLUMNS = ("id", "sku", "name", "price", "currency", "inventory_count", "version")
INVENTORY_EVENT = (
    "(gen_random_uuid(), 'inventory.changed', 1, 'inventory', :p{i}_id, :p{i}_version::int,"
    " '{{}}'::jsonb, jsonb_build_object('product_id', :p{i}_id::text, 'inventory_count',"
    " :p{i}_inventory_count::int, 'previous_count', :p{i}_inventory_count::int + 1,"
    " 'visible', true))"
)
LINE_JSON = (
    "jsonb_build_object('product_id', :p{i}_id::text, 'sku', :p{i}_sku::text, 'name',"
    " :p{i}_name::text, 'unit_price', :p{i}_price::text, 'quantity', 1, 'line_total',"
    " :p{i}_price::text)"
)
LINE_COLUMNS = "order_id, line_no, product_id, sku, name, unit_price, quantity, line_total"
WRITES = (
    # The app's values from Python: the order's id and time, its JSON (service.order_json).
    "WITH o AS (SELECT gen_random_uuid() AS id, clock_timestamp() AS at),\n"
    "doc AS (SELECT o.id, jsonb_build_object('id', o.id, 'customer_id', :customer::uuid,"
    " 'status', 'pending_payment', 'currency', :p1_currency::text, 'total', ({total})::text,"
    " 'item_count', {n}, 'reservation_expires_at', o.at + '15 minutes'::interval,"
    " 'cancel_reason', null, 'version', 1, 'created_at', o.at, 'updated_at', o.at,"
    " 'lines', jsonb_build_array({lines}))::text AS json FROM o),\n"
    "w0 AS (INSERT INTO orders.orders (id, customer_id, status, currency, total, item_count,"
    " reservation_expires_at, version, created_at, updated_at)\n"
    "  SELECT o.id, :customer::uuid, 'pending_payment', :p1_currency::text, {total}, {n},"
    " o.at + '15 minutes'::interval, 1, o.at, o.at FROM o RETURNING 1),\n"
    f"w1 AS (INSERT INTO orders.order_lines ({LINE_COLUMNS})\n"
    "  SELECT (SELECT id FROM o), n, p, s, nm, u, q, t FROM unnest("
    "ARRAY[{numbers}]::smallint[], ARRAY[{ids}]::uuid[],\n"
    "    ARRAY[{skus}]::text[], ARRAY[{names}]::text[], ARRAY[{prices}]::numeric[],"
    " ARRAY[{quantities}]::int[], ARRAY[{prices}]::numeric[]) AS l(n, p, s, nm, u, q, t)"
    " RETURNING 1),\n"
    "w2 AS (INSERT INTO events.outbox (event_id, type, schema_version, aggregate_type,"
    " aggregate_id, aggregate_version, trace_context, payload)\n"
    "  VALUES {events} RETURNING 1),\n"
    "w3 AS (INSERT INTO orders.idempotency_keys (owner, key, fingerprint, status_code,"
    " headers, body)\n"
    "  SELECT :owner, :key, sha256(convert_to(:key::text, 'UTF8')), 201,\n"
    "    jsonb_build_object('cache-control', 'no-store', 'etag', '\"1\"', 'location',"
    " '/api/v1/orders/' || doc.id), convert_to('{{\"data\":' || doc.json || '}}', 'UTF8')"
    " FROM doc\n"
    "  ON CONFLICT (owner, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
    " status_code = EXCLUDED.status_code, headers = EXCLUDED.headers,"
    " body = EXCLUDED.body, created_at = now()\n"
    "  WHERE orders.idempotency_keys.created_at <= now() - '24 hours'::interval RETURNING 1)\n"
    "SELECT (SELECT count(*) FROM w0), (SELECT count(*) FROM w1), (SELECT count(*) FROM w2),"
    " (SELECT count(*) FROM w3);"
)
ORDER_EVENT = (
    "((SELECT gen_random_uuid()), 'order.created', 1, 'order', (SELECT id::text FROM doc), 1,"
    " '{{}}'::jsonb, (SELECT json::jsonb FROM doc))"
)


def _choose(n: int, products: int) -> list[str]:
    """pgbench meta-commands that draw `n` distinct product numbers uniformly and name them
    l1 < l2 < ... (the lookup table numbers products in id order: the app's lock order)."""
    lines = [f"\\set a random(1, {products})"]
    if n == 1:
        return [*lines, "\\set l1 :a"]
    # Draw from the range less the numbers already drawn, then step over them.
    lines += [
        f"\\set b random(1, {products - 1})",
        "\\set b case when :b >= :a then :b + 1 else :b end",
        "\\set lo least(:a, :b)",
        "\\set hi greatest(:a, :b)",
    ]
    if n == 2:
        return [*lines, "\\set l1 :lo", "\\set l2 :hi"]
    return [
        *lines,
        f"\\set c random(1, {products - 2})",
        "\\set c case when :c >= :lo then :c + 1 else :c end",
        "\\set c case when :c >= :hi then :c + 1 else :c end",
        "\\set l1 least(:lo, :c)",
        "\\set l3 greatest(:hi, :c)",
        "\\set l2 :lo + :hi + :c - :l1 - :l3",
    ]


def script(n: int, *, products: int, customers: int) -> str:
    """The transaction of an order of `n` products (quantity 1 each, as the generator sends)."""
    each = range(1, n + 1)

    def listed(template: str) -> str:
        return ", ".join(template.format(i=i) for i in each)

    ids = listed(":p{i}_id::uuid")
    quantities = ", ".join("1" for _ in each)
    columns = ",\n  ".join(
        f"(array_agg({column} ORDER BY id))[{i}] AS p{i}_{column}"
        for i in each
        for column in TAKEN_COLUMNS
    )
    return "\n".join(
        [
            f"-- W4 floor: an order of {n} product(s). Generated by bench/w4_floor.py.",
            *_choose(n, products),
            f"\\set u random(1, {customers})",
            "\\set key random(1, 9000000000000000000)",
            PRINCIPAL.format(customers=CUSTOMERS_TABLE),
            "BEGIN;",
            REPLAY,
            TAKE.format(
                ids=listed(LOOKUP.format(table=PRODUCTS_TABLE, var="l{i}")),
                quantities=quantities,
                columns=columns,
            ),
            WRITES.format(
                total=" + ".join(f":p{i}_price::numeric" for i in each),
                n=n,
                lines=listed(LINE_JSON),
                numbers=", ".join(str(i) for i in each),
                ids=ids,
                skus=listed(":p{i}_sku"),
                names=listed(":p{i}_name"),
                prices=listed(":p{i}_price"),
                quantities=quantities,
                events=",\n    ".join(
                    [*(INVENTORY_EVENT.format(i=i) for i in each), ORDER_EVENT.format()]
                ),
            ),
            "COMMIT;",
            "",
        ]
    )


def write_scripts(results: Path, *, products: int, customers: int) -> None:
    for n, path in enumerate(scripts(results), start=1):
        path.write_text(script(n, products=products, customers=customers))


@dataclass(frozen=True)
class FloorRun:
    clients: int
    tps: float
    latency_ms: float
    failed: int
    transactions: int = 0
    db_cpu_s: float = 0.0

    @property
    def db_us_per_transaction(self) -> float:
        return 1e6 * self.db_cpu_s / max(self.transactions, 1)


def run_pgbench(
    url: str, scripts: list[Path], *, clients: int, seconds: float, cpus: str | None
) -> FloorRun:
    command = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2))]
    command += ["-T", str(max(1, round(seconds)))]
    for path in scripts:
        command += ["-f", f"{path}@1"]
    command.append(url)
    if cpus:
        command = ["taskset", "-c", cpus, *command]
    db_before = postgres_cpu_by_pid()
    db_seen = dict(db_before)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as run:
        # pgbench's backends exit with it: their CPU is read while they live (every 0.2 s;
        # the last fraction of a second of each is missed, ~2-4% of a 5-10 s run).
        while run.poll() is None:
            db_seen.update(postgres_cpu_by_pid())
            time.sleep(0.2)
        stdout, stderr = run.communicate(timeout=seconds + 60)
    db_cpu = postgres_cpu_delta(db_before, db_seen)
    done = subprocess.CompletedProcess(command, run.returncode, stdout, stderr)
    transactions = re.search(r"number of transactions actually processed: (\d+)", done.stdout)
    tps = re.search(r"tps = ([0-9.]+)", done.stdout)
    latency = re.search(r"latency average = ([0-9.]+) ms", done.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    if done.returncode != 0 or tps is None:
        raise RuntimeError(f"pgbench failed: {done.stdout}\n{done.stderr}")
    return FloorRun(
        clients=clients,
        tps=float(tps.group(1)),
        latency_ms=float(latency.group(1)) if latency else 0.0,
        failed=int(failed.group(1)) if failed else 0,
        transactions=int(transactions.group(1)) if transactions else 0,
        db_cpu_s=db_cpu,
    )


def scripts(results: Path) -> list[Path]:
    return [results / f"w4_pgbench_{n}.sql" for n in (1, 2, 3)]
