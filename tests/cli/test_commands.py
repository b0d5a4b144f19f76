"""The command line, end to end: seeding, database facts, and serving on a real port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from mercato.catalog.demo_data import gtin13, seed_catalog
from mercato.catalog.rules import gtin_is_valid
from mercato.cli.main import app
from mercato.core.migrate import head_revision
from tests.factories import STRONG_PASSWORD

runner = CliRunner()


async def test_seeding_is_deterministic_and_idempotent(fresh_db_url: str) -> None:
    conn = await asyncpg.connect(fresh_db_url)
    try:
        assert await seed_catalog(conn, product_count=300, category_count=20) == 300
        first = await conn.fetch("SELECT id, name, price FROM catalog.products ORDER BY sku")
        assert await seed_catalog(conn, product_count=300, category_count=20) == 0
        assert await seed_catalog(conn, product_count=350, category_count=20) == 50
        again = await conn.fetch(
            "SELECT id, name, price FROM catalog.products ORDER BY sku LIMIT 300"
        )
        assert first == again
        assert await conn.fetchval("SELECT count(*) FROM catalog.categories") == 20
        assert await conn.fetchval("SELECT count(DISTINCT depth) FROM catalog.categories") == 2
    finally:
        await conn.close()


def test_seeded_gtins_are_valid() -> None:
    assert all(gtin_is_valid(gtin13(n)) for n in range(0, 100_000, 997))


def test_seed_and_db_info_commands(fresh_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_db_url)
    seeded = runner.invoke(app, ["seed", "--products", "40", "--categories", "10"])
    assert seeded.exit_code == 0, seeded.output
    assert "40 products added" in seeded.output
    info = runner.invoke(app, ["db", "info"])
    assert info.exit_code == 0, info.output
    assert "catalog" in info.output
    assert head_revision() in info.output


def test_bad_options_are_refused_with_a_message() -> None:
    result = runner.invoke(app, ["seed", "--products", "-5"])
    assert result.exit_code == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited early"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} was not ready in {timeout}s")


@pytest.mark.slow
def test_quick_start_on_the_embedded_database(tmp_path: Path) -> None:
    """What `make run` does: migrate, seed and serve, with no database server configured."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MERCATO_DATABASE_URL")}
    env["MERCATO_DATA_DIR"] = str(tmp_path / "data")
    mercato = [sys.executable, "-m", "mercato"]
    for command in (["migrate"], ["seed", "--products", "25", "--categories", "5"]):
        subprocess.run([*mercato, *command], env=env, check=True, capture_output=True, timeout=120)
    subprocess.run(
        [*mercato, "users", "create-admin", "--email", "owner@example.com", "--password-stdin"],
        input=f"{STRONG_PASSWORD}\n",
        text=True,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = _free_port()
    server = subprocess.Popen(
        [*mercato, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/health/ready", server)
        products = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/products", params={"limit": 100}
        ).json()
        assert len(products["data"]) == 25
        login = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/auth/login",
            json={"email": "owner@example.com", "password": STRONG_PASSWORD},
        )
        assert login.status_code == 200, login.text
        token = login.json()["data"]["access_token"]
        created = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/categories",
            json={"name": "Quick Start"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    # The embedded server stops with its last user: nothing is left listening on the socket.
    assert not list((tmp_path / "data" / "pgdata").glob(".s.PGSQL.*.lock"))
