from __future__ import annotations

import pytest

from mercato.core.errors import InvalidCursor
from mercato.core.pagination import CursorCodec, fingerprint


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
