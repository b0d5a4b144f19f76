"""Secrets at rest: AES-256-GCM under versioned data keys, and a keyed email index.

Identity seals personal data and token-signing keys with it; webhooks seal their
subscriptions' signing secrets. One key ring (`MERCATO_DATA_KEYS`) serves both.

A sealed value is `b"\\x01" || key version (2 bytes) || nonce (12) || ciphertext+tag`.
The version travels with the value, so a key ring can hold old keys while
`mercato keys rotate-data` re-encrypts rows in batches: reads never wait for rotation.

Each value is bound to where it lives (`context`, e.g. `b"users.first_name:<id>"`) as
associated data: a ciphertext copied into another row or column fails to decrypt instead
of showing one customer's phone number on another's profile.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = 1
NONCE_BYTES = 12
HEADER_BYTES = 3


class KeyRingError(ValueError):
    """The configured data keys are malformed."""


class UndecryptableValue(Exception):
    """A sealed value was tampered with, moved, or sealed under a key the ring lacks."""


@dataclass(frozen=True, slots=True)
class DataKeyRing:
    keys: dict[int, bytes]

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyRingError("the data key ring is empty")
        for version, key in self.keys.items():
            if not 0 < version < 2**16:
                raise KeyRingError(f"data key version {version} is out of range 1..65535")
            if len(key) != 32:
                raise KeyRingError(f"data key {version} must be 32 bytes (AES-256)")

    @classmethod
    def parse(cls, spec: str) -> DataKeyRing:
        """Read `"1:<base64>,2:<base64>"`: every version decrypts, the highest encrypts."""
        keys: dict[int, bytes] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            version, sep, encoded = item.partition(":")
            if not sep or not (version.isascii() and version.isdigit()):
                raise KeyRingError("data keys are written as version:base64key, comma-separated")
            if int(version) in keys:
                raise KeyRingError(f"data key version {int(version)} is listed twice")
            try:
                keys[int(version)] = base64.b64decode(encoded, validate=True)
            except ValueError as exc:
                raise KeyRingError(f"data key {version} is not valid base64") from exc
        return cls(keys)

    @property
    def active_version(self) -> int:
        return max(self.keys)

    def seal(self, plaintext: str, *, context: bytes) -> bytes:
        version = self.active_version
        nonce = os.urandom(NONCE_BYTES)  # random 96-bit nonces: safe far beyond our volumes
        header = bytes([FORMAT]) + version.to_bytes(2, "big")
        sealed = AESGCM(self.keys[version]).encrypt(nonce, plaintext.encode(), header + context)
        return header + nonce + sealed

    def open(self, value: bytes, *, context: bytes) -> str:
        if len(value) < HEADER_BYTES + NONCE_BYTES + 16 or value[0] != FORMAT:
            raise UndecryptableValue("not a sealed value")
        header, nonce = value[:HEADER_BYTES], value[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        key = self.keys.get(version_of(value))
        if key is None:
            raise UndecryptableValue(f"no data key with version {version_of(value)}")
        try:
            plain = AESGCM(key).decrypt(
                nonce, value[HEADER_BYTES + NONCE_BYTES :], header + context
            )
        except InvalidTag as exc:
            raise UndecryptableValue("the value does not authenticate") from exc
        return plain.decode()

    def seal_optional(self, plaintext: str | None, *, context: bytes) -> bytes | None:
        return None if plaintext is None else self.seal(plaintext, context=context)

    def open_optional(self, value: bytes | None, *, context: bytes) -> str | None:
        return None if value is None else self.open(value, context=context)


def version_of(value: bytes) -> int:
    return int.from_bytes(value[1:HEADER_BYTES], "big")


def normalise_email(email: str) -> str:
    """The form an address is compared in: NFKC, trimmed, lower-cased."""
    return unicodedata.normalize("NFKC", email).strip().lower()


@dataclass(frozen=True, slots=True)
class BlindIndex:
    """HMAC-SHA256 of a normalised email: unique and searchable, but a dump of the table
    cannot be reversed by hashing a list of known addresses without the key."""

    key: bytes

    def email(self, email: str) -> bytes:
        return hmac.new(self.key, normalise_email(email).encode(), hashlib.sha256).digest()
