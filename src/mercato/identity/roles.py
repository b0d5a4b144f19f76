"""Roles and permissions: the rules, as plain functions.

Built-in roles are rows (so assignments can reference them) whose permissions are defined
here, in code: a permission added to the product reaches `admin` with the release that
adds it, without a data migration. Custom roles keep their permissions in the table.
"""

from __future__ import annotations

from collections.abc import Iterable

from mercato.core.errors import ValidationFailed
from mercato.core.security import PERMISSIONS

CUSTOMER = "customer"
STAFF = "staff"
ADMIN = "admin"

BUILTIN_PERMISSIONS: dict[str, frozenset[str]] = {
    CUSTOMER: frozenset(),
    STAFF: frozenset(
        {
            "products:write",
            "categories:write",
            "orders:read:any",
            "orders:write:any",
            "users:read",
            "events:read",
        }
    ),
    ADMIN: frozenset(PERMISSIONS),
}


def effective_permissions(roles: Iterable[str], custom: Iterable[str]) -> frozenset[str]:
    """The union of the built-in roles' permissions and the custom roles' stored ones."""
    granted: set[str] = set(custom)
    for role in roles:
        granted |= BUILTIN_PERMISSIONS.get(role, frozenset())
    return frozenset(granted & PERMISSIONS.keys())


def validate_permissions(permissions: Iterable[str]) -> list[str]:
    chosen = sorted(set(permissions))
    unknown = [p for p in chosen if p not in PERMISSIONS]
    if unknown:
        raise ValidationFailed(
            details=[
                {"field": "body.permissions", "message": f"unknown permission {p!r}"}
                for p in unknown
            ]
        )
    return chosen


def role_permissions(name: str, stored: Iterable[str]) -> frozenset[str]:
    return BUILTIN_PERMISSIONS.get(name, frozenset(stored))
