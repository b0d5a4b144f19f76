"""The benchmark database and the data files the load generators draw from.

Also the two checks that keep the reference honest: it runs the app's exact SQL, and it
returns the same rows for the same requests.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import subprocess
import sys
import time
import urllib.parse
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import reference_server as ref

from mercato.catalog import repository
from mercato.catalog.demo_data import vocabulary
from mercato.catalog.rules import ProductFilters, ProductSort

PAGE = 50
PAGE_SIZE = 20
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "")


def database_urls(base: str | None) -> tuple[str, str, str]:
    """(admin URL, benchmark database URL, database name); only a local server is allowed."""
    url = base or "postgresql://postgres@127.0.0.1:5432/mercato_bench"
    parts = urllib.parse.urlsplit(url)
    if (parts.hostname or "") not in LOCAL_HOSTS:
        raise SystemExit(f"refusing a non-local database host: {parts.hostname}")
    name = parts.path.lstrip("/") or "mercato_bench"
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    return admin, urllib.parse.urlunsplit(parts._replace(path="/" + name)), name


async def _ensure_database(admin_url: str, name: str) -> bool:
    conn = await asyncpg.connect(admin_url)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await conn.close()


def prepare_database(
    admin_url: str, url: str, name: str, *, products: int, categories: int, seed: bool
) -> None:
    if asyncio.run(_ensure_database(admin_url, name)):
        print(f"created database {name}")
    env = {**os.environ, "DATABASE_URL": url}
    mercato = str(Path(sys.executable).with_name("mercato"))
    subprocess.run([mercato, "migrate"], env=env, check=True)
    if seed:
        command = [mercato, "seed", "--products", str(products), "--categories", str(categories)]
        subprocess.run(command, env=env, check=True)


async def _export(url: str, results: Path) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        products = await conn.fetch(
            "SELECT id FROM catalog.products WHERE deleted_at IS NULL AND is_active ORDER BY id"
        )
        # Live products per category subtree: W2 page 1 draws from every category with
        # a full page (mostly leaves, like shoppers browsing), page 50 from those with 50.
        subtrees = await conn.fetch(
            "SELECT c.id, (SELECT count(*) FROM catalog.products p JOIN catalog.categories d "
            "ON d.id = p.category_id WHERE d.path LIKE c.path || '%' "
            "AND p.deleted_at IS NULL AND p.is_active) AS live FROM catalog.categories c "
            "ORDER BY c.path"
        )
        server_version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    categories = [str(row["id"]) for row in subtrees if row["live"] > PAGE_SIZE]
    deep = [str(row["id"]) for row in subtrees if row["live"] > PAGE * PAGE_SIZE]
    if not products or not deep:
        raise SystemExit("the benchmark database has too little data: seed it first")
    _write(results / "product_ids.txt", [str(row["id"]) for row in products])
    _write(results / "category_ids.txt", categories)
    _write(results / "deep_category_ids.txt", deep)
    _write(results / "words.txt", vocabulary())
    (results / "server_version.txt").write_text(server_version)
    return {"products": len(products), "categories": len(categories), "deep": len(deep)}


def export_data(url: str, results: Path) -> dict[str, int]:
    return asyncio.run(_export(url, results))


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]


def _app_position(cursor: str) -> list[str]:
    """The keyset position inside an app cursor (signature, then JSON [fingerprint, pos])."""
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    _, position = orjson.loads(raw[16:])
    return [str(position[0]), str(position[1])]


def collect_page_cursors(app_url: str, results: Path, *, categories: int = 8) -> int:
    """Walk the app's next_cursor links to page 50 of a few categories; write both formats."""
    ids = _lines(results / "deep_category_ids.txt")[:categories]
    app_lines, ref_lines = [], []
    with httpx.Client(base_url=app_url, timeout=30) as client:
        for category in ids:
            cursor = None
            for _ in range(PAGE - 1):
                params = {"category_id": category, **({"cursor": cursor} if cursor else {})}
                response = client.get("/api/v1/products", params=params)
                response.raise_for_status()
                cursor = response.json()["meta"]["next_cursor"]
                if cursor is None:
                    raise SystemExit(f"category {category} has fewer than {PAGE} pages")
            assert cursor is not None
            app_lines.append(urllib.parse.urlencode({"category_id": category, "cursor": cursor}))
            created_at, product_id = _app_position(cursor)
            ref_cursor = f"{created_at}_{product_id}"
            ref_lines.append(
                urllib.parse.urlencode({"category_id": category, "cursor": ref_cursor})
            )
    _write(results / "page50_app.txt", app_lines)
    _write(results / "page50_ref.txt", ref_lines)
    return len(app_lines)


def write_open_loop_paths(results: Path, count: int = 20_000) -> dict[str, Path]:
    """Request paths for the open-loop generator, drawn like the wrk scripts draw them."""
    rng = random.Random(7)
    products = _lines(results / "product_ids.txt")
    categories = _lines(results / "category_ids.txt")
    words = _lines(results / "words.txt")

    def search() -> str:
        picked = [rng.choice(words) for _ in range(rng.choice((1, 2)))]
        return "/api/v1/products?q=" + "+".join(picked)

    makers = {
        "W1": lambda: "/api/v1/products/" + rng.choice(products),
        "W2": lambda: "/api/v1/products?category_id=" + rng.choice(categories),
        "W3": search,
    }
    files = {}
    for workload, make in makers.items():
        files[workload] = results / f"paths_{workload.lower()}.txt"
        _write(files[workload], [make() for _ in range(count)])
    return files


