"""The identity context's API shapes. Inputs forbid unknown fields, so a caller can never
set their own id, role or verified flag by adding it to a body (mass assignment)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from mercato.identity.passwords import MAX_LENGTH

MAX_PAGE_SIZE = 100

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]  # E.164
# The length cap is checked before hashing: argon2 work must not grow with the input.
Password = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LENGTH)]
Token = Annotated[str, StringConstraints(min_length=16, max_length=200)]
RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,39}$")]
Permission = Annotated[str, StringConstraints(max_length=64)]
Email = Annotated[EmailStr, StringConstraints(max_length=254)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Address(Input):
    line1: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    line2: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    city: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    postal_code: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)] | None = (
        None
    )
    region: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class Registration(Input):
    email: Email
    password: Password
    first_name: Name
    last_name: Name
    phone: Phone | None = None


class Login(Input):
    email: Email
    password: Password


class RefreshRequest(Input):
    refresh_token: Token


class TokenInput(Input):
    token: Token


class ForgotPassword(Input):
    email: Email


class PasswordReset(Input):
    token: Token
    new_password: Password


class PasswordChange(Input):
    current_password: Password
    new_password: Password


class AccountDeletion(Input):
    password: Password


class ProfileUpdate(Input):
    first_name: Name | None = None
    last_name: Name | None = None
    phone: Phone | None = None
    address: Address | None = None

    def changes(self) -> dict[str, Any]:
        """Only the fields sent; `null` clears phone or address, never a name."""
        sent = self.model_dump(exclude_unset=True)
        for name in ("first_name", "last_name"):
            if name in sent and sent[name] is None:
                raise ValueError(f"{name} cannot be null")
        return sent


class RolesAssignment(Input):
    roles: Annotated[list[RoleName], Field(max_length=20)]


class RoleCreate(Input):
    name: RoleName
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    permissions: Annotated[list[Permission], Field(max_length=64)]


class RoleUpdate(Input):
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    permissions: Annotated[list[Permission], Field(max_length=64)] | None = None


class ApiKeyCreate(Input):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    scopes: Annotated[list[Permission], Field(min_length=1, max_length=64)]
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class UserListQuery(Input):
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = 50
    cursor: Annotated[str, StringConstraints(max_length=512)] | None = None


class AuditQuery(Input):
    action: Annotated[str, StringConstraints(max_length=64)] | None = None
    actor_id: uuid.UUID | None = None
    subject_id: uuid.UUID | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = 50
    cursor: Annotated[str, StringConstraints(max_length=512)] | None = None


# --- outputs ----------------------------------------------------------------------------


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    phone: str | None
    address: dict[str, Any] | None
    email_verified: bool
    roles: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


class TokenPair(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 (the scheme's name)
    expires_in: int
    refresh_token: str
    refresh_expires_at: datetime


class RoleOut(BaseModel):
    name: str
    description: str
    permissions: list[str]
    builtin: bool
    version: int
    created_at: datetime


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    prefix: str
    name: str
    scopes: list[str]
    owner_id: uuid.UUID
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret: shown once, never stored in clear.")


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    action: str
    outcome: str
    actor_id: uuid.UUID | None
    subject_id: uuid.UUID | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]


class Accepted(BaseModel):
    message: str


class PageMeta(BaseModel):
    limit: int
    count: int
    next_cursor: str | None


class UserEnvelope(BaseModel):
    data: UserOut


class UserPage(BaseModel):
    data: list[UserOut]
    meta: PageMeta


class TokenEnvelope(BaseModel):
    data: TokenPair


class RoleEnvelope(BaseModel):
    data: RoleOut


class RoleList(BaseModel):
    data: list[RoleOut]


class ApiKeyEnvelope(BaseModel):
    data: ApiKeyCreated


class ApiKeyList(BaseModel):
    data: list[ApiKeyOut]


class AuditPage(BaseModel):
    data: list[AuditEntryOut]
    meta: PageMeta


class AcceptedEnvelope(BaseModel):
    data: Accepted
