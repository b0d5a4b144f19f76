"""The ingest context's API shapes (the upload itself is a multipart form, see api.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_PAGE_SIZE = 100
MAX_REJECTS_PAGE_SIZE = 1_000
Cursor = Annotated[str, StringConstraints(max_length=512)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobListQuery(Input):
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = 20
    cursor: Cursor | None = None


class RejectListQuery(Input):
    limit: Annotated[int, Field(ge=1, le=MAX_REJECTS_PAGE_SIZE)] = 100
    cursor: Cursor | None = None


class JobCounts(BaseModel):
    rows_read: int
    rows_rejected: int
    rows_unchanged: int
    planned_creates: int
    planned_updates: int
    products_created: int
    products_updated: int
    categories_created: int
    loaded_through: int = Field(description="Products planned and loaded so far (in order).")


class JobError(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    id: uuid.UUID
    source: str
    file_name: str
    file_size: int
    file_sha256: str
    format: Literal["csv", "json", "ndjson"]
    dry_run: bool
    status: Literal["queued", "running", "succeeded", "failed"]
    phase: Literal["staging", "unifying", "loading", "done"]
    counts: JobCounts
    error: JobError | None
    mapping: dict[str, object]
    created_by: uuid.UUID | None
    version: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RejectOut(BaseModel):
    row_number: int
    seq: int
    field: str
    rule: str
    value: str | None
    message: str


class PageMeta(BaseModel):
    limit: int
    count: int
    next_cursor: str | None


class JobEnvelope(BaseModel):
    data: JobOut


class JobPage(BaseModel):
    data: list[JobOut]
    meta: PageMeta


class RejectPage(BaseModel):
    data: list[RejectOut]
    meta: PageMeta
