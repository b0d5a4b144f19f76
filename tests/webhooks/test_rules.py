"""Delivery rules and signatures without a database or network."""

from __future__ import annotations

import base64
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from tests.webhooks.conftest import EXAMPLE, load_example

from mercato.webhooks import rules
from mercato.webhooks.rules import Verdict
from mercato.webhooks.signature import new_secret, sign, signature_header

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def test_signing_reproduces_the_standard_webhooks_test_vector() -> None:
    """The specification's published vector: any Standard Webhooks library verifies us."""
    assert (
        sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            message_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp=1614265330,
            body=b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_a_new_secret_is_32_random_bytes_after_the_prefix() -> None:
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_the_documented_snippet_is_the_example_that_the_tests_run() -> None:
    source = EXAMPLE.read_text()
    snippet = re.search(
        r"# --- snippet: verify_webhook ---\n(.*?)\n+# --- end snippet ---", source, re.S
    )
    assert snippet is not None
    assert f"```python\n{snippet.group(1).strip()}\n```" in DOC.read_text()


def test_the_example_rejects_stale_or_forged_messages() -> None:
    example = load_example()
    secret, other = new_secret(), new_secret()
    body = b'{"id": "x"}'
    now = int(time.time())

    def headers(timestamp: int, *secrets: str) -> httpx.Headers:
        return httpx.Headers(
            {
                "Webhook-Id": "msg_1",
                "Webhook-Timestamp": str(timestamp),
                "Webhook-Signature": signature_header(
                    secrets, message_id="msg_1", timestamp=timestamp, body=body
                ),
            }
        )

    example.verify_webhook(secret, headers(now, secret), body)
    example.verify_webhook(secret, headers(now, other, secret), body)  # either of two
    for forged in (headers(now, other), headers(now - 600, secret)):
        with pytest.raises(example.InvalidWebhook):
            example.verify_webhook(secret, forged, body)


@pytest.mark.parametrize(
    ("status_code", "attempt", "verdict"),
    [
        (200, 1, Verdict.DELIVERED),
        (204, 8, Verdict.DELIVERED),
        (299, 3, Verdict.DELIVERED),
        (410, 1, Verdict.GONE),
        (301, 1, Verdict.RETRY),  # redirects are not followed
        (404, 1, Verdict.RETRY),
        (500, 7, Verdict.RETRY),
        (500, 8, Verdict.DEAD),
        (None, 2, Verdict.RETRY),  # timeout, connection error, refused address
        (None, 8, Verdict.DEAD),
    ],
)
def test_an_answer_decides_what_happens_next(
    status_code: int | None, attempt: int, verdict: Verdict
) -> None:
    assert rules.verdict(status_code=status_code, attempt=attempt, max_attempts=8) is verdict


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter() -> None:
    ceilings = [rules.backoff_seconds(n, base=1, cap=3600, draw=lambda: 1.0) for n in range(1, 15)]
    assert ceilings[:5] == [1, 2, 4, 8, 16]
    assert ceilings[-1] == 3600
    assert rules.backoff_seconds(5, base=1, cap=3600, draw=lambda: 0.0) == 0
    assert rules.backoff_seconds(10_000, base=1, cap=60, draw=lambda: 1.0) == 60
    draws = {rules.backoff_seconds(4, base=1, cap=3600) for _ in range(50)}
    assert all(0 <= d <= 8 for d in draws)
    assert len(draws) > 40


def test_a_subscription_wants_its_types_or_everything() -> None:
    assert rules.wants(["order.paid"], "order.paid")
    assert not rules.wants(["order.paid"], "order.cancelled")
    assert rules.wants(["*"], "anything.at_all")
    assert rules.unknown_types(["*", "order.paid", "nope"], {"order.paid"}) == ["nope"]


def test_the_message_body_carries_the_event() -> None:
    event_id = uuid.uuid4()
    occurred = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    body = rules.message_body(
        {
            "event_id": str(event_id),
            "type": "order.paid",
            "position": 42,
            "occurred_at": occurred,
            "payload": {"id": "o1"},
            "trace_context": {"request_id": "not sent"},
        }
    )
    assert orjson.loads(body) == {
        "id": str(event_id),
        "type": "order.paid",
        "position": 42,
        "occurred_at": "2026-05-01T12:00:00+00:00",
        "data": {"id": "o1"},
    }
    assert rules.excerpt(("é" * 600).encode()) == "é" * 500
