"""The security audit log: who did what to whom, from where, and when.

Entries are written in the same transaction as the change they describe, except for
failures (a refused login changes nothing), which are written in a transaction of their
own. The table refuses UPDATE and DELETE (a trigger), so an entry, once written, stays.
No entry carries a secret or personal data beyond the caller's address and user agent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from mercato.core.database import Executor
from mercato.identity import audit_repository

MAX_USER_AGENT = 300


@dataclass(frozen=True, slots=True)
class RequestMeta:
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


SYSTEM = RequestMeta()  # CLI commands and jobs


async def record(
    conn: Executor,
    action: str,
    *,
    meta: RequestMeta,
    actor_id: uuid.UUID | None = None,
    subject_id: uuid.UUID | None = None,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> None:
    await audit_repository.insert_audit(
        conn,
        {
            "action": action,
            "outcome": outcome,
            "actor_id": actor_id,
            "subject_id": subject_id,
            "ip": meta.ip,
            "user_agent": (meta.user_agent or "")[:MAX_USER_AGENT] or None,
            "request_id": meta.request_id,
            "details": details or {},
        },
    )


def entry_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": row["at"].isoformat(),
        "action": row["action"],
        "outcome": row["outcome"],
        "actor_id": str(row["actor_id"]) if row["actor_id"] else None,
        "subject_id": str(row["subject_id"]) if row["subject_id"] else None,
        "ip": row["ip"],
        "user_agent": row["user_agent"],
        "request_id": row["request_id"],
        "details": row["details"],
    }
