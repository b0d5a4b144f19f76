"""Identity tests run the app against a real SMTP server (aiosmtpd), so every token a
flow needs is read from the mail that carried it, as a user would."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from mercato.app import create_app
from tests.database import SingleConnectionDatabase
from tests.settings import make_settings

TOKEN = re.compile(r"token=([A-Za-z0-9_\-]+)")


class Mailbox:
    """Keeps every message the SMTP server accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)  # type: ignore[arg-type]
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]

    async def wait_for(self, address: str, subject: str, *, within: float = 5.0) -> EmailMessage:
        for _ in range(int(within / 0.02)):
            for message in reversed(self.to(address)):
                if subject.lower() in str(message["Subject"]).lower():
                    return message
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"no mail {subject!r} to {address}: {[m['Subject'] for m in self.messages]}"
        )

    async def token(self, address: str, subject: str) -> str:
        message = await self.wait_for(address, subject)
        body = message.get_body(("plain",))
        assert body is not None
        match = TOKEN.search(body.get_content())
        assert match, body.get_content()
        return match.group(1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def mailbox_server() -> Iterator[Mailbox]:
    mailbox = Mailbox()
    mailbox.port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@pytest.fixture
def mailbox(mailbox_server: Mailbox) -> Mailbox:
    mailbox_server.messages.clear()
    return mailbox_server


def mail_settings(mailbox: Mailbox, **overrides: Any) -> Any:
    return make_settings(
        smtp_host="127.0.0.1", smtp_port=mailbox.port, smtp_starttls=False, **overrides
    )


@pytest.fixture
async def app(db: SingleConnectionDatabase, mailbox: Mailbox) -> AsyncIterator[FastAPI]:
    """The app with real SMTP delivery, on the test's rolled-back connection."""
    application = create_app(mail_settings(mailbox), database=db)  # type: ignore[arg-type]
    async with LifespanManager(application):
        yield application


async def outbox(conn: asyncpg.Connection, event_type: str, aggregate_id: Any) -> list[Any]:
    rows = await conn.fetch(
        "SELECT * FROM events.outbox WHERE type = $1 AND aggregate_id = $2 ORDER BY seq",
        event_type,
        str(aggregate_id),
    )
    return list(rows)


async def create_role(
    client: httpx.AsyncClient, admin: dict[str, str], name: str, permissions: list[str]
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/roles", json={"name": name, "permissions": permissions}, headers=admin
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def set_roles(
    client: httpx.AsyncClient, headers: dict[str, str], user_id: uuid.UUID, roles: list[str]
) -> httpx.Response:
    return await client.put(
        f"/api/v1/users/{user_id}/roles", json={"roles": roles}, headers=headers
    )
