"""The events the identity context publishes.

Payloads carry no personal data: the event log is kept for days, copied to the broker and
readable by staff, and erasing an account must not leave its name behind in either.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from mercato.events import EventDraft

USER_REGISTERED = "user.registered"
USER_UPDATED = "user.updated"
USER_DELETED = "user.deleted"
ROLE_CHANGED = "role.changed"


class UserChanged(BaseModel):
    id: str
    email_verified: bool
    roles: list[str]
    version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class RolesChanged(BaseModel):
    user_id: str
    roles: list[str]
    previous_roles: list[str]
    changed_by: str | None


EVENT_PAYLOADS: dict[tuple[str, int], type[BaseModel]] = {
    (USER_REGISTERED, 1): UserChanged,
    (USER_UPDATED, 1): UserChanged,
    (USER_DELETED, 1): UserChanged,
    (ROLE_CHANGED, 1): RolesChanged,
}


def user_event(event_type: str, row: Any) -> EventDraft:
    payload = {
        "id": str(row["id"]),
        "email_verified": row["email_verified_at"] is not None,
        "roles": list(row["roles"]),
        "version": row["version"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "deleted_at": row["deleted_at"].isoformat() if row["deleted_at"] else None,
    }
    return EventDraft(
        type=event_type,
        aggregate_type="user",
        aggregate_id=str(row["id"]),
        aggregate_version=row["version"],
        payload=payload,
    )


def roles_changed(
    row: Any, *, previous: list[str], roles: list[str], changed_by: str | None
) -> EventDraft:
    return EventDraft(
        type=ROLE_CHANGED,
        aggregate_type="user",
        aggregate_id=str(row["id"]),
        aggregate_version=row["version"],
        payload={
            "user_id": str(row["id"]),
            "roles": roles,
            "previous_roles": previous,
            "changed_by": changed_by,
        },
    )
