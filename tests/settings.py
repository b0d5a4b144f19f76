"""Settings for tests: fixed secrets, quiet logs, limits no test trips over by accident."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mercato.core.config import Environment, Settings

TEST_DATA_KEY = "1:" + "dGVzdC1kYXRhLWtleS0xLXRlc3QtZGF0YS1rZXktMSE="  # 32 bytes


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": Environment.TEST,
        "secret_key": "test-secret-" + "s" * 32,
        "data_keys": TEST_DATA_KEY,
        "blind_index_key": "test-blind-index-" + "b" * 32,
        "payment_webhook_secret": "whsec_test_" + "w" * 32,
        "payment_sandbox": False,
        "access_log": False,
        "log_json": True,
        "data_dir": Path(".mercato/test"),
        "rate_limit_anonymous": "100000/minute",
        "rate_limit_authenticated": "100000/minute",
        "rate_limit_sensitive": "100000/minute",
        "webhook_allowed_networks": ["127.0.0.0/8"],
    }
    values.update(overrides)
    return Settings(**values)
