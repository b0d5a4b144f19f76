"""Deny by default: every route declares an access rule, and no write route is open."""

from __future__ import annotations

import re
import uuid

import httpx
from fastapi.routing import APIRoute, APIWebSocketRoute

from mercato.app import create_app
from mercato.core.access import (
    AUTHENTICATED,
    access_rule_of,
    guards_of,
    metrics_access,
    requires,
)
from mercato.core.security import PERMISSIONS
from tests.factories import TestUser
from tests.settings import make_settings

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _routes() -> list[APIRoute]:
    app = create_app(make_settings())
    return [route for route in app.routes if isinstance(route, APIRoute)]


def test_every_route_declares_an_access_rule() -> None:
    routes = _routes()
    assert len(routes) > 10
    missing = [f"{sorted(r.methods)} {r.path}" for r in routes if access_rule_of(r) is None]
    assert missing == [], f"routes without an access rule: {missing}"


# Writes anyone may call: each is its own credential check (a password, a one-time token,
# a refresh token or a webhook signature) and is rate-limited per address.
PUBLIC_WRITES = {
    "/api/v1/auth/register",
    "/api/v1/auth/verify-email",
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/auth/password/forgot",
    "/api/v1/auth/password/reset",
    # The payment provider's events: accepted only with a valid Stripe-Signature.
    "/api/v1/payments/webhook",
}


def test_every_restricting_rule_is_enforced_by_its_guard() -> None:
    guards: dict[str, list[object]] = {
        "public": [],
        "authenticated": [AUTHENTICATED.guard],
        "metrics": [metrics_access],
    }
    guards.update({requires(p).name: [requires(p).guard] for p in PERMISSIONS})
    for route in _routes():
        assert guards_of(route) == guards[access_rule_of(route) or ""], route.path


def test_no_write_route_is_public_unless_listed() -> None:
    open_writes = {
        r.path for r in _routes() if r.methods & WRITE_METHODS and access_rule_of(r) == "public"
    }
    assert open_writes == PUBLIC_WRITES


async def test_every_write_route_refuses_a_caller_without_credentials(
    client: httpx.AsyncClient,
) -> None:
    checked = 0
    for route in _routes():
        if route.path in PUBLIC_WRITES:
            continue
        for method in route.methods & WRITE_METHODS:
            path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), route.path)
            for headers in (
                {},
                {"Authorization": "Bearer wrong-key"},
                {"Authorization": "Basic abc"},
            ):
                response = await client.request(
                    method, path, json={}, headers={**headers, "If-Match": "*"}
                )
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.json()["error"]["code"] == "UNAUTHENTICATED"
                assert response.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 7


async def test_a_customer_is_refused_every_staff_route(
    client: httpx.AsyncClient, customer: TestUser
) -> None:
    """Function-level authorization: each route that needs a permission answers 403 to a
    signed-in customer, whatever the method and body."""
    checked = 0
    for route in _routes():
        rule = access_rule_of(route) or ""
        if not rule.startswith("permission:"):
            continue
        for method in route.methods:
            path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), route.path)
            response = await client.request(
                method, path, json={}, headers={**customer.headers, "If-Match": "*"}
            )
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["code"] == "FORBIDDEN"
            checked += 1
    assert checked >= 20


async def test_metrics_need_the_admin_credential(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    assert (await client.get("/metrics")).status_code == 401
    response = await client.get("/metrics", headers=admin)
    assert response.status_code == 200


def test_every_websocket_route_declares_an_access_rule() -> None:
    app = create_app(make_settings())
    sockets = [route for route in app.routes if isinstance(route, APIWebSocketRoute)]
    assert sockets
    assert [r.path for r in sockets if access_rule_of(r) is None] == []
