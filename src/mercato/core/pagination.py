"""Opaque, signed keyset cursors.

A cursor carries the sort key of the last row a client saw, bound to the query it came from
(a fingerprint of the filters and sort) and signed with the server's secret, so a client can
neither forge a position nor reuse a cursor with a different query. The functions below
are what every paged listing does with one: cut a page and point to the next.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import orjson

from mercato.core.errors import InvalidCursor

MAX_CURSOR_LENGTH = 512
_SIGNATURE_BYTES = 16

Row = TypeVar("Row")


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


def next_page(
    codec: CursorCodec,
    bound_to: str,
    rows: list[Row],
    *,
    limit: int,
    position: Callable[[Row], list[Any]],
) -> tuple[list[Row], str | None]:
    """The page to show out of `rows` fetched with `limit + 1`, and the cursor to the next one.

    The extra row only tells that there is more: it is cut off, and the next cursor (None on
    the last page) carries the `position` of the page's last row.
    """
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, codec.encode(bound_to, position(page[-1]))


def stamp_position(column: str) -> Callable[[Any], list[Any]]:
    """A row's position in a listing ordered by the timestamp `column`, then id (for next_page)."""

    def position(row: Any) -> list[Any]:
        return [row[column].isoformat(), str(row["id"])]

    return position


def decode_stamp_cursor(
    codec: CursorCodec, bound_to: str, cursor: str | None
) -> tuple[datetime, uuid.UUID] | None:
    """The (timestamp, id) a `stamp_position` cursor carries; None when there is no cursor.

    An empty `?cursor=` is no cursor, as every other listing has always read it."""
    if not cursor:
        return None
    stamp, row_id = codec.decode(bound_to, cursor)
    return datetime.fromisoformat(stamp), uuid.UUID(row_id)
