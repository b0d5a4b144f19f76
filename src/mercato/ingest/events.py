"""The events an import publishes: its progress, and how it ended. Counts only, no rows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mercato.events import EventDraft

IMPORT_PROGRESSED = "import.progressed"
IMPORT_SUCCEEDED = "import.succeeded"
IMPORT_FAILED = "import.failed"


class ImportProgress(BaseModel):
    id: str
    source: str
    status: str
    phase: str
    dry_run: bool
    rows_read: int
    rows_rejected: int
    rows_unchanged: int
    planned_creates: int
    planned_updates: int
    products_created: int
    products_updated: int
    categories_created: int
    error_code: str | None = None


EVENT_PAYLOADS: dict[tuple[str, int], type[BaseModel]] = {
    (IMPORT_PROGRESSED, 1): ImportProgress,
    (IMPORT_SUCCEEDED, 1): ImportProgress,
    (IMPORT_FAILED, 1): ImportProgress,
}


def job_event(event_type: str, job: Any) -> EventDraft:
    """`job` is a row of ingest.jobs; its version orders the job's events."""
    payload = ImportProgress(
        id=str(job["id"]),
        **{name: job[name] for name in ImportProgress.model_fields if name != "id"},
    )
    return EventDraft(
        type=event_type,
        aggregate_type="import",
        aggregate_id=str(job["id"]),
        aggregate_version=job["version"],
        payload=payload.model_dump(),
    )
