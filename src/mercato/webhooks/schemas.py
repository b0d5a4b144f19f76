"""The webhooks context's API shapes. Inputs forbid unknown fields."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_PAGE_SIZE = 100
MAX_OVERLAP_MINUTES = 10_080  # a week

Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
EventType = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
EventTypes = Annotated[
    list[EventType],
    Field(min_length=1, max_length=100, description='Known event types, or "*" for all.'),
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
Cursor = Annotated[str, StringConstraints(max_length=512)]
DeliveryStatus = Literal["succeeded", "failed", "dead"]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubscriptionCreate(Input):
    url: Url
    event_types: EventTypes
    description: Description | None = None
    active: bool = True


class SubscriptionUpdate(Input):
    """Only the fields sent change; `description: null` clears it."""

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    active: bool | None = Field(
        default=None, description="true resumes a paused or disabled subscription at once."
    )

    @model_validator(mode="after")
    def _no_null_for_required(self) -> SubscriptionUpdate:
        for name in ("url", "event_types", "active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class SecretRotation(Input):
    overlap_minutes: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_OVERLAP_MINUTES,
            description="How long the previous secret keeps signing too (0: not at all).",
        ),
    ] = 1_440


class SubscriptionReplay(Input):
    from_position: Annotated[
        int, Field(ge=1, description="Deliver every wanted event from this log position on.")
    ]


class SubscriptionListQuery(Input):
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = 20
    cursor: Cursor | None = None


class DeliveryListQuery(Input):
    subscription_id: uuid.UUID | None = None
    status: DeliveryStatus | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = 20
    cursor: Cursor | None = None


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str | None
    active: bool
    paused_at: datetime | None = Field(description="Set when retries ran out.")
    failures: int = Field(description="Failed attempts at the event it is stuck on.")
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_position: int = Field(description="Every event up to here is done.")
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SubscriptionWithSecret(SubscriptionOut):
    secret: str = Field(description="Shown in this answer only.")


class SecretOut(BaseModel):
    id: uuid.UUID
    secret: str = Field(description="Shown in this answer only.")
    previous_secret_expires_at: datetime | None


class DeliveryOut(BaseModel):
    id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    position: int
    attempt: int
    replay: bool
    status: DeliveryStatus
    status_code: int | None
    error: str | None
    duration_ms: int
    response_excerpt: str | None
    attempted_at: datetime


class PageMeta(BaseModel):
    limit: int
    count: int
    next_cursor: str | None


class SubscriptionEnvelope(BaseModel):
    data: SubscriptionOut


class SubscriptionCreatedEnvelope(BaseModel):
    data: SubscriptionWithSecret


class SecretEnvelope(BaseModel):
    data: SecretOut


class SubscriptionPage(BaseModel):
    data: list[SubscriptionOut]
    meta: PageMeta


class DeliveryEnvelope(BaseModel):
    data: DeliveryOut


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    meta: PageMeta
