"""Password hashing (argon2id) and the password policy.

The hasher's cost comes from settings (OWASP's argon2id baseline by default: 19 MiB,
two passes, one lane). A stored hash made under older parameters still verifies and is
re-hashed at the next successful login, so raising the cost needs no migration.

`verify_or_burn` is the only way a login checks a password: when the account does not
exist it verifies against a dummy hash of the same cost, so an attacker timing the answer
cannot tell "no such user" from "wrong password".
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

MIN_LENGTH = 10
MAX_LENGTH = 128  # argon2 accepts more, but no one types it and it invites hashing DoS
MIN_STRENGTH = 3  # zxcvbn's "safely unguessable" band: rejects common and patterned passwords
STRENGTH_CHECKED_CHARS = 72  # zxcvbn's own limit; longer passwords are judged by their head


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    new_hash: str | None = None  # set when the stored hash should be replaced


class Passwords:
    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    # argon2 holds the GIL-free C code for tens of milliseconds: run it in a thread so one
    # login does not stall every other request on the event loop.
    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str, password: str) -> Verification:
        return await asyncio.to_thread(self._verify, stored_hash, password)

    async def verify_or_burn(self, stored_hash: str | None, password: str) -> Verification:
        if stored_hash is None:
            await asyncio.to_thread(self._verify, self._dummy_hash, password)
            return Verification(ok=False)
        return await self.verify(stored_hash, password)

    def _verify(self, stored_hash: str, password: str) -> Verification:
        try:
            self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return Verification(ok=False)
        if self._hasher.check_needs_rehash(stored_hash):
            return Verification(ok=True, new_hash=self._hasher.hash(password))
        return Verification(ok=True)


def password_problems(password: str, *, personal: list[str]) -> list[str]:
    """Why a new password is refused (empty when it is acceptable). `personal` holds the
    user's own email and names, which make a password easy to guess for anyone who knows
    them."""
    if len(password) < MIN_LENGTH:
        return [f"must be at least {MIN_LENGTH} characters"]
    if len(password) > MAX_LENGTH:
        return [f"must be at most {MAX_LENGTH} characters"]
    if _built_from(password, personal):
        return ["is too weak: it is built from your name or email address"]
    verdict = zxcvbn(password[:STRENGTH_CHECKED_CHARS], user_inputs=[p for p in personal if p])
    if verdict["score"] < MIN_STRENGTH:
        warning = verdict["feedback"].get("warning") or "it is too easy to guess"
        return [f"is too weak: {warning.rstrip('.')}"]
    return []


def _built_from(password: str, personal: list[str]) -> bool:
    """True when little is left of the password once the user's own words are taken out
    (zxcvbn misses "grace-hopper" for Grace Hopper: it scores the joint as random)."""
    words: set[str] = set()
    for item in personal:
        words.update(w for w in re.split(r"[^a-z0-9]+", item.lower()) if len(w) >= 3)
    rest = re.sub(r"[^a-z0-9]+", "", password.lower())
    for word in sorted(words, key=len, reverse=True):
        rest = rest.replace(word, "")
    return len(rest) < 6
