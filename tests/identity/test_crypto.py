"""Personal data at rest, without a database: the data key ring and the email index."""

from __future__ import annotations

import base64
import hashlib
import os
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.core.crypto import (
    HEADER_BYTES,
    NONCE_BYTES,
    BlindIndex,
    DataKeyRing,
    KeyRingError,
    UndecryptableValue,
    normalise_email,
    version_of,
)

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(32, 64))
TAG_BYTES = 16
CONTEXT = b"users.first_name:00000000-0000-0000-0000-000000000001"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


# Standard base64 is expected: "-" and "_" are not in its alphabet.
URLSAFE_KEY = base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode()
assert "-" in URLSAFE_KEY or "_" in URLSAFE_KEY

RING_1 = DataKeyRing({1: KEY_1})
RING_12 = DataKeyRing({1: KEY_1, 2: KEY_2})
RING_2 = DataKeyRing({2: KEY_2})


# --- parsing the configured ring --------------------------------------------------------


def test_parse_reads_versions_and_keys() -> None:
    ring = DataKeyRing.parse(f" 1:{b64(KEY_1)} , 2:{b64(KEY_2)},")
    assert ring.keys == {1: KEY_1, 2: KEY_2}
    assert ring.active_version == 2


def test_the_highest_version_is_active_whatever_the_order() -> None:
    assert DataKeyRing.parse(f"7:{b64(KEY_2)},3:{b64(KEY_1)}").active_version == 7


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param(" , ,", "empty", id="only-separators"),
        pytest.param(f"1:{b64(KEY_1)[:-2]}!!", "base64", id="bad-base64-char"),
        pytest.param(f"1:{b64(KEY_1)[:-1]}", "base64", id="bad-base64-padding"),
        pytest.param(f"1:{URLSAFE_KEY}", "base64", id="urlsafe-alphabet"),
        pytest.param(f"1:{b64(KEY_1[:16])}", "32 bytes", id="aes-128-key"),
        pytest.param(f"1:{b64(KEY_1 + b'x')}", "32 bytes", id="33-byte-key"),
        pytest.param("1:", "32 bytes", id="no-key"),
        pytest.param(b64(KEY_1), "version:base64key", id="no-version"),
        pytest.param(f"v1:{b64(KEY_1)}", "version:base64key", id="non-numeric-version"),
        pytest.param(f"-1:{b64(KEY_1)}", "version:base64key", id="negative-version"),
        pytest.param(f":{b64(KEY_1)}", "version:base64key", id="empty-version"),
        pytest.param(f"0:{b64(KEY_1)}", "out of range", id="version-zero"),
        pytest.param(f"65536:{b64(KEY_1)}", "out of range", id="version-too-large"),
        pytest.param(f"1:{b64(KEY_1)},2:short", "base64|32 bytes", id="one-bad-key-of-two"),
    ],
)
def test_parse_rejects_malformed_rings(spec: str, message: str) -> None:
    with pytest.raises(KeyRingError, match=message):
        DataKeyRing.parse(spec)


def test_key_ring_errors_are_value_errors() -> None:
    """So that settings validation reports them as configuration mistakes."""
    assert issubclass(KeyRingError, ValueError)


def test_a_ring_checks_keys_given_directly() -> None:
    with pytest.raises(KeyRingError):
        DataKeyRing({})
    with pytest.raises(KeyRingError):
        DataKeyRing({1: b"too short"})
    with pytest.raises(KeyRingError):
        DataKeyRing({2**16: KEY_1})


# --- sealing and opening ----------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    [
        "",
        "Ada",
        "Zoë Ångström",
        "Ιωάννης",
        "北京市朝阳区",
        "🚀 rocket\u200dman",
        "a\x00b",
        "x" * 10_000,
    ],
)
def test_seal_then_open_round_trips(plaintext: str) -> None:
    sealed = RING_1.seal(plaintext, context=CONTEXT)
    assert RING_1.open(sealed, context=CONTEXT) == plaintext


