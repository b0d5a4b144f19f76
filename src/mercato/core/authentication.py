"""Authentication at the edge: resolve the bearer credential once per request.

The principal is resolved before rate limiting (which counts authenticated callers per
account) and before routing (whose access rules read it). A credential that does not
authenticate is remembered rather than answered at once: a route that reads the principal
answers 401, and the rate limiter counts the attempt against the caller's address.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from mercato.core.errors import Unauthenticated
from mercato.core.security import (
    AUTH_FAILURE_KEY,
    PRINCIPAL_KEY,
    Authenticator,
    bearer_credential,
)


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            credential = bearer_credential(scope)
            if credential is not None:
                state = scope.setdefault("state", {})
                authenticator: Authenticator = scope["app"].state.authenticator
                try:
                    state[PRINCIPAL_KEY] = await authenticator.authenticate(credential)
                except Unauthenticated as failure:
                    state[AUTH_FAILURE_KEY] = failure
        await self.app(scope, receive, send)
