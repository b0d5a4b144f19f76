from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mercato.core.config import Environment, Settings

STRONG = "k" * 40
PRODUCTION = {
    "environment": Environment.PRODUCTION,
    "database_url": "postgresql://x/y",
    "secret_key": STRONG,
    "data_keys": "1:" + "A" * 43 + "=",
    "blind_index_key": STRONG,
    "payment_webhook_secret": STRONG,
}


@pytest.mark.parametrize("missing", ["secret_key", "data_keys", "blind_index_key"])
def test_production_refuses_missing_secrets(missing: str) -> None:
    values = {k: v for k, v in PRODUCTION.items() if k != missing}
    with pytest.raises(ValidationError, match=missing):
        Settings(**values)


def test_production_refuses_short_secrets() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(**{**PRODUCTION, "blind_index_key": "short"})


def test_production_refuses_a_wildcard_cors_origin() -> None:
    with pytest.raises(ValidationError, match="wildcard"):
        Settings(**PRODUCTION, cors_allow_origins=["*"])


def test_lists_are_read_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERCATO_CORS_ALLOW_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/mercato")
    settings = Settings()
    assert settings.cors_allow_origins == ["https://a.example", "https://b.example"]
    assert settings.database_url == "postgresql://db/mercato"


def test_development_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).with_local_secrets()
    second = Settings(data_dir=tmp_path).with_local_secrets()
    for name in ("secret_key", "data_keys", "blind_index_key"):
        kept, again = getattr(first, name), getattr(second, name)
        assert kept is not None
        assert again is not None
        assert kept.get_secret_value() == again.get_secret_value()
        assert len(kept.get_secret_value()) >= 32
        assert (tmp_path / name).stat().st_mode & 0o077 == 0
    assert first.data_keys is not None
    assert first.data_keys.get_secret_value().startswith("1:")


def test_production_refuses_the_sandbox_payment_key() -> None:
    with pytest.raises(ValidationError, match="payment_api_key"):
        Settings(**PRODUCTION)
    Settings(**PRODUCTION, payment_api_key="sk_live_" + "k" * 24)
