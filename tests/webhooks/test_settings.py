"""Webhook settings: the allow-list is read like the other lists, and a typo stops the start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mercato.core.config import Settings


def test_the_allow_list_is_comma_separated_cidrs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERCATO_WEBHOOK_ALLOWED_NETWORKS", "10.20.0.0/16, fd00:1::/64 ,")
    assert Settings().webhook_allowed_networks == ["10.20.0.0/16", "fd00:1::/64"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"webhook_allowed_networks": "10.0.0.0/33"},
        {"webhook_allowed_networks": "intranet"},
        {"webhook_timeout_seconds": 0},
        {"webhook_max_attempts": 0},
        {"webhook_concurrency": 0},
        {"webhook_max_response_bytes": -1},
    ],
)
def test_bad_webhook_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)  # type: ignore[arg-type]
