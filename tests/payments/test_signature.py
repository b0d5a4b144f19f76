"""Webhook signatures as Stripe makes them: timestamped HMAC-SHA256, constant-time check."""

from __future__ import annotations

import time

import pytest

from mercato.payments.signature import InvalidSignature, sign, verify

SECRET = "whsec_test_secret"
BODY = b'{"id": "evt_1", "type": "payment_intent.succeeded"}'


def test_a_fresh_signature_verifies() -> None:
    verify(sign(SECRET, BODY, int(time.time())), BODY, SECRET)


def test_one_of_several_signatures_may_match() -> None:
    now = int(time.time())
    good = sign(SECRET, BODY, now).split(",")[1]
    verify(f"t={now},v1={'0' * 64},{good}", BODY, SECRET)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "v1=abc",
        "t=notanumber,v1=abc",
        "t=123",
        "garbage",
    ],
)
def test_malformed_headers_are_refused(header: str | None) -> None:
    with pytest.raises(InvalidSignature):
        verify(header, BODY, SECRET)


def test_a_wrong_secret_or_altered_body_is_refused() -> None:
    now = int(time.time())
    with pytest.raises(InvalidSignature):
        verify(sign("whsec_other", BODY, now), BODY, SECRET)
    with pytest.raises(InvalidSignature):
        verify(sign(SECRET, BODY, now), BODY + b" ", SECRET)


def test_old_and_future_timestamps_are_refused() -> None:
    now = time.time()
    for skew in (-301, 301):
        header = sign(SECRET, BODY, int(now + skew))
        with pytest.raises(InvalidSignature, match="tolerance"):
            verify(header, BODY, SECRET, now=now)
    verify(sign(SECRET, BODY, int(now - 299)), BODY, SECRET, now=now)
