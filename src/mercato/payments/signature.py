"""Verifying webhooks the way Stripe signs them.

`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>[,v1=...]`.
A webhook is accepted only if one `v1` matches (compared in constant time) and `t` is within
the tolerance of our clock, so a captured request cannot be replayed later; a replay within
the window is caught by the event id, which is processed once.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from mercato.core.errors import BadRequest

TOLERANCE_SECONDS = 300


class InvalidSignature(BadRequest):
    code = "WEBHOOK_SIGNATURE_INVALID"
    message = "The webhook signature is missing, wrong or too old."


def sign(secret: str, payload: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(
    header: str | None,
    payload: bytes,
    secret: str,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    if not header:
        raise InvalidSignature()
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature()
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        raise InvalidSignature("The webhook's timestamp is outside the tolerance window.")
    expected = sign(secret, payload, timestamp).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise InvalidSignature()
