"""The subscriptions admin API (`webhooks:manage`), on the rolled-back test connection."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from tests.database import SingleConnectionDatabase
from tests.factories import TestUser
from tests.settings import make_settings
from tests.webhooks.conftest import API

from mercato.app import create_app
from mercato.core.crypto import DataKeyRing, version_of
from mercato.webhooks import repository, service

HOOK = "http://127.0.0.1:9/hooks"  # loopback is allow-listed in tests; nothing is sent


async def subscribe(client: httpx.AsyncClient, admin: dict[str, str], **body: Any) -> Any:
    return await client.post(
        f"{API}/subscriptions",
        json={"url": HOOK, "event_types": ["order.paid"], **body},
        headers=admin,
    )


async def test_only_holders_of_webhooks_manage_reach_the_routes(
    client: httpx.AsyncClient, customer: TestUser
) -> None:
    some_id = uuid.uuid4()
    calls = [
        ("POST", "/subscriptions"),
        ("GET", "/subscriptions"),
        ("GET", f"/subscriptions/{some_id}"),
        ("PATCH", f"/subscriptions/{some_id}"),
        ("DELETE", f"/subscriptions/{some_id}"),
        ("POST", f"/subscriptions/{some_id}/rotate-secret"),
        ("POST", f"/subscriptions/{some_id}/replay"),
        ("GET", "/deliveries"),
        ("POST", f"/deliveries/{some_id}/replay"),
    ]
    for method, path in calls:
        anonymous = await client.request(method, API + path, json={})
        assert anonymous.status_code == 401, (method, path)
        refused = await client.request(method, API + path, json={}, headers=customer.headers)
        assert refused.status_code == 403, (method, path, refused.text)


async def test_the_secret_is_shown_once_and_stored_sealed(
    client: httpx.AsyncClient, admin: dict[str, str], conn: asyncpg.Connection
) -> None:
    response = await subscribe(client, admin, description="ERP", event_types=["*"])
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()["data"]
    assert response.headers["location"] == f"{API}/subscriptions/{created['id']}"
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert created["event_types"] == ["*"]
    assert created["active"] is True
    assert created["delivered_position"] >= 0

    for path in (f"/subscriptions/{created['id']}", "/subscriptions"):
        answer = await client.get(API + path, headers=admin)
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "no-store"
        assert secret not in answer.text
        assert "secret" not in orjson.loads(answer.content)["data"]
    sealed = await conn.fetchval(
        "SELECT secret FROM webhooks.subscriptions WHERE id = $1", uuid.UUID(created["id"])
    )
    assert secret.encode() not in sealed
    assert base64.b64decode(secret.removeprefix("whsec_")) not in sealed


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"event_types": []}, "VALIDATION_FAILED"),
        ({"event_types": ["order.paid", "order.teleported"]}, "UNKNOWN_EVENT_TYPE"),
        ({"url": "http://10.0.0.7/hooks"}, "WEBHOOK_URL_REFUSED"),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "WEBHOOK_URL_REFUSED"),
        ({"url": "http://[fd12:3456::1]/hooks"}, "WEBHOOK_URL_REFUSED"),
        ({"url": "http://[::ffff:192.168.1.1]/hooks"}, "WEBHOOK_URL_REFUSED"),
        ({"url": "ftp://example.com/hooks"}, "WEBHOOK_URL_REFUSED"),
        ({"url": "http://user:pw@127.0.0.1/hooks"}, "WEBHOOK_URL_REFUSED"),
        ({"secret": "whsec_mine"}, "VALIDATION_FAILED"),
    ],
)
async def test_a_subscription_is_refused_for_bad_urls_and_unknown_types(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any], code: str
) -> None:
    response = await subscribe(client, admin, **body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


@pytest.fixture
async def strict_client(db: SingleConnectionDatabase) -> AsyncIterator[httpx.AsyncClient]:
    """The app as production runs it: nothing allow-listed, loopback refused."""
    app = create_app(make_settings(webhook_allowed_networks=[]), database=db)  # type: ignore[arg-type]
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_a_name_that_resolves_to_loopback_is_refused_unless_allow_listed(
    strict_client: httpx.AsyncClient, admin_user: TestUser
) -> None:
    for url in ("http://localhost:8080/hooks", "http://127.0.0.1/hooks", "http://[::1]/hooks"):
        response = await subscribe(strict_client, admin_user.headers, url=url)
        assert response.status_code == 422, (url, response.text)
        error = response.json()["error"]
        assert error["code"] == "WEBHOOK_URL_REFUSED"
        assert "loopback" in error["message"]


async def test_a_subscription_is_changed_paused_resumed_and_deleted(
    client: httpx.AsyncClient, admin: dict[str, str], conn: asyncpg.Connection
) -> None:
    created = (await subscribe(client, admin, description="old")).json()["data"]
    path = f"{API}/subscriptions/{created['id']}"
    changed = await client.patch(
        path,
        json={"event_types": ["order.paid", "order.paid", "product.created"], "description": None},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    data = changed.json()["data"]
    assert data["event_types"] == ["order.paid", "product.created"]
    assert data["description"] is None
    refused = await client.patch(path, json={"url": "http://192.168.0.10/x"}, headers=admin)
    assert refused.json()["error"]["code"] == "WEBHOOK_URL_REFUSED"
    assert (await client.patch(path, json={"url": None}, headers=admin)).status_code == 422

    # As the delivery job leaves it when retries run out:
    await conn.execute(
        "UPDATE webhooks.subscriptions SET active = false, paused_at = now(), failures = 8,"
        " next_attempt_at = now() + interval '1 hour', last_error = 'HTTP 500' WHERE id = $1",
        uuid.UUID(created["id"]),
    )
    paused = (await client.get(path, headers=admin)).json()["data"]
    assert (paused["active"], paused["failures"]) == (False, 8)
    assert paused["paused_at"] is not None
    resumed = (await client.patch(path, json={"active": True}, headers=admin)).json()["data"]
    assert (resumed["active"], resumed["paused_at"], resumed["failures"]) == (True, None, 0)
    assert resumed["last_error"] is None
    due = await conn.fetchval(
        "SELECT next_attempt_at <= now() FROM webhooks.subscriptions WHERE id = $1",
        uuid.UUID(created["id"]),
    )
    assert due is True

    assert (await client.delete(path, headers=admin)).status_code == 204
    assert (await client.get(path, headers=admin)).json()["error"]["code"] == (
        "WEBHOOK_SUBSCRIPTION_NOT_FOUND"
    )
    assert (await client.delete(path, headers=admin)).status_code == 404


async def test_rotating_the_secret_keeps_the_old_one_for_the_overlap(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = (await subscribe(client, admin)).json()["data"]
    path = f"{API}/subscriptions/{created['id']}/rotate-secret"
    assert (
        await client.post(path, json={"overlap_minutes": 10_081}, headers=admin)
    ).status_code == 422
    response = await client.post(path, json={}, headers=admin)
    assert response.status_code == 200, response.text
    rotated = response.json()["data"]
    assert rotated["secret"] != created["secret"]
    ends = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert abs(ends - (datetime.now(UTC) + timedelta(minutes=1_440))) < timedelta(minutes=1)
    shown = (await client.get(f"{API}/subscriptions/{created['id']}", headers=admin)).json()
    assert shown["data"]["previous_secret_expires_at"] == rotated["previous_secret_expires_at"]
    at_once = (await client.post(path, json={"overlap_minutes": 0}, headers=admin)).json()
    assert at_once["data"]["previous_secret_expires_at"] is None


async def test_a_replay_must_start_inside_the_log(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = (await subscribe(client, admin)).json()["data"]
    path = f"{API}/subscriptions/{created['id']}/replay"
    beyond = created["delivered_position"] + 2
    response = await client.post(path, json={"from_position": beyond}, headers=admin)
    assert response.json()["error"]["code"] == "REPLAY_OUT_OF_RANGE"
    assert (await client.post(path, json={"from_position": 0}, headers=admin)).status_code == 422
    missing = await client.post(
        f"{API}/subscriptions/{uuid.uuid4()}/replay", json={"from_position": 1}, headers=admin
    )
    assert missing.status_code == 404


async def test_the_attempts_log_pages_newest_first_and_filters(
    client: httpx.AsyncClient, admin: dict[str, str], conn: asyncpg.Connection
) -> None:
    first = uuid.UUID((await subscribe(client, admin)).json()["data"]["id"])
    second = uuid.UUID((await subscribe(client, admin)).json()["data"]["id"])
    start = datetime.now(UTC)
    for n in range(5):
        await repository.insert_delivery(
            conn,
            {
                "subscription_id": first if n < 4 else second,
                "event_id": uuid.uuid4(),
                "event_type": "order.paid",
                "position": n + 1,
                "attempt": 1,
                "replay": False,
                "status": "dead" if n == 2 else "succeeded",
                "status_code": 500 if n == 2 else 200,
                "error": None,
                "duration_ms": 3,
                "response_excerpt": None,
                "attempted_at": start + timedelta(seconds=n),
            },
        )
    seen: list[int] = []
    params: dict[str, Any] = {"subscription_id": str(first), "limit": 3}
    while True:
        page = (await client.get(f"{API}/deliveries", params=params, headers=admin)).json()
        seen += [d["position"] for d in page["data"]]
        if page["meta"]["next_cursor"] is None:
            break
        params["cursor"] = page["meta"]["next_cursor"]
    assert seen == [4, 3, 2, 1]
    dead = (await client.get(f"{API}/deliveries", params={"status": "dead"}, headers=admin)).json()[
        "data"
    ]
    assert [d["position"] for d in dead] == [3]
    everyone = (await client.get(f"{API}/deliveries", headers=admin)).json()["data"]
    assert [d["position"] for d in everyone] == [5, 4, 3, 2, 1]
    # An empty cursor is no cursor, as in every other listing.
    empty = await client.get(f"{API}/deliveries", params={"cursor": ""}, headers=admin)
    assert [d["position"] for d in empty.json()["data"]] == [5, 4, 3, 2, 1]
    # A cursor is bound to its filters.
    other = await client.get(
        f"{API}/deliveries",
        params={"subscription_id": str(second), "cursor": params["cursor"]},
        headers=admin,
    )
    assert other.json()["error"]["code"] == "INVALID_CURSOR"
    too_many = await client.get(f"{API}/deliveries", params={"limit": 101}, headers=admin)
    assert too_many.status_code == 422


async def test_the_subscription_list_pages(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    ids = [(await subscribe(client, admin)).json()["data"]["id"] for _ in range(3)]
    page = (await client.get(f"{API}/subscriptions", params={"limit": 2}, headers=admin)).json()
    rest = (
        await client.get(
            f"{API}/subscriptions",
            params={"limit": 2, "cursor": page["meta"]["next_cursor"]},
            headers=admin,
        )
    ).json()
    listed = [s["id"] for s in page["data"] + rest["data"]]
    assert set(ids) <= set(listed)
    assert len(listed) == len(set(listed))


async def test_replaying_an_unknown_delivery_is_404(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.post(f"{API}/deliveries/{uuid.uuid4()}/replay", headers=admin)
    assert response.json()["error"]["code"] == "WEBHOOK_DELIVERY_NOT_FOUND"


async def test_a_rotation_needs_no_body(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    created = (await subscribe(client, admin)).json()["data"]
    response = await client.post(
        f"{API}/subscriptions/{created['id']}/rotate-secret", headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["previous_secret_expires_at"] is not None


async def test_secrets_are_resealed_under_a_new_data_key(db: SingleConnectionDatabase) -> None:
    old_ring = DataKeyRing({1: bytes(range(32))})
    async with db.transaction() as conn:
        row, secret = await service.create_subscription(
            conn,
            old_ring,
            url=HOOK,
            event_types=["*"],
            description=None,
            active=True,
            created_by=None,
        )
        row, rotated = await service.rotate_secret(
            conn, old_ring, row["id"], overlap=timedelta(hours=1)
        )
    ring = DataKeyRing({1: bytes(range(32)), 2: bytes(range(32, 64))})
    assert await service.reseal_secrets(db, ring) >= 1  # type: ignore[arg-type]
    resealed = await repository.get_subscription(db.reader, row["id"])
    assert version_of(resealed["secret"]) == version_of(resealed["previous_secret"]) == 2
    assert service.secrets_in_use(DataKeyRing({2: bytes(range(32, 64))}), resealed) == [
        rotated,
        secret,
    ]
    assert await service.reseal_secrets(db, ring) == 0  # type: ignore[arg-type]
