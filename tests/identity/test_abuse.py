"""Attacks on accounts: enumeration, password guessing, request floods, secrets in logs."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from asgi_lifespan import LifespanManager

from mercato.app import create_app
from mercato.identity import IdentityRuntime
from tests.database import SingleConnectionDatabase
from tests.factories import STRONG_PASSWORD, TestUser, staff_headers, unique_email
from tests.identity.conftest import Mailbox, mail_settings
from tests.realtime.conftest import free_port

API = "/api/v1"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _random_ip() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


@asynccontextmanager
async def app_client(
    db: SingleConnectionDatabase, mailbox: Mailbox, *, ip: str | None = None, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(mail_settings(mailbox, **settings), database=db)  # type: ignore[arg-type]
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, client=(ip or _random_ip(), 50_000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


class HashWork:
    """Counts the argon2 operations requests make (a stand-in for the app's hasher)."""

    def __init__(self, runtime: IdentityRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        self._hasher = runtime.passwords._hasher
        monkeypatch.setattr(runtime.passwords, "_hasher", self)

    def hash(self, password: str) -> str:
        self.calls.append("hash")
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        self.calls.append("verify")
        return self._hasher.verify(stored, password)

    def check_needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)

    def take(self) -> list[str]:
        calls, self.calls = self.calls, []
        return calls


def _without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    if "error" in body:
        return {**body, "error": {**body["error"], "request_id": None}}
    return body


async def test_no_answer_tells_whether_an_address_has_an_account(
    client: httpx.AsyncClient,
    customer: TestUser,
    runtime: IdentityRuntime,
    monkeypatch: pytest.MonkeyPatch,
    mailbox: Mailbox,
) -> None:
    work = HashWork(runtime, monkeypatch)
    unknown = unique_email()
    cases = [
        (
            "/auth/register",
            lambda email: {
                "email": email,
                "password": STRONG_PASSWORD,
                "first_name": "Eve",
                "last_name": "Smith",
            },
        ),
        ("/auth/login", lambda email: {"email": email, "password": "wrong-password-123"}),
        ("/auth/password/forgot", lambda email: {"email": email}),
    ]
    for path, body in cases:
        answers = []
        for email in (customer.email, unknown):
            response = await client.post(API + path, json=body(email))
            answers.append(
                (response.status_code, _without_request_id(response.json()), work.take())
            )
        assert answers[0] == answers[1], path
    # Registering a taken address mails its owner instead of telling the caller.
    await mailbox.wait_for(customer.email, "tried to register")


async def test_repeated_failures_lock_the_account_with_growing_delays(
    db: SingleConnectionDatabase, customer: TestUser, mailbox: Mailbox
) -> None:
    async with app_client(db, mailbox) as http:
        wrong = {"email": customer.email, "password": "wrong-password-123"}
        for _ in range(5):
            assert (await http.post(f"{API}/auth/login", json=wrong)).status_code == 401
        locked = await http.post(f"{API}/auth/login", json=wrong)
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "TOO_MANY_ATTEMPTS"
        assert int(locked.headers["retry-after"]) == 1
        # Locked means locked: the right password waits too.
        right = {"email": customer.email, "password": customer.password}
        assert (await http.post(f"{API}/auth/login", json=right)).status_code == 429
        await asyncio.sleep(1.1)
        assert (await http.post(f"{API}/auth/login", json=wrong)).status_code == 401
        doubled = await http.post(f"{API}/auth/login", json=right)
        assert int(doubled.headers["retry-after"]) == 2
        await asyncio.sleep(2.1)
        assert (await http.post(f"{API}/auth/login", json=right)).status_code == 200


async def test_one_address_guessing_many_accounts_is_locked_out(
    db: SingleConnectionDatabase, mailbox: Mailbox, customer: TestUser
) -> None:
    async with app_client(db, mailbox) as http:
        for _ in range(5):
            guess = {"email": unique_email(), "password": "wrong-password-123"}
            assert (await http.post(f"{API}/auth/login", json=guess)).status_code == 401
        right = {"email": customer.email, "password": customer.password}
        assert (await http.post(f"{API}/auth/login", json=right)).status_code == 429
    # Another address is not affected.
    async with app_client(db, mailbox) as http:
        assert (await http.post(f"{API}/auth/login", json=right)).status_code == 200


async def test_rate_limits_answer_429_with_standard_headers_and_reset(
    db: SingleConnectionDatabase, mailbox: Mailbox, customer: TestUser
) -> None:
    async with app_client(db, mailbox, rate_limit_anonymous="3/1 second") as http:
        answers = [await http.get(f"{API}/products") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.headers["ratelimit-remaining"] for a in answers[:3]] == ["2", "1", "0"]
        refused = answers[3]
        assert refused.headers["ratelimit-limit"] == "3"
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["ratelimit-policy"] == "3;w=1"
        assert refused.json()["error"]["code"] == "RATE_LIMITED"
        # A signed-in caller counts against their own account, not the address.
        assert (await http.get(f"{API}/me", headers=customer.headers)).status_code == 200
        await asyncio.sleep(1.1)
        assert (await http.get(f"{API}/products")).status_code == 200


async def test_sign_in_routes_have_a_stricter_limit(
    db: SingleConnectionDatabase, mailbox: Mailbox
) -> None:
    async with app_client(db, mailbox, rate_limit_sensitive="2/minute") as http:
        body = {"email": unique_email(), "password": "wrong-password-123"}
        codes = [(await http.post(f"{API}/auth/login", json=body)).status_code for _ in range(3)]
        assert codes == [401, 401, 429]
        assert (await http.get(f"{API}/products")).status_code == 200


@pytest.fixture
async def redis_url() -> str:
    client = redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (redis.ConnectionError, OSError) as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis must be reachable in CI at {REDIS_URL}: {error}")
        pytest.skip(f"no Redis at {REDIS_URL}: {error}")
    finally:
        await client.aclose()
    return REDIS_URL


async def test_two_instances_share_limits_through_redis(
    db: SingleConnectionDatabase, mailbox: Mailbox, redis_url: str
) -> None:
    ip = _random_ip()  # a fresh address: no earlier run shares these buckets
    settings = {"redis_url": redis_url, "rate_limit_sensitive": "3/minute"}
    async with (
        app_client(db, mailbox, ip=ip, **settings) as first,
        app_client(db, mailbox, ip=ip, **settings) as second,
    ):
        body = {"email": unique_email(), "password": "wrong-password-123"}
        codes = [
            (await instance.post(f"{API}/auth/login", json=body)).status_code
            for instance in (first, second, first, second)
        ]
    assert codes == [401, 401, 401, 429]


async def test_no_secret_reaches_the_logs(
    fresh_db_url: str, mailbox: Mailbox, tmp_path: Path
) -> None:
    """A real `mercato serve` process with its access log on: every password, token and
    key used in the sign-in flows is searched for in what it wrote."""
    admin = await staff_headers(fresh_db_url)
    settings = mail_settings(mailbox)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")},
        "DATABASE_URL": fresh_db_url,
        "MERCATO_ENVIRONMENT": "test",
        "MERCATO_ACCESS_LOG": "true",
        "MERCATO_LOG_LEVEL": "DEBUG",
        "MERCATO_DATA_DIR": str(tmp_path),
        "MERCATO_SMTP_HOST": "127.0.0.1",
        "MERCATO_SMTP_PORT": str(mailbox.port),
        "MERCATO_SMTP_STARTTLS": "false",
        **{
            f"MERCATO_{name.upper()}": getattr(settings, name).get_secret_value()
            for name in ("secret_key", "data_keys", "blind_index_key")
        },
    }
    output = tmp_path / "server.log"
    with output.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "mercato", "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                await _wait_until_ready(http, server)
                seen = await _sign_in_flows(http, mailbox, admin)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    logs = output.read_text()
    assert "/api/v1/auth/login" in logs  # the access log did run
    for secret in seen:
        assert secret not in logs


