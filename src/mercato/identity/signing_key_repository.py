"""The queries of the JWT key set (`identity.signing_keys`); private keys arrive sealed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mercato.core.database import Executor


async def insert_signing_key(
    conn: Executor, *, kid: str, algorithm: str, jwk: dict[str, Any], sealed: bytes
) -> None:
    await conn.execute(
        "INSERT INTO identity.signing_keys (kid, algorithm, public_jwk, private_key)"
        " VALUES ($1, $2, $3, $4)",
        kid,
        algorithm,
        jwk,
        sealed,
    )


async def active_signing_kid(conn: Executor) -> str | None:
    kid: str | None = await conn.fetchval(
        "SELECT kid FROM identity.signing_keys WHERE retired_at IS NULL"
        " ORDER BY created_at DESC LIMIT 1"
    )
    return kid


async def retire_signing_keys(conn: Executor, *, verify_for: timedelta) -> None:
    await conn.execute(
        "UPDATE identity.signing_keys SET retired_at = now(), expires_at = now() + $1::interval"
        " WHERE retired_at IS NULL",
        verify_for,
    )


async def delete_expired_signing_keys(conn: Executor) -> None:
    await conn.execute("DELETE FROM identity.signing_keys WHERE expires_at < now()")


async def usable_signing_keys(conn: Executor) -> Any:
    """Keys that still verify, the signing one first."""
    return await conn.fetch(
        "SELECT kid, public_jwk, private_key, retired_at"
        " FROM identity.signing_keys WHERE expires_at IS NULL OR expires_at > now()"
        " ORDER BY retired_at IS NOT NULL, created_at DESC"
    )


async def all_signing_keys(conn: Executor) -> Any:
    return await conn.fetch("SELECT kid, private_key FROM identity.signing_keys FOR UPDATE")


async def reseal_signing_key(conn: Executor, kid: str, sealed: bytes) -> None:
    await conn.execute(
        "UPDATE identity.signing_keys SET private_key = $2 WHERE kid = $1", kid, sealed
    )
