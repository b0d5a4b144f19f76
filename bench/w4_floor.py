"""The W4 floor: the app's order transaction as pgbench scripts, run straight in PostgreSQL.

One script per line count (1, 2, 3 products), picked with equal weight as the app's
generator picks its line count. Each script sends the statements `POST /api/v1/orders`
sends, in the same order and as the same number of round trips, with `-M prepared` (asyncpg
prepares and caches every statement too):

  (before BEGIN) the principal read authentication does for every signed-in request
  BEGIN
  pg_try_advisory_xact_lock on the idempotency key        core/idempotency.py replay
  SELECT the stored answer under (owner, key)             core/idempotency.py stored_answer
  one conditional UPDATE per product, ascending id        catalog/stock.py take
  INSERT the order and its lines (one statement)          orders/repository.py insert_order
  INSERT the inventory.changed and order.created events   events record_events (executemany)
  INSERT ... ON CONFLICT the stored answer                core/idempotency.py remember
  COMMIT

The statements are the app's text, except where pgbench has to get its values some other
way: product and customer ids come from two lookup tables by number (an index probe inside
the same statement), values the app computes in Python (the order's JSON, the line totals,
the fingerprint) are computed by PostgreSQL in the same statement that needs them, and
one multi-row INSERT stands for asyncpg's pipelined `executemany` (one round trip both).
The products are distinct, chosen uniformly among the same 1,000 as the app's, and locked
in ascending id order as the app locks them, so runs never deadlock.
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
IDEMPOTENCY_LOCK = (
    "SELECT pg_try_advisory_xact_lock(hashtextextended("
    "'orders.idempotency_keys|' || :owner || '|' || :key, 0));"
)
STORED_ANSWER = (
    "SELECT fingerprint, status_code, headers, body FROM orders.idempotency_keys\n"
    "  WHERE owner = :owner AND key = :key::text AND created_at > now() - '24 hours'::interval;"
)
RESERVE = (
    "UPDATE catalog.products SET inventory_count = inventory_count - 1,"
    " version = version + 1, updated_at = now()\n"
    "  WHERE id = {product} AND deleted_at IS NULL AND is_active AND inventory_count >= 1\n"
    "  RETURNING id, sku, name, price, currency, inventory_count, version, is_active,"
    " deleted_at \\gset p{i}_"
)
INVENTORY_EVENT = (
    "(gen_random_uuid(), 'inventory.changed', 1, 'inventory', :p{i}_id, :p{i}_version::int,"
    " '{{}}', jsonb_build_object('product_id', :p{i}_id::text, 'inventory_count',"
    " :p{i}_inventory_count::int, 'previous_count', :p{i}_inventory_count::int + 1,"
    " 'visible', true))"
)
LINE_JSON = (
    "jsonb_build_object('product_id', :p{i}_id::text, 'sku', :p{i}_sku::text, 'name',"
    " :p{i}_name::text, 'unit_price', :p{i}_price::text, 'quantity', 1, 'line_total',"
    " :p{i}_price::text)"
)
ORDER_COLUMNS = (
    "id, customer_id, status, currency, total, item_count, reservation_expires_at,"
    " cancel_reason, version, created_at, updated_at"
)
LINE_COLUMNS = "order_id, line_no, product_id, sku, name, unit_price, quantity, line_total"
ORDER = (
    "WITH placed AS (INSERT INTO orders.orders (id, customer_id, status, currency, total,"
    " item_count, reservation_expires_at, created_at, updated_at)\n"
    "  VALUES (gen_random_uuid(), :customer::uuid, 'pending_payment', :p1_currency::text,"
    " {total}, {n},\n"
    "          clock_timestamp() + '15 minutes'::interval, clock_timestamp(),"
    " clock_timestamp())\n"
    f"  RETURNING {ORDER_COLUMNS}),\n"
    f"lines AS (INSERT INTO orders.order_lines ({LINE_COLUMNS})\n"
    "  SELECT (SELECT id FROM placed), n, p, s, nm, u, q, t FROM unnest("
    "ARRAY[{numbers}]::smallint[], ARRAY[{ids}]::uuid[],\n"
    "    ARRAY[{skus}]::text[], ARRAY[{names}]::text[], ARRAY[{prices}]::numeric[],"
    " ARRAY[{quantities}]::int[], ARRAY[{prices}]::numeric[]) AS l(n, p, s, nm, u, q, t))\n"
    f"SELECT {ORDER_COLUMNS},\n"
    # The app builds this JSON in Python (service.order_json) for the event and the answer.
    "    jsonb_build_object('id', id, 'customer_id', customer_id, 'status', status,"
    " 'currency', currency, 'total', total::text, 'item_count', item_count,"
    " 'reservation_expires_at', reservation_expires_at, 'cancel_reason', cancel_reason,"
    " 'version', version, 'created_at', created_at, 'updated_at', updated_at,"
    " 'lines', jsonb_build_array({lines}))::text AS json\n"
    "  FROM placed \\gset o_"
)
ORDER_EVENT = "(gen_random_uuid(), 'order.created', 1, 'order', :o_id, 1, '{}', :o_json::jsonb)"
EVENTS = (
    "INSERT INTO events.outbox (event_id, type, schema_version, aggregate_type, aggregate_id,"
    " aggregate_version, trace_context, payload)\n  VALUES "
)
REMEMBER = (
    "INSERT INTO orders.idempotency_keys (owner, key, fingerprint, status_code, headers, body)\n"
    "  VALUES (:owner, :key, sha256(convert_to(:key::text, 'UTF8')), 201,\n"
    "          jsonb_build_object('cache-control', 'no-store', 'etag', '\"1\"', 'location',"
    " '/api/v1/orders/' || :o_id),\n"
    "          convert_to('{\"data\":' || :o_json::text || '}', 'UTF8'))\n"
    "  ON CONFLICT (owner, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
    " status_code = EXCLUDED.status_code, headers = EXCLUDED.headers,"
    " body = EXCLUDED.body, created_at = now();"
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

    return "\n".join(
        [
            f"-- W4 floor: an order of {n} product(s). Generated by bench/w4_floor.py.",
            *_choose(n, products),
            f"\\set u random(1, {customers})",
            "\\set key random(1, 9000000000000000000)",
            PRINCIPAL.format(customers=CUSTOMERS_TABLE),
            "BEGIN;",
            IDEMPOTENCY_LOCK,
            STORED_ANSWER,
            *(
                RESERVE.format(i=i, product=LOOKUP.format(table=PRODUCTS_TABLE, var=f"l{i}"))
                for i in each
            ),
            ORDER.format(
                total=" + ".join(f":p{i}_price::numeric" for i in each),
                n=n,
                lines=listed(LINE_JSON),
                numbers=", ".join(str(i) for i in each),
                ids=listed(":p{i}_id"),
                skus=listed(":p{i}_sku"),
                names=listed(":p{i}_name"),
                prices=listed(":p{i}_price"),
                quantities=", ".join("1" for _ in each),
            ),
            EVENTS
            + ",\n         ".join([*(INVENTORY_EVENT.format(i=i) for i in each), ORDER_EVENT])
            + ";",
            REMEMBER,
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
