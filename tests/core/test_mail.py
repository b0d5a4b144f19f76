"""Outgoing mail against a real SMTP server (aiosmtpd on 127.0.0.1) and on disk."""

from __future__ import annotations

import socket
import stat
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from structlog.testing import capture_logs

from mercato.core.mail import (
    FileMailer,
    MailDeliveryFailed,
    Message,
    SmtpMailer,
    mailer_from_settings,
)
from tests.settings import make_settings

SENDER = "Mercato <no-reply@mercato.test>"
TOKEN = "single-use-token-" + "t" * 24
MESSAGE = Message(
    to="Ada Lovelace <ada@example.com>",
    subject="Bestätigen Sie Ihre Adresse",
    text=f"Grüße! Open http://127.0.0.1:8000/verify?token={TOKEN}",
)


class Inbox:
    """An aiosmtpd handler that keeps what it accepts; scripted replies are answered first."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self.script: dict[str, list[str]] = {"MAIL": [], "RCPT": [], "DATA": []}
        self.calls: Counter[str] = Counter()
        self.port = 0  # set once the server listens

    def _scripted(self, command: str) -> str | None:
        self.calls[command] += 1
        return self.script[command].pop(0) if self.script[command] else None

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if (reply := self._scripted("MAIL")) is not None:
            return reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if (reply := self._scripted("RCPT")) is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        if (reply := self._scripted("DATA")) is not None:
            return reply
        self.received.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    try:
        yield handler
    finally:
        controller.stop()


def mailer(port: int, **overrides: Any) -> SmtpMailer:
    options: dict[str, Any] = {
        "username": None,
        "password": None,
        "starttls": False,
        "timeout": 5.0,
        "sender": SENDER,
        "backoff": 0.01,
    }
    options.update(overrides)
    return SmtpMailer("127.0.0.1", port, **options)


def parse(data: bytes) -> EmailMessage:
    """Read a message as a Unix mail reader would: CRLF line ends (RFC 5322) become LF."""
    parsed = message_from_bytes(data.replace(b"\r\n", b"\n"), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body(parsed: EmailMessage) -> str:
    part = parsed.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


async def test_smtp_delivers_headers_and_body(inbox: Inbox) -> None:
    with capture_logs() as logs:
        await mailer(inbox.port).send(MESSAGE)

    [envelope] = inbox.received
    assert envelope.mail_from == "no-reply@mercato.test"
    assert envelope.rcpt_tos == ["ada@example.com"]
    assert isinstance(envelope.content, bytes)
    received = parse(envelope.content)
    assert received["From"] == SENDER
    assert received["To"] == MESSAGE.to
    assert received["Subject"] == MESSAGE.subject
    assert received["Date"] is not None
    assert received["Message-ID"].startswith("<")
    assert received["Message-ID"].endswith("@mercato.test>")
    assert received.get_content_type() == "text/plain"
    assert received.get_content_charset() == "utf-8"
    assert body(received).rstrip("\n") == MESSAGE.text
    assert [entry["event"] for entry in logs] == ["mail.sent"]
    assert logs[0]["to_domain"] == "example.com"
    assert TOKEN not in repr(logs)
    assert "ada@" not in repr(logs)


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("MAIL", "421 4.3.2 Service not available, closing transmission channel"),
        ("RCPT", "451 4.3.0 Mailbox temporarily unavailable"),
        ("DATA", "451 4.3.0 Try again later"),
    ],
)
async def test_smtp_retries_a_transient_failure(inbox: Inbox, command: str, reply: str) -> None:
    inbox.script[command] = [reply]
    with capture_logs() as logs:
        await mailer(inbox.port).send(MESSAGE)

    assert len(inbox.received) == 1
    assert inbox.calls[command] == 2
    assert [entry["event"] for entry in logs] == ["mail.retrying", "mail.sent"]
    assert logs[0]["code"] == int(reply[:3])
    assert TOKEN not in repr(logs)


async def test_smtp_gives_up_after_its_attempts(inbox: Inbox) -> None:
    inbox.script["RCPT"] = ["451 4.3.0 Mailbox temporarily unavailable"] * 5
    with pytest.raises(MailDeliveryFailed) as failure:
        await mailer(inbox.port, attempts=3).send(MESSAGE)

    assert failure.value.permanent is False
    assert failure.value.code == 451
    assert inbox.calls["RCPT"] == 3
    assert inbox.received == []


async def test_smtp_does_not_retry_a_permanent_refusal(inbox: Inbox) -> None:
    inbox.script["RCPT"] = ["550 5.1.1 No such user"] * 5
    with capture_logs() as logs, pytest.raises(MailDeliveryFailed, match="550") as failure:
        await mailer(inbox.port).send(MESSAGE)

    assert failure.value.permanent is True
    assert failure.value.code == 550
    assert inbox.calls["RCPT"] == 1
    assert inbox.received == []
    assert [entry["event"] for entry in logs] == ["mail.failed"]


async def test_smtp_refuses_to_send_in_clear_when_starttls_is_required(inbox: Inbox) -> None:
    with pytest.raises(MailDeliveryFailed) as failure:
        await mailer(inbox.port, starttls=True).send(MESSAGE)

    assert failure.value.permanent is True
    assert inbox.calls["MAIL"] == 0


async def test_smtp_retries_then_fails_when_nothing_listens() -> None:
    with pytest.raises(MailDeliveryFailed) as failure:
        await mailer(free_port(), attempts=2).send(MESSAGE)

    assert failure.value.permanent is False
    assert failure.value.code is None


async def test_more_than_one_recipient_is_refused(inbox: Inbox) -> None:
    with pytest.raises(ValueError, match="one email address"):
        await mailer(inbox.port).send(
            Message(to="ada@example.com, eve@example.org", subject="Hi", text="x")
        )
    assert inbox.calls["MAIL"] == 0


async def test_file_mailer_writes_a_private_eml_and_logs_no_body(tmp_path: Path) -> None:
    directory = tmp_path / "mail"
    with capture_logs() as logs:
        await FileMailer(directory, sender=SENDER).send(MESSAGE)

    [path] = directory.iterdir()  # the temporary file is gone
    assert path.suffix == ".eml"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = parse(path.read_bytes())
    assert written["From"] == SENDER
    assert written["To"] == MESSAGE.to
    assert written["Subject"] == MESSAGE.subject
    assert written["Message-ID"].endswith("@mercato.test>")
    assert body(written).rstrip("\n") == MESSAGE.text
    assert logs == [
        {
            "event": "mail.written",
            "log_level": "info",
            "path": str(path),
            "subject": MESSAGE.subject,
            "to_domain": "example.com",
        }
    ]
    assert TOKEN not in repr(logs)


async def test_file_mailer_names_are_unique_and_sort_by_time(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path / "mail")
    for n in range(3):
        await mailer.send(Message(to="ada@example.com", subject=f"#{n}", text="x"))

    paths = sorted((tmp_path / "mail").iterdir())
    assert [parse(p.read_bytes())["Subject"] for p in paths] == ["#0", "#1", "#2"]


async def test_settings_with_an_smtp_host_send_through_it(inbox: Inbox) -> None:
    settings = make_settings(
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        smtp_username=None,
        smtp_password=None,
        smtp_starttls=False,
        mail_from="Shop <shop@example.net>",
    )
    mailer = mailer_from_settings(settings)
    assert isinstance(mailer, SmtpMailer)

    await mailer.send(MESSAGE)

    [envelope] = inbox.received
    assert envelope.mail_from == "shop@example.net"


def test_settings_keep_the_smtp_password_out_of_repr() -> None:
    settings = make_settings(
        smtp_host="smtp.example.com", smtp_username="mercato", smtp_password="hunter2-secret"
    )
    mailer = mailer_from_settings(settings)
    assert isinstance(mailer, SmtpMailer)
    assert mailer.password == "hunter2-secret"
    assert "hunter2" not in repr(mailer)


def test_settings_without_an_smtp_host_write_files(tmp_path: Path) -> None:
    mailer = mailer_from_settings(make_settings(smtp_host=None, data_dir=tmp_path))
    assert isinstance(mailer, FileMailer)
    assert mailer.directory == tmp_path / "mail"
