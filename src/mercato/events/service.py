"""Recording events: the one way a use case says that something happened."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from mercato.core.database import Executor
from mercato.core.observability import request_id_var
from mercato.events import repository
from mercato.events.drafts import EventDraft


async def record_events(db: Executor, drafts: Sequence[EventDraft]) -> list[uuid.UUID]:
    """Write events to the outbox in the caller's transaction (never publish directly).

    If the transaction rolls back, the events vanish with the change they describe; if it
    commits, the relay will deliver them. Returns the new events' ids.
    """
    if not drafts:
        return []
    request_id = request_id_var.get()
    trace_context = {"request_id": request_id} if request_id else {}
    return await repository.insert_outbox(db, drafts, trace_context=trace_context)
