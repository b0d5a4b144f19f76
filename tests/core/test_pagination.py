from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mercato.core.errors import InvalidCursor
from mercato.core.pagination import (
    CursorCodec,
    decode_stamp_cursor,
    fingerprint,
    next_page,
    stamp_position,
)


def test_a_cursor_round_trips() -> None:
    codec = CursorCodec(b"secret")
    cursor = codec.encode("fp", ["2026-01-01T00:00:00+00:00", "id-1"])
    assert codec.decode("fp", cursor) == ["2026-01-01T00:00:00+00:00", "id-1"]


def test_a_cursor_from_another_secret_is_refused() -> None:
    cursor = CursorCodec(b"one").encode("fp", [1, "x"])
    with pytest.raises(InvalidCursor):
        CursorCodec(b"two").decode("fp", cursor)


def test_a_cursor_for_another_query_is_refused() -> None:
    codec = CursorCodec(b"secret")
    with pytest.raises(InvalidCursor):
        codec.decode("other", codec.encode("fp", [1, "x"]))


@pytest.mark.parametrize(
    "cursor", ["", "!!!", "a", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "x" * 1000]
)
def test_garbage_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        CursorCodec(b"secret").decode("fp", cursor)


def test_fingerprints_differ_by_parameter() -> None:
    assert fingerprint("newest", None) != fingerprint("newest", "brand")
    assert fingerprint("newest", None) == fingerprint("newest", None)


def _rows(count: int) -> list[dict[str, Any]]:
    """Newest first, as a (created_at, id) keyset listing returns them."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [{"id": uuid.uuid4(), "created_at": start - timedelta(minutes=n)} for n in range(count)]


_by_created_at = stamp_position("created_at")


def test_a_page_cut_from_one_extra_row_points_to_the_next() -> None:
    codec = CursorCodec(b"secret")
    rows = _rows(4)
    page, cursor = next_page(codec, "fp", rows, limit=3, position=_by_created_at)
    assert page == rows[:3]
    assert cursor is not None
    assert codec.decode("fp", cursor) == [rows[2]["created_at"].isoformat(), str(rows[2]["id"])]


@pytest.mark.parametrize("count", [0, 2, 3])
def test_the_last_page_has_no_next_cursor(count: int) -> None:
    rows = _rows(count)
    page, cursor = next_page(CursorCodec(b"secret"), "fp", rows, limit=3, position=_by_created_at)
    assert (page, cursor) == (rows, None)


def test_a_stamp_cursor_round_trips_to_typed_values() -> None:
    codec = CursorCodec(b"secret")
    rows = _rows(2)
    _, cursor = next_page(codec, "fp", rows, limit=1, position=_by_created_at)
    after = decode_stamp_cursor(codec, "fp", cursor)
    assert after == (rows[0]["created_at"], rows[0]["id"])
    assert after is not None
    assert isinstance(after[0], datetime)
    assert isinstance(after[1], uuid.UUID)


def test_no_stamp_cursor_and_an_empty_one_both_mean_the_first_page() -> None:
    # `?cursor=` reads as no cursor in every listing (import jobs and webhooks refused it).
    codec = CursorCodec(b"secret")
    assert decode_stamp_cursor(codec, "fp", None) is None
    assert decode_stamp_cursor(codec, "fp", "") is None


def test_a_tampered_stamp_cursor_is_refused() -> None:
    codec = CursorCodec(b"secret")
    cursor = codec.encode("fp", _by_created_at(_rows(1)[0]))
    tampered = cursor[:4] + ("A" if cursor[4] != "A" else "B") + cursor[5:]
    with pytest.raises(InvalidCursor) as refused:
        decode_stamp_cursor(codec, "fp", tampered)
    assert refused.value.detail_message == InvalidCursor.message


def test_a_stamp_cursor_of_another_query_is_refused() -> None:
    codec = CursorCodec(b"secret")
    _, cursor = next_page(codec, fingerprint("imports"), _rows(2), limit=1, position=_by_created_at)
    assert cursor is not None
    with pytest.raises(InvalidCursor) as refused:
        decode_stamp_cursor(codec, fingerprint("webhook-subscriptions"), cursor)
    assert refused.value.detail_message == "This cursor belongs to a different query."