async def _page_costs(url: str, results: Path, rounds: int) -> tuple[float, float]:
    conn = await asyncpg.connect(url)
    try:
        await ref.init_connection(conn)
        pages = []
        for line in _lines(results / "page50_ref.txt"):
            query = urllib.parse.parse_qs(line)
            raw_time, _, raw_id = query["cursor"][0].rpartition("_")
            path = await conn.fetchval(
                "SELECT path FROM catalog.categories WHERE id = $1",
                uuid.UUID(query["category_id"][0]),
            )
            pages.append((path + "%", datetime.fromisoformat(raw_time), uuid.UUID(raw_id)))
        first = await conn.prepare(ref.SQL_CATEGORY_PAGE)
        later = await conn.prepare(ref.SQL_CATEGORY_PAGE_AFTER)
        spent = [0.0, 0.0]
        warmup = 2 * len(pages)
        for i in range(warmup + rounds):
            path, created_at, product_id = pages[i % len(pages)]
            started = time.perf_counter()
            await first.fetch(PAGE_SIZE + 1, path)
            middle = time.perf_counter()
            await later.fetch(created_at, product_id, PAGE_SIZE + 1, path)
            if i >= warmup:
                spent[0] += middle - started
                spent[1] += time.perf_counter() - middle
        return spent[0] / rounds * 1e6, spent[1] / rounds * 1e6
    finally:
        await conn.close()


def page_costs(url: str, results: Path, rounds: int = 300) -> tuple[float, float]:
    """Mean round trip (µs) of the page-1 and page-50 SQL for the same categories."""
    return asyncio.run(_page_costs(url, results, rounds))


# --- keeping the reference honest ------------------------------------------------------


class _CapturingExecutor:
    def __init__(self) -> None:
        self.statements: list[str] = []

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        self.statements.append(query)
        return []

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self.statements.append(query)
        return None


def check_same_sql() -> None:
    """Fail fast if the app's SQL for W1 to W3 drifted from the reference server's copy."""

    async def capture() -> list[str]:
        db = _CapturingExecutor()
        by_category = ProductFilters(category_path="/x/")
        after = [datetime.now(UTC), uuid.uuid4()]
        await repository.get_product(db, uuid.uuid4())
        await repository.get_category(db, uuid.uuid4())
        await repository.list_products(
            db, filters=by_category, sort=ProductSort.NEWEST, after=None, limit=21
        )
        await repository.list_products(
            db, filters=by_category, sort=ProductSort.NEWEST, after=after, limit=21
        )
        await repository.list_products(
            db,
            filters=ProductFilters(tsquery="ab:*"),
            sort=ProductSort.RELEVANCE,
            after=None,
            limit=21,
        )
        return db.statements

    expected = [
        ref.SQL_PRODUCT,
        ref.SQL_CATEGORY,
        ref.SQL_CATEGORY_PAGE,
        ref.SQL_CATEGORY_PAGE_AFTER,
        ref.SQL_SEARCH,
    ]
    for app_sql, ref_sql in zip(asyncio.run(capture()), expected, strict=True):
        if app_sql != ref_sql:
            raise SystemExit(
                "the app's SQL changed; update bench/reference_server.py:\n"
                f"  app:       {app_sql}\n  reference: {ref_sql}"
            )


def check_same_rows(app_url: str, ref_url: str, results: Path) -> list[str]:
    """Sample each workload on both servers; return a description of every mismatch."""
    rng = random.Random(11)
    words = _lines(results / "words.txt")
    products = _lines(results / "product_ids.txt")
    samples = [
        *(f"/api/v1/products/{rng.choice(products)}" for _ in range(2)),
        *(f"/api/v1/products?category_id={c}" for c in _lines(results / "category_ids.txt")[:2]),
        *(f"/api/v1/products?q={rng.choice(words)}" for _ in range(2)),
        f"/api/v1/products?q={rng.choice(words)}+{rng.choice(words)}",
    ]
    pairs = [(path, path) for path in samples]
    page50 = zip(
        _lines(results / "page50_app.txt"), _lines(results / "page50_ref.txt"), strict=True
    )
    pairs += [(f"/api/v1/products?{a}", f"/api/v1/products?{r}") for a, r in list(page50)[:2]]
    problems = []
    with httpx.Client(timeout=30) as client:
        for app_path, ref_path in pairs:
            app = client.get(app_url + app_path)
            reference = client.get(ref_url + ref_path)
            if app.status_code != 200 or reference.status_code != 200:
                problems.append(f"{app_path}: status {app.status_code} / {reference.status_code}")
            elif app.json()["data"] != reference.json()["data"]:
                problems.append(f"{app_path}: different data from app and reference")
    return problems
