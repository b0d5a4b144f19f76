"""The mail the identity context sends, and the queue that sends it after commit.

A use case returns the messages it wants sent; the route hands them to `MailQueue` once
the transaction has committed. Delivery runs in the background, so a request costs the
same whether or not it sends mail: "forgot password" for a known address must not be
slower than for an unknown one.
"""

from __future__ import annotations

import asyncio

import structlog

from mercato.core.mail import MailDeliveryFailed, Mailer, Message

log = structlog.get_logger("mercato.identity.mail")


class MailQueue:
    def __init__(self, mailer: Mailer) -> None:
        self._mailer = mailer
        self._pending: set[asyncio.Task[None]] = set()

    def send_later(self, messages: list[Message]) -> None:
        for message in messages:
            task = asyncio.create_task(self._deliver(message))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _deliver(self, message: Message) -> None:
        try:
            await self._mailer.send(message)
        except MailDeliveryFailed as failure:
            # No traceback: the chained SMTP error quotes the recipient's full address.
            log.warning("mail_not_delivered", subject=message.subject, reason=str(failure))
        except Exception:
            log.exception("mail_not_delivered", subject=message.subject)

    async def drain(self, within: float = 10.0) -> None:
        """Wait for queued mail (at shutdown, and in tests)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=within)


def verification_mail(to: str, *, link: str) -> Message:
    return Message(
        to=to,
        subject="Confirm your email address",
        text=(
            "Welcome to Mercato.\n\nConfirm your address by opening this link:\n\n"
            f"{link}\n\nIf you did not create an account, ignore this message.\n"
        ),
    )


def already_registered_mail(to: str, *, reset_link: str) -> Message:
    return Message(
        to=to,
        subject="Someone tried to register with your address",
        text=(
            "Someone (perhaps you) tried to create a Mercato account with this address, "
            "which already has one.\n\nIf you forgot your password, reset it here:\n\n"
            f"{reset_link}\n\nOtherwise, ignore this message.\n"
        ),
    )


def reset_mail(to: str, *, link: str, minutes: int) -> Message:
    return Message(
        to=to,
        subject="Reset your password",
        text=(
            f"Reset your Mercato password with this link (valid {minutes} minutes, once):\n\n"
            f"{link}\n\nIf you did not ask for this, ignore this message; "
            "your password stays as it is.\n"
        ),
    )


def password_changed_mail(to: str) -> Message:
    return Message(
        to=to,
        subject="Your password was changed",
        text=(
            "The password of your Mercato account was just changed and every session was "
            "signed out.\n\nIf this was not you, reset your password at once.\n"
        ),
    )
