"""Recording events: the one way a use case says that something happened."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from mercato.core.database import Executor, WriteBatch
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
    return await repository.insert_outbox(db, drafts, trace_context=_trace_context())


def add_events(writes: WriteBatch, drafts: Sequence[EventDraft]) -> None:
    """`record_events` as part of a batch of writes: the events go into the outbox when the
    caller sends the batch, in its transaction."""
    if drafts:
        args = repository.outbox_rows(drafts, trace_context=_trace_context())
        writes.add(repository.OUTBOX_ROWS, *args)


def _trace_context() -> dict[str, Any]:
    request_id = request_id_var.get()
    return {"request_id": request_id} if request_id else {}


async def read_events(
    db: Executor, *, after: int, limit: int, up_to: int | None = None
) -> list[dict[str, Any]]:
    """Logged events after `after`, in position order, as plain JSON-ready dicts."""
    rows = await repository.read_log(db, after=after, limit=limit, up_to=up_to)
    return [repository.event_json(row) for row in rows]


async def last_position(db: Executor) -> int:
    last, _ = await repository.positions(db)
    return last


async def oldest_retained_position(db: Executor) -> int:
    """The first position still in the log (1 until retention prunes anything)."""
    return await repository.oldest_retained(db)