async def _wait_until_ready(http: httpx.AsyncClient, server: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert server.poll() is None, "the server exited early"
        try:
            if (await http.get("/health/ready")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the server did not become ready")


async def _sign_in_flows(
    http: httpx.AsyncClient, mailbox: Mailbox, admin: dict[str, str]
) -> list[str]:
    email = unique_email()
    seen = [STRONG_PASSWORD, email, admin["Authorization"][7:]]
    body = {"email": email, "password": STRONG_PASSWORD, "first_name": "Lin", "last_name": "Zhao"}
    await http.post(f"{API}/auth/register", json=body)
    seen.append(await mailbox.token(email, "confirm your email"))
    login = {"email": email, "password": STRONG_PASSWORD}
    session = (await http.post(f"{API}/auth/login", json=login)).json()["data"]
    seen += [session["access_token"], session["refresh_token"]]
    await http.post(f"{API}/auth/refresh", json={"refresh_token": session["refresh_token"]})
    await http.post(f"{API}/auth/refresh", json={"refresh_token": session["refresh_token"]})
    await http.post(f"{API}/auth/login", json={"email": email, "password": "Wrong-guess-42"})
    await http.post(f"{API}/auth/password/forgot", json={"email": email})
    seen.append(await mailbox.token(email, "reset your password"))
    key = await http.post(
        f"{API}/api-keys", json={"name": "ci", "scopes": ["products:write"]}, headers=admin
    )
    seen.append(key.json()["data"]["key"])
    await http.get(f"{API}/products", headers={"Authorization": f"Bearer {seen[-1]}"})
    await http.get(f"{API}/me?token={seen[3]}", headers=admin)
    await http.get(f"{API}/me", headers={"Authorization": "Bearer " + seen[4] + "x"})
    return seen
