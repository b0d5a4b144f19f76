"""The ingest context: product feeds imported as jobs (parse → map → validate → unify →
load), with every rejected row kept and every change published as catalog events.

Other contexts use only what this facade exports. Its tables live in the `ingest` schema.
"""

from mercato.ingest.events import EVENT_PAYLOADS
from mercato.ingest.jobs import ImportRunner

__all__ = ["EVENT_PAYLOADS", "ImportRunner"]
