"""Deny by default: every route declares an access rule, and no write route is open."""

from __future__ import annotations

import re
import uuid

import httpx
from fastapi.routing import APIRoute, APIWebSocketRoute

from mercato.app import create_app
from mercato.core.access import access_rule_of, guards_of, metrics_access, require_admin
from tests.conftest import make_settings

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _routes() -> list[APIRoute]:
    app = create_app(make_settings())
    return [route for route in app.routes if isinstance(route, APIRoute)]


def test_every_route_declares_an_access_rule() -> None:
    routes = _routes()
    assert len(routes) > 10
    missing = [f"{sorted(r.methods)} {r.path}" for r in routes if access_rule_of(r) is None]
    assert missing == [], f"routes without an access rule: {missing}"


def test_every_restricting_rule_is_enforced_by_its_guard() -> None:
    guards = {"public": [], "admin": [require_admin], "metrics": [metrics_access]}
    for route in _routes():
        assert guards_of(route) == guards[access_rule_of(route) or ""], route.path


def test_every_write_route_requires_an_admin() -> None:
    open_writes = [
        f"{sorted(r.methods)} {r.path}"
        for r in _routes()
        if r.methods & WRITE_METHODS and access_rule_of(r) != "admin"
    ]
    assert open_writes == []


async def test_every_write_route_refuses_a_caller_without_credentials(
    client: httpx.AsyncClient,
) -> None:
    checked = 0
    for route in _routes():
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
