"""Signing secrets and message signatures, as the Standard Webhooks specification has them.

A secret is `whsec_` followed by the base64 of 32 random bytes; those bytes are the HMAC
key. A message is signed over `"{webhook-id}.{webhook-timestamp}.{body}"` and the
`webhook-signature` header carries `v1,<base64 HMAC-SHA256>`, one per valid secret,
separated by spaces (two during a rotation's overlap: the new secret's first).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

PREFIX = "whsec_"
KEY_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def signing_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX), validate=True)


def sign(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(
    secrets_in_use: Sequence[str], *, message_id: str, timestamp: int, body: bytes
) -> str:
    return " ".join(
        sign(secret, message_id=message_id, timestamp=timestamp, body=body)
        for secret in secrets_in_use
    )
