"""`mercato users …` and `mercato keys …` against a real database."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from mercato.cli.main import app
from tests.factories import STRONG_PASSWORD
from tests.settings import TEST_DATA_KEY, make_settings

runner = CliRunner()


@pytest.fixture
def cli_env(fresh_db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> str:
    settings = make_settings()
    monkeypatch.setenv("DATABASE_URL", fresh_db_url)
    monkeypatch.setenv("MERCATO_ENVIRONMENT", "test")
    monkeypatch.setenv("MERCATO_DATA_DIR", str(tmp_path))
    for name in ("secret_key", "data_keys", "blind_index_key"):
        monkeypatch.setenv(f"MERCATO_{name.upper()}", getattr(settings, name).get_secret_value())
    return fresh_db_url


def _query(url: str, sql: str) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def _create_admin(email: str, password: str = STRONG_PASSWORD) -> Any:
    return runner.invoke(
        app, ["users", "create-admin", "--email", email, "--password-stdin"], input=password + "\n"
    )


def test_create_admin_makes_a_verified_administrator_once(cli_env: str) -> None:
    created = _create_admin("owner@example.com")
    assert created.exit_code == 0, created.output
    assert "created administrator" in created.output
    rows = _query(
        cli_env,
        "SELECT u.email_verified_at, r.role FROM identity.users u"
        " JOIN identity.user_roles r ON r.user_id = u.id",
    )
    assert [(row["email_verified_at"] is not None, row["role"]) for row in rows] == [
        (True, "admin")
    ]
    again = _create_admin("OWNER@example.com")
    assert again.exit_code == 1
    assert "already exists" in again.output
    weak = _create_admin("second@example.com", password="password")
    assert weak.exit_code == 1
    assert "not acceptable" in weak.output


def test_keys_rotate_signs_with_a_new_key_and_keeps_the_old_one_verifying(cli_env: str) -> None:
    _create_admin("owner@example.com")  # starts the key set
    first = runner.invoke(app, ["keys", "rotate"])
    assert first.exit_code == 0, first.output
    keys = _query(cli_env, "SELECT kid, retired_at, expires_at FROM identity.signing_keys")
    active = [row["kid"] for row in keys if row["retired_at"] is None]
    assert len(active) == 1
    assert active[0] in first.output
    audit = _query(
        cli_env, "SELECT action FROM identity.audit_log WHERE action = 'signing_key.rotated'"
    )
    assert len(audit) == 1


def test_keys_rotate_data_reseals_under_the_newest_key(
    cli_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _create_admin("owner@example.com").exit_code == 0
    runner.invoke(app, ["keys", "rotate"])
    new_key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("MERCATO_DATA_KEYS", f"{TEST_DATA_KEY},2:{new_key}")
    rotated = runner.invoke(app, ["keys", "rotate-data"])
    assert rotated.exit_code == 0, rotated.output
    assert "re-sealed 2 rows" in rotated.output  # the account and the signing key
    versions = _query(cli_env, "SELECT DISTINCT data_key_version FROM identity.users")
    assert [row["data_key_version"] for row in versions] == [2]
    again = runner.invoke(app, ["keys", "rotate-data"])
    assert "re-sealed 0 rows" in again.output


def test_users_erase_deleted_removes_personal_data_after_the_grace_period(cli_env: str) -> None:
    assert _create_admin("owner@example.com").exit_code == 0
    _query(cli_env, "UPDATE identity.users SET deleted_at = now() - interval '2 days'")
    kept = runner.invoke(app, ["users", "erase-deleted", "--days", "3"])
    assert "erased 0 accounts" in kept.output
    erased = runner.invoke(app, ["users", "erase-deleted", "--days", "1"])
    assert erased.exit_code == 0, erased.output
    assert "erased 1 accounts" in erased.output
    row = _query(cli_env, "SELECT email, first_name, erased_at FROM identity.users")[0]
    assert (row["email"], row["first_name"]) == (None, None)
    assert row["erased_at"] is not None
