"""Opaque, signed keyset cursors.

A cursor carries the sort key of the last row a client saw, bound to the query it came from
(a fingerprint of the filters and sort) and signed with the server's secret, so a client can
neither forge a position nor reuse a cursor with a different query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson

from mercato.core.errors import InvalidCursor

MAX_CURSOR_LENGTH = 512
_SIGNATURE_BYTES = 16


class CursorCodec:
    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"mercato-cursor\x00" + secret).digest()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, fingerprint: str, position: list[Any]) -> str:
        payload = orjson.dumps([fingerprint, position])
        raw = self._sign(payload) + payload
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def decode(self, fingerprint: str, cursor: str) -> list[Any]:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise InvalidCursor()
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError) as exc:
            raise InvalidCursor() from exc
        signature, payload = raw[:_SIGNATURE_BYTES], raw[_SIGNATURE_BYTES:]
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise InvalidCursor()
        try:
            decoded_fingerprint, position = orjson.loads(payload)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise InvalidCursor() from exc
        if decoded_fingerprint != fingerprint or not isinstance(position, list):
            raise InvalidCursor("This cursor belongs to a different query.")
        return position


def fingerprint(*parts: object) -> str:
    """A short, stable digest of the query parameters a cursor is bound to."""
    return hashlib.blake2b(orjson.dumps(parts, default=str), digest_size=8).hexdigest()
