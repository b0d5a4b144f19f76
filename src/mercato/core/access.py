"""Access rules: every route declares exactly one, and a test walks the app to prove it.

Rules (and every other dependency) are `async def`: FastAPI runs plain `def` dependencies
in a thread pool, which costs more than the whole rest of a cached read.

Until the identity context lands, "admin" means the configured admin API key sent as
`Authorization: Bearer <key>`. Identity will replace `require_admin` with real principals
and permissions; routes do not change.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi import Request

from mercato.core.config import Settings
from mercato.core.errors import Unauthenticated

ACCESS_RULE_ATTR = "__access_rule__"


def _rule(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(dependency: Callable[..., Any]) -> Callable[..., Any]:
        setattr(dependency, ACCESS_RULE_ATTR, name)
        return dependency

    return mark


@_rule("public")
async def public() -> None:
    """Anyone may call this route."""


def presented_admin_key(request: Request) -> bool:
    header = request.headers.get("authorization")
    if not header or not header.lower().startswith("bearer "):
        return False
    settings: Settings = request.app.state.settings
    expected = settings.admin_api_key
    if expected is None:
        return False
    # Constant-time comparison: the key must not leak one byte at a time through timing.
    return hmac.compare_digest(header[7:].strip().encode(), expected.get_secret_value().encode())


@_rule("admin")
async def require_admin(request: Request) -> None:
    """Only an administrator may call this route."""
    if not presented_admin_key(request):
        raise Unauthenticated("An admin credential is required (Authorization: Bearer <key>).")


@_rule("metrics")
async def metrics_access(request: Request) -> None:
    """Prometheus scrapes: public when configured so, otherwise the admin credential."""
    settings: Settings = request.app.state.settings
    if not settings.metrics_public:
        await require_admin(request)


def access_rule_of(dependency: Callable[..., Any]) -> str | None:
    return getattr(dependency, ACCESS_RULE_ATTR, None)
