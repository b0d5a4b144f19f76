"""Identity's background work: erasing deleted accounts, and re-sealing under a new key.

Both walk rows in small batches, each in its own short transaction, and skip rows another
instance holds (`SKIP LOCKED`): they run beside live traffic without blocking it, and
several instances may run them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import structlog

from mercato.core.crypto import DataKeyRing, version_of
from mercato.core.database import Database, Executor
from mercato.identity import audit, repository, signing_key_repository
from mercato.identity.accounts import open_fields, seal_fields
from mercato.identity.audit import SYSTEM
from mercato.identity.runtime import IdentityRuntime
from mercato.identity.tokens import signing_key_context

log = structlog.get_logger("mercato.identity.jobs")
BATCH = 500


async def erase_deleted_accounts(db: Database, *, grace: timedelta, batch: int = BATCH) -> int:
    """Remove the personal data of accounts deleted more than `grace` ago."""
    cutoff = datetime.now(UTC) - grace
    erased = 0
    while True:
        async with db.transaction() as conn:
            rows = await repository.users_due_for_erasure(conn, deleted_before=cutoff, limit=batch)
            ids = [row["id"] for row in rows]
            if ids:
                await repository.erase_users(conn, ids)
                for user_id in ids:
                    await audit.record(conn, "user.erased", meta=SYSTEM, subject_id=user_id)
        erased += len(ids)
        if len(ids) < batch:
            return erased


async def reseal_personal_data(runtime: IdentityRuntime, *, batch: int = BATCH) -> int:
    """Re-encrypt every row sealed under an older data key with the newest one.

    Rotation runbook: add the new key to MERCATO_DATA_KEYS (keeping the old ones), roll
    the instances, run `mercato keys rotate-data`, and only then drop the old key."""
    ring = runtime.ring
    resealed = 0
    # First pass: skip rows that requests hold, so the job never queues behind traffic.
    # Second pass: wait for what was skipped, so no row is left under the old key.
    for skip_locked in (True, False):
        while True:
            async with runtime.db.transaction() as conn:
                rows = await repository.users_sealed_under_old_keys(
                    conn, active=ring.active_version, limit=batch, skip_locked=skip_locked
                )
                for row in rows:
                    sealed = seal_fields(runtime, row["id"], open_fields(runtime, row))
                    await repository.reseal_user(conn, row["id"], sealed)
            resealed += len(rows)
            if len(rows) < batch:
                break
    async with runtime.db.transaction() as conn:
        resealed += await _reseal_signing_keys(conn, ring)
        await audit.record(
            conn,
            "data_keys.rotated",
            meta=SYSTEM,
            details={"active_version": ring.active_version, "resealed": resealed},
        )
    return resealed


async def _reseal_signing_keys(conn: Executor, ring: DataKeyRing) -> int:
    count = 0
    for row in await signing_key_repository.all_signing_keys(conn):
        context = signing_key_context(row["kid"])
        if version_of(row["private_key"]) == ring.active_version:
            continue
        private = ring.open(row["private_key"], context=context)
        await signing_key_repository.reseal_signing_key(
            conn, row["kid"], ring.seal(private, context=context)
        )
        count += 1
    return count


async def prune_spent_tokens(db: Database, *, older_than: timedelta = timedelta(days=1)) -> int:
    async with db.transaction() as conn:
        return await repository.prune_spent_tokens(conn, older_than=older_than)


class ErasureJob:
    """Every `interval`: erases the accounts past their grace period and deletes refresh
    and one-time tokens that ended more than a day ago."""

    def __init__(self, db: Database, *, grace: timedelta, interval: timedelta) -> None:
        self._db = db
        self._grace = grace
        self._interval = interval.total_seconds()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                erased = await erase_deleted_accounts(self._db, grace=self._grace)
                pruned = await prune_spent_tokens(self._db)
                if erased or pruned:
                    log.info("identity_cleanup", accounts_erased=erased, tokens_pruned=pruned)
            except Exception:
                log.exception("account_erasure_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
