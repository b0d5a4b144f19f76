"""Verify a Mercato webhook on the receiving side (Standard Webhooks signatures).

Standard library only; docs/webhooks.md shows this same function, and the test suite runs
it against real deliveries. Pass the headers (any mapping with case-insensitive lookups,
as web frameworks give) and the raw body bytes, exactly as received, before any JSON
parsing: re-serialised JSON would not match the signature.
"""

from __future__ import annotations

# --- snippet: verify_webhook ---
import base64
import hashlib
import hmac
import time
from collections.abc import Mapping


class InvalidWebhook(Exception):
    pass


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, tolerance_seconds: int = 300
) -> None:
    """Raise InvalidWebhook unless `body` was signed with `secret` in the last 5 minutes."""
    message_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_seconds:
        raise InvalidWebhook("timestamp outside the tolerance (a replayed message?)")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    # One signature per valid secret, space-separated (two while a secret is rotated).
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return
    raise InvalidWebhook("no valid signature")


# --- end snippet ---
