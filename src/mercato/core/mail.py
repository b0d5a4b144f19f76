"""Outgoing mail: the `Mailer` port, an SMTP adapter, and a file adapter for development.

Callers send *after* their transaction commits, never inside it. A registration or
password reset that rolls back must not have mailed a token that does not exist; and SMTP
is a round trip to someone else's server (seconds when it is slow, more with retries), which
must not hold a database transaction, its pooled connection and its row locks open. So the
use case commits, then calls `Mailer.send`: this module only delivers. A delivery that still
fails is the caller's to handle (a "send again" action); nothing here is durable.

Bodies carry single-use tokens: nothing here logs a body or the SMTP password. Log lines
carry the recipient's domain and the subject only.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from contextlib import suppress
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path
from typing import Protocol

import aiosmtplib
import structlog

from mercato.core.config import Environment, Settings

log = structlog.get_logger("mercato.mail")


@dataclass(frozen=True, slots=True)
class Message:
    to: str  # one address: "ada@example.com" or "Ada <ada@example.com>"
    subject: str
    text: str


class Mailer(Protocol):
    async def send(self, message: Message) -> None: ...  # raises MailDeliveryFailed


class MailDeliveryFailed(Exception):
    """The server refused the message (`permanent`), or failed transiently on every attempt."""

    def __init__(self, reason: str, *, permanent: bool, code: int | None = None) -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.code = code


def _address(value: str) -> str:
    """The one addr-spec in `value`; anything else (a list, no address) is a `ValueError`."""
    found = getaddresses([value])
    if len(found) != 1 or "@" not in found[0][1]:
        raise ValueError("expected exactly one email address")
    return found[0][1]


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _build(message: Message, sender: str) -> EmailMessage:
    email = EmailMessage()  # header values with CR or LF are refused: no header injection
    email["From"] = sender
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Date"] = format_datetime(datetime.now(UTC))
    email["Message-ID"] = make_msgid(domain=_domain(_address(sender)))
    email.set_content(message.text, charset="utf-8")
    return email


def _reply_code(error: Exception) -> int | None:
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        return error.recipients[0].code  # one recipient per message
    return None


_TRANSIENT = (ConnectionError, TimeoutError)  # aiosmtplib's connect, disconnect and timeouts


@dataclass(frozen=True)
class SmtpMailer:
    """Delivers through an SMTP server, retrying transient failures with backoff.

    Transient: lost or refused connections, timeouts, 4xx replies; anything else (5xx, no
    STARTTLS, TLS errors) fails at once. A retry resends the same Message-ID: a duplicate
    after a reply lost in transit is recognisable as one.
    """

    host: str
    port: int
    _: KW_ONLY
    username: str | None
    password: str | None = field(repr=False)
    starttls: bool  # True insists on STARTTLS: no silent fallback to plain text
    timeout: float
    sender: str
    attempts: int = 3
    backoff: float = 0.5  # seconds before the first retry, doubling after each

    def __post_init__(self) -> None:
        _address(self.sender)  # a bad `mail_from` fails at startup, not at the first mail

    async def send(self, message: Message) -> None:
        recipient = _address(message.to)
        email = _build(message, self.sender)
        context = {"to_domain": _domain(recipient), "subject": message.subject}
        for attempt in range(1, max(1, self.attempts) + 1):
            try:
                await aiosmtplib.send(
                    email,
                    sender=_address(self.sender),
                    recipients=[recipient],
                    hostname=self.host,
                    port=self.port,
                    username=self.username,
                    password=self.password,
                    start_tls=self.starttls,
                    timeout=self.timeout,
                )
            except (aiosmtplib.SMTPException, OSError) as error:
                code = _reply_code(error)
                transient = 400 <= code < 500 if code is not None else isinstance(error, _TRANSIENT)
                fields = {"error": type(error).__name__, "code": code, "attempt": attempt}
                if transient and attempt < self.attempts:
                    log.info("mail.retrying", **fields, **context)
                    await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                    continue
                log.warning("mail.failed", **fields, **context)
                # Not `str(error)`: SMTP errors quote the full recipient address.
                reason = (
                    f"mail to {context['to_domain']} failed, attempt {attempt}: "
                    f"{type(error).__name__} {code or ''}".rstrip()
                )
                raise MailDeliveryFailed(reason, permanent=not transient, code=code) from error
            log.info("mail.sent", attempts=attempt, **context)
            return


@dataclass(frozen=True)
class FileMailer:
    """Development adapter: each message becomes an RFC 5322 `.eml` file in `directory`.

    The directory is created 0700 and each file 0600 (bodies hold live tokens); a file is
    written under a temporary name, then renamed: a reader never sees half a message. Names
    sort by time of writing.
    """

    directory: Path
    _: KW_ONLY
    sender: str = "Mercato <no-reply@mercato.local>"

    async def send(self, message: Message) -> None:
        recipient = _address(message.to)
        data = _build(message, self.sender).as_bytes(policy=policy.SMTP)
        path = await asyncio.to_thread(self._write, data)
        log.info(
            "mail.written", path=str(path), subject=message.subject, to_domain=_domain(recipient)
        )

    def _write(self, data: bytes) -> Path:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileExistsError):  # an existing directory keeps the mode it was given
            self.directory.mkdir(mode=0o700)
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:12]}.eml"
        path, scratch = self.directory / name, self.directory / f".{name}.tmp"
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.replace(scratch, path)
        except BaseException:
            scratch.unlink(missing_ok=True)
            raise
        return path


def mailer_from_settings(settings: Settings) -> Mailer:
    """SMTP when `smtp_host` is set; otherwise files under `data_dir/mail` (development)."""
    if settings.smtp_host:
        password = settings.smtp_password
        return SmtpMailer(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=password.get_secret_value() if password is not None else None,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
            sender=settings.mail_from,
        )
    directory = settings.data_dir / "mail"
    if settings.environment is Environment.PRODUCTION:
        log.warning("mail.not_configured", directory=str(directory), hint="set MERCATO_SMTP_HOST")
    return FileMailer(directory, sender=settings.mail_from)
