"""Who is calling, and what they may do: the principal every access rule reads.

The identity context authenticates a request (a signed access token or an API key) and
the authentication middleware leaves the result in the request scope. Contexts only
ever see a `Principal`: its subject and its permissions, each `resource:action`.

Every permission the product knows is listed here, so that roles can only be made of
real permissions and a typo in a route's rule fails at import time, not in production.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal, Protocol

from starlette.types import Scope

from mercato.core.errors import DomainError, Unauthenticated

PERMISSIONS: dict[str, str] = {
    "products:write": "Create, change, delete and restore products; see inactive ones.",
    "categories:write": "Create, change, move and delete categories.",
    "orders:read:any": "Read every customer's orders.",
    "orders:write:any": "Change every customer's orders (fulfil, cancel, refund).",
    "users:read": "Read user accounts.",
    "users:manage": "Change, disable and delete user accounts; assign roles.",
    "roles:manage": "Create, change and delete custom roles.",
    "api_keys:manage": "Create, list and revoke API keys.",
    "audit:read": "Read the security audit log.",
    "events:read": "Read the event log.",
    "metrics:read": "Scrape Prometheus metrics.",
    "webhooks:manage": "Manage webhook subscriptions, read and replay their deliveries.",
    "imports:manage": "Import product feeds, follow import jobs and read their rejects.",
    "stock:reserve": "Reserve, confirm and release stock for orders (the order service's key).",
}

PrincipalKind = Literal["user", "api_key"]


@dataclass(frozen=True, slots=True)
class Principal:
    subject_id: uuid.UUID  # the user (for an API key: its owner)
    kind: PrincipalKind
    permissions: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    credential_id: str = ""  # the token's jti or the API key's id, for audit entries

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def owns(self, subject_id: uuid.UUID) -> bool:
        return self.kind == "user" and self.subject_id == subject_id


class Authenticator(Protocol):
    async def authenticate(self, credential: str) -> Principal:
        """The principal behind a bearer credential; raises `Unauthenticated` if none."""
        ...


def check_permission(permission: str) -> str:
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    return permission


def bearer_credential(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            return credential.strip() if scheme.lower() == "bearer" else ""
    return None


PRINCIPAL_KEY = "principal"
AUTH_FAILURE_KEY = "auth_failure"


def principal_in(scope: Scope) -> Principal | None:
    """The authenticated principal of a request, None when it presented no credential.

    A credential that failed to authenticate raises here, so that any route reading the
    principal answers 401 rather than silently treating the caller as anonymous."""
    state = scope.get("state") or {}
    failure: DomainError | None = state.get(AUTH_FAILURE_KEY)
    if failure is not None:
        raise failure
    principal: Principal | None = state.get(PRINCIPAL_KEY)
    return principal


def require_principal(scope: Scope) -> Principal:
    principal = principal_in(scope)
    if principal is None:
        raise Unauthenticated()
    return principal
