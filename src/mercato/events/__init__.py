"""The event backbone: the transactional outbox, the relay and the ordered event log.

Other contexts record events with `record_events(conn, [EventDraft(...)])` inside their
own transaction; that is all they need from here.
"""

from mercato.events.drafts import EventDraft
from mercato.events.service import record_events

__all__ = ["EventDraft", "record_events"]
