from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mercato.core.config import Environment, Settings

STRONG = "k" * 40


def test_production_refuses_missing_secrets() -> None:
    with pytest.raises(ValidationError, match="admin_api_key"):
        Settings(
            environment=Environment.PRODUCTION, database_url="postgresql://x/y", secret_key=STRONG
        )


def test_production_refuses_short_secrets() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(
            environment=Environment.PRODUCTION,
            database_url="postgresql://x/y",
            admin_api_key="short",
            secret_key=STRONG,
        )


def test_production_refuses_a_wildcard_cors_origin() -> None:
    with pytest.raises(ValidationError, match="wildcard"):
        Settings(
            environment=Environment.PRODUCTION,
            database_url="postgresql://x/y",
            admin_api_key=STRONG,
            secret_key=STRONG,
            cors_allow_origins=["*"],
        )


def test_lists_are_read_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERCATO_CORS_ALLOW_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/mercato")
    settings = Settings()
    assert settings.cors_allow_origins == ["https://a.example", "https://b.example"]
    assert settings.database_url == "postgresql://db/mercato"


def test_development_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).with_local_secrets()
    second = Settings(data_dir=tmp_path).with_local_secrets()
    assert first.admin_api_key is not None
    assert second.admin_api_key is not None
    assert first.admin_api_key.get_secret_value() == second.admin_api_key.get_secret_value()
    assert len(first.admin_api_key.get_secret_value()) >= 32
    assert (tmp_path / "admin_api_key").stat().st_mode & 0o077 == 0