def test_a_sealed_value_has_the_documented_layout() -> None:
    plaintext = "Zoë"
    sealed = RING_12.seal(plaintext, context=CONTEXT)
    assert sealed[0] == 1  # format
    assert sealed[1:3] == (2).to_bytes(2, "big")  # key version
    assert version_of(sealed) == 2
    assert len(sealed) == HEADER_BYTES + NONCE_BYTES + len(plaintext.encode()) + TAG_BYTES
    assert plaintext.encode() not in sealed


def test_sealing_twice_gives_different_ciphertexts() -> None:
    first = RING_1.seal("same", context=CONTEXT)
    second = RING_1.seal("same", context=CONTEXT)
    assert first != second
    assert (
        first[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        != (second[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES])
    )


def test_optional_values_pass_none_through() -> None:
    assert RING_1.seal_optional(None, context=CONTEXT) is None
    assert RING_1.open_optional(None, context=CONTEXT) is None
    sealed = RING_1.seal_optional("x", context=CONTEXT)
    assert sealed is not None
    assert RING_1.open_optional(sealed, context=CONTEXT) == "x"


@pytest.mark.parametrize(
    "other",
    [
        b"users.first_name:00000000-0000-0000-0000-000000000002",  # another row
        b"users.last_name:00000000-0000-0000-0000-000000000001",  # another column
        b"",
        CONTEXT + b"\x00",
    ],
    ids=["other-row", "other-column", "empty", "extended"],
)
def test_a_value_opens_only_where_it_was_sealed(other: bytes) -> None:
    sealed = RING_1.seal("+44 20 7946 0000", context=CONTEXT)
    with pytest.raises(UndecryptableValue):
        RING_1.open(sealed, context=other)


def test_tampering_with_any_byte_is_detected() -> None:
    sealed = RING_12.seal("Lovelace", context=CONTEXT)
    for position in range(len(sealed)):
        for flip in (0x01, 0x80):
            tampered = bytearray(sealed)
            tampered[position] ^= flip
            with pytest.raises(UndecryptableValue):
                RING_12.open(bytes(tampered), context=CONTEXT)


def test_truncated_and_foreign_values_are_refused() -> None:
    sealed = RING_1.seal("Lovelace", context=CONTEXT)
    for value in (b"", sealed[:1], sealed[: HEADER_BYTES + NONCE_BYTES + TAG_BYTES - 1]):
        with pytest.raises(UndecryptableValue):
            RING_1.open(value, context=CONTEXT)
    with pytest.raises(UndecryptableValue):
        RING_1.open(sealed[:-1], context=CONTEXT)
    with pytest.raises(UndecryptableValue):
        RING_1.open(sealed + b"\x00", context=CONTEXT)
    with pytest.raises(UndecryptableValue):
        RING_1.open(b"Lovelace" * 8, context=CONTEXT)  # plaintext left in a sealed column


def test_a_ring_seals_under_its_newest_key_and_opens_older_values() -> None:
    old = RING_1.seal("before rotation", context=CONTEXT)
    assert version_of(old) == 1
    new = RING_12.seal("after rotation", context=CONTEXT)
    assert version_of(new) == 2
    assert RING_12.open(old, context=CONTEXT) == "before rotation"
    assert RING_12.open(new, context=CONTEXT) == "after rotation"


def test_a_ring_without_the_values_key_refuses_it() -> None:
    old = RING_1.seal("before rotation", context=CONTEXT)
    with pytest.raises(UndecryptableValue, match="version 1"):
        RING_2.open(old, context=CONTEXT)
    with pytest.raises(UndecryptableValue, match="version 2"):
        RING_1.open(RING_2.seal("x", context=CONTEXT), context=CONTEXT)


def test_a_different_key_under_the_same_version_refuses_the_value() -> None:
    sealed = RING_1.seal("x", context=CONTEXT)
    impostor = DataKeyRing({1: os.urandom(32)})
    with pytest.raises(UndecryptableValue):
        impostor.open(sealed, context=CONTEXT)


@settings(max_examples=40, deadline=None)
@given(plaintext=st.text(max_size=200), context=st.binary(max_size=64), both=st.booleans())
def test_round_trip_property(plaintext: str, context: bytes, both: bool) -> None:
    ring = RING_12 if both else RING_1
    sealed = ring.seal(plaintext, context=context)
    assert RING_12.open(sealed, context=context) == plaintext


@settings(max_examples=40, deadline=None)
@given(
    plaintext=st.text(max_size=50),
    context=st.binary(max_size=32),
    other=st.binary(max_size=32),
)
def test_wrong_context_property(plaintext: str, context: bytes, other: bytes) -> None:
    sealed = RING_1.seal(plaintext, context=context)
    if other == context:
        assert RING_1.open(sealed, context=other) == plaintext
    else:
        with pytest.raises(UndecryptableValue):
            RING_1.open(sealed, context=other)


# --- the blind email index --------------------------------------------------------------


def fullwidth(text: str) -> str:
    """The full-width forms of ASCII (U+FF01..U+FF5E), which NFKC folds back."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


INDEX = BlindIndex(b"blind-index-key-" + b"k" * 32)


@pytest.mark.parametrize(
    "variant",
    [
        "ada@example.com",
        "Ada@Example.COM",
        "ADA@EXAMPLE.COM",
        "  ada@example.com\t",
        "\nada@example.com ",
        "\u3000ada@example.com\u3000",  # ideographic spaces
        fullwidth("ada") + "@" + fullwidth("example.com"),  # full-width letters
        fullwidth("ADA@EXAMPLE.COM"),  # full-width capitals, at sign and dot
        "ada\uff20example.com",  # full-width at sign
    ],
)
def test_equivalent_spellings_share_a_digest(variant: str) -> None:
    assert INDEX.email(variant) == INDEX.email("ada@example.com")


def test_composed_and_decomposed_accents_share_a_digest() -> None:
    composed = "jos\u00e9@example.com"
    decomposed = "jose\u0301@example.com"
    assert composed != decomposed
    assert unicodedata.normalize("NFC", decomposed) == composed
    assert INDEX.email(composed) == INDEX.email(decomposed)
    assert INDEX.email("JOSE\u0301@EXAMPLE.COM") == INDEX.email(composed)


def test_different_addresses_have_different_digests() -> None:
    digests = {
        INDEX.email(address)
        for address in (
            "ada@example.com",
            "ada@example.org",
            "ada.lovelace@example.com",
            "jose@example.com",
            "josé@example.com",
        )
    }
    assert len(digests) == 5


def test_the_digest_depends_on_the_key() -> None:
    other = BlindIndex(b"another-blind-index-key-" + b"k" * 24)
    assert INDEX.email("ada@example.com") != other.email("ada@example.com")
    assert len(INDEX.email("ada@example.com")) == 32  # HMAC-SHA256
    assert INDEX.email("ada@example.com") == BlindIndex(INDEX.key).email("ada@example.com")


def test_the_digest_is_not_a_plain_hash_of_the_address() -> None:
    address = "ada@example.com"
    assert INDEX.email(address) != hashlib.sha256(address.encode()).digest()


def test_normalise_email() -> None:
    assert normalise_email("  Ada@Example.COM ") == "ada@example.com"
    assert normalise_email("ﬁnn@example.com") == "finn@example.com"  # ligature → letters


@settings(max_examples=40, deadline=None)
@given(address=st.emails(), padding=st.sampled_from(["", " ", "\t", "\n", " \u3000"]))
def test_case_and_padding_never_change_the_digest(address: str, padding: str) -> None:
    assert INDEX.email(f"{padding}{address.upper()}{padding}") == INDEX.email(address)
