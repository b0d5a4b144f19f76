"""The queries of the append-only audit log (`identity.audit_log`)."""

from __future__ import annotations

from typing import Any

from mercato.core.database import Executor

AUDIT_COLUMNS = "id, at, action, outcome, actor_id, subject_id, ip, user_agent, request_id, details"


async def insert_audit(conn: Executor, entry: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO identity.audit_log (action, outcome, actor_id, subject_id, ip, user_agent,"
        " request_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        entry["action"],
        entry["outcome"],
        entry["actor_id"],
        entry["subject_id"],
        entry["ip"],
        entry["user_agent"],
        entry["request_id"],
        entry["details"],
    )


AUDIT_FILTERS = {
    "action": "action = ${}",
    "actor_id": "actor_id = ${}",
    "subject_id": "subject_id = ${}",
}


async def list_audit(
    conn: Executor, *, filters: dict[str, Any], before_id: int | None, limit: int
) -> Any:
    """Newest first; `filters` keys are chosen from AUDIT_FILTERS by the caller."""
    clauses: list[str] = []
    args: list[Any] = []
    for name, value in filters.items():
        args.append(value)
        clauses.append(AUDIT_FILTERS[name].format(len(args)))
    if before_id is not None:
        args.append(before_id)
        clauses.append(f"id < ${len(args)}")
    args.append(limit)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return await conn.fetch(
        f"SELECT {AUDIT_COLUMNS} FROM identity.audit_log{where} ORDER BY id DESC LIMIT ${len(args)}",
        *args,
    )
