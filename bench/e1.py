"""E1 import: a product feed end to end (`mercato import products`: parse → map → validate →
unify → load → events in the outbox) against the floor, a raw `COPY` of the same file into
an unlogged table shaped like `catalog.products` (its generated search column and indexes
included), in the same run, on the same server.

Each size gets a database of its own, migrated and empty. The feed is deterministic: half
the rows carry a GTIN-13, the others a brand + MPN, all a category path of two levels
(created by the import). Peak memory is the import process's maximum resident set
(`wait4`'s rusage), for 100k and 1M rows: flat means the same.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

HEADER = [
    "rows",
    "import rows/s",
    "COPY floor rows/s",
    "ratio",
    "logged COPY rows/s",
    "ratio to logged",
    "WAL B/row (import / logged COPY)",
    "import s",
    "peak RSS MiB",
    "created",
    "product events",
]
SIZES = (100_000, 1_000_000)
FEED_COLUMNS = (
    "sku",
    "name",
    "description",
    "brand",
    "gtin",
    "mpn",
    "price",
    "currency",
    "category",
    "inventory_count",
)
MAPPING = """
# E1: the feed's columns have the canonical names; categories are paths, created.
sku_prefix = "E1-"
[categories]
separator = " > "
unknown = "create"
"""
BRANDS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell")
DEPARTMENTS = ("Home", "Garden", "Kitchen", "Tools", "Toys", "Sports", "Office", "Audio")


@dataclass(frozen=True)
class E1Result:
    rows: int
    import_seconds: float
    copy_seconds: float
    peak_kib: int
    created: int
    events: int
    logged_copy_seconds: float
    import_wal: int
    logged_copy_wal: int

    @property
    def ratio(self) -> float:
        return self.copy_seconds / self.import_seconds


def _gtin13(number: int) -> str:
    body = f"{400_000_000_000 + number:012d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def write_feed(path: Path, rows: int) -> Path:
    if path.exists():
        return path
    with path.open("w") as out:
        out.write(",".join(FEED_COLUMNS) + "\n")
        for i in range(rows):
            brand = BRANDS[i % len(BRANDS)]
            barcode, mpn = (_gtin13(i), "") if i % 2 == 0 else ("", f"MPN-{i}")
            category = f"{DEPARTMENTS[i % 8]} > {DEPARTMENTS[(i // 8) % 8]} {i % 5}"
            out.write(
                f"{i},{brand} product {i} model {i % 997},"
                f"A {brand.lower()} product for everyday use; model {i % 997},"
                f"{brand},{barcode},{mpn},{(i % 50_000) / 100 + 1:.2f},EUR,"
                f"{category},{i % 100}\n"
            )
    return path


async def _copy_floor(url: str, feed: Path, *, logged: bool = False) -> tuple[float, int]:
    """Seconds to COPY the feed into a products-shaped table, and the WAL bytes written."""
    conn = await asyncpg.connect(url)
    try:
        persistence = "" if logged else "UNLOGGED"
        await conn.execute(
            "DROP TABLE IF EXISTS public.e1_floor; "
            f"CREATE {persistence} TABLE public.e1_floor (LIKE catalog.products INCLUDING ALL); "
            "ALTER TABLE public.e1_floor ADD COLUMN category text; CHECKPOINT"
        )
        wal_before = await conn.fetchval("SELECT pg_current_wal_lsn()")
        started = time.perf_counter()
        await conn.copy_to_table(
            "e1_floor",
            schema_name="public",
            source=feed,
            columns=list(FEED_COLUMNS),
            format="csv",
            header=True,
        )
        elapsed = time.perf_counter() - started
        wal = await conn.fetchval("SELECT pg_current_wal_lsn() - $1::pg_lsn", wal_before)
        await conn.execute("DROP TABLE public.e1_floor")
        return elapsed, int(wal)
    finally:
        await conn.close()


async def _recreate(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _wal_position(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        position: int = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        return int(position)
    finally:
        await conn.close()


async def _counts(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        products = await conn.fetchval("SELECT count(*) FROM catalog.products")
        events = await conn.fetchval(
            "SELECT count(*) FROM events.outbox WHERE type = 'product.created'"
        )
        return products, events
    finally:
        await conn.close()


def run_e1(
    *,
    admin_url: str,
    database_url: str,
    name: str,
    mercato: str,
    env: dict[str, str],
    results: Path,
    sizes: tuple[int, ...] = SIZES,
) -> list[E1Result]:
    mapping = results / "e1_mapping.toml"
    mapping.write_text(MAPPING)
    env = {**env, "DATABASE_URL": database_url, "MERCATO_RELAY_IN_PROCESS": "false"}
    runs = []
    for rows in sizes:
        feed = write_feed(results / f"e1_{rows}.csv", rows)
        asyncio.run(_recreate(admin_url, name))
        subprocess.run([mercato, "migrate"], env=env, check=True, capture_output=True)
        copy_seconds, _ = asyncio.run(_copy_floor(database_url, feed))
        logged_seconds, logged_wal = asyncio.run(_copy_floor(database_url, feed, logged=True))
        wal_before = asyncio.run(_wal_position(database_url))
        started = time.perf_counter()
        process = subprocess.Popen(
            [mercato, "import", "products", str(feed), "--source", "e1", "--mapping", str(mapping)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"the E1 import of {rows} rows failed ({process.returncode})")
        import_wal = asyncio.run(_wal_position(database_url)) - wal_before
        created, events = asyncio.run(_counts(database_url))
        run = E1Result(
            rows,
            elapsed,
            copy_seconds,
            usage.ru_maxrss,
            created,
            events,
            logged_seconds,
            import_wal,
            logged_wal,
        )
        print(
            f"  {rows:>9,} rows: import {rows / elapsed:,.0f} rows/s, "
            f"COPY {rows / copy_seconds:,.0f} rows/s (logged {rows / logged_seconds:,.0f}), "
            f"ratio {run.ratio:.2f}, WAL {import_wal / rows:,.0f} B/row, "
            f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB"
        )
        runs.append(run)
    return runs


def e1_rows(runs: list[E1Result]) -> list[list[str]]:
    return [
        [
            f"{r.rows:,}",
            f"{r.rows / r.import_seconds:,.0f}",
            f"{r.rows / r.copy_seconds:,.0f}",
            f"{r.ratio:.2f}",
            f"{r.rows / r.logged_copy_seconds:,.0f}",
            f"{r.logged_copy_seconds / r.import_seconds:.2f}",
            f"{r.import_wal / r.rows:,.0f} / {r.logged_copy_wal / r.rows:,.0f}",
            f"{r.import_seconds:.1f}",
            f"{r.peak_kib / 1024:.0f}",
            f"{r.created:,}",
            f"{r.events:,}",
        ]
        for r in runs
    ]


def e1_section(
    runs: list[E1Result], table: Callable[[list[str], list[list[str]]], Any]
) -> list[str]:
    ratios = ", ".join(f"{r.ratio:.2f} at {r.rows:,} rows" for r in runs)
    logged = ", ".join(f"{r.logged_copy_seconds / r.import_seconds:.2f}" for r in runs)
    peaks = " and ".join(f"{r.peak_kib / 1024:.0f} MiB" for r in runs)
    return [
        "## E1 import",
        "",
        table(HEADER, e1_rows(runs)),
        "",
        f"- **{ratios}** of the COPY floor (target >= 0.5); {logged} of a COPY into the same "
        f"table logged. Peak RSS of the import process: {peaks} (target: flat in the row "
        "count).",
        "- `bench/e1.py`: a CSV feed (half the rows with a GTIN-13, half with brand + MPN, "
        "two-level category paths created by the import) through `mercato import products` "
        "into an empty, migrated catalog: staging (COPY into an unlogged table), unification, "
        "batched load on two connections with one `product.created` event per product in the "
        "outbox. The floor: `COPY` of the same file into an unlogged table `LIKE "
        "catalog.products INCLUDING ALL` (its generated search column and indexes) on the "
        "same server in the same run; the logged COPY is the same into a logged table.",
    ]
