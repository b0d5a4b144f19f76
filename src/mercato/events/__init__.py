"""The event backbone: the transactional outbox, the relay and the ordered event log.

Other contexts record events with `record_events(conn, [EventDraft(...)])` inside their
own transaction (`add_events(writes, …)` within a batch of writes; set-based writers: `OUTBOX_INSERT SELECT …` in their own statement).
Readers of the log (the real-time streams) use `read_events` and the
positions; `NOTIFY_CHANNEL` carries the newest position after each relay batch.
"""

from mercato.events.consumers import Consumer
from mercato.events.drafts import EventDraft
from mercato.events.repository import NOTIFY_CHANNEL, OUTBOX_INSERT
from mercato.events.service import (
    add_events,
    last_position,
    oldest_retained_position,
    read_events,
    record_events,
)

__all__ = [
    "NOTIFY_CHANNEL",
    "OUTBOX_INSERT",
    "Consumer",
    "EventDraft",
    "add_events",
    "last_position",
    "oldest_retained_position",
    "read_events",
    "record_events",
]
