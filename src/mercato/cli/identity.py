"""`mercato users …` and `mercato keys …`: the first administrator, erasure, key rotation."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from mercato.cli.database import database_url
from mercato.core.config import Settings
from mercato.core.errors import DomainError

# Each command imports what it uses (see cli/main.py).
if TYPE_CHECKING:
    from mercato.identity import IdentityRuntime

users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Signing keys and data keys.", no_args_is_help=True)
console = Console()
T = TypeVar("T")


@asynccontextmanager
async def _runtime(url: str, settings: Settings) -> AsyncIterator[IdentityRuntime]:
    from mercato.core.database import Database
    from mercato.core.mail import mailer_from_settings
    from mercato.core.migrate import require_current_schema
    from mercato.core.ratelimit import FailureThrottle, RateLimiter
    from mercato.identity import IdentityRuntime

    db = await Database.connect(url, min_size=1, max_size=2)
    try:
        await require_current_schema(db.reader)
        yield IdentityRuntime(
            settings,
            db,
            mailer=mailer_from_settings(settings),
            throttle=FailureThrottle(RateLimiter.create(None)),
        )
    finally:
        await db.close()


def _run(work: Callable[[IdentityRuntime], Awaitable[T]]) -> T:
    settings = Settings().with_local_secrets()

    async def main(url: str) -> T:
        async with _runtime(url, settings) as runtime:
            return await work(runtime)

    with database_url(settings) as url:
        try:
            return asyncio.run(main(url))
        except DomainError as error:
            details = "; ".join(d.get("message", "") for d in error.details)
            console.print(f"[red]{error.detail_message}[/red] {details}")
            raise typer.Exit(1) from error


@users_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The administrator's email address.")],
    first_name: Annotated[str, typer.Option(help="First name.")] = "Admin",
    last_name: Annotated[str, typer.Option(help="Last name.")] = "Istrator",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an administrator (verified, role `admin`). The password is prompted for,
    never taken from the command line, where it would land in shell history."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    from mercato.identity import accounts

    async def work(runtime: IdentityRuntime) -> str:
        async with runtime.db.transaction() as conn:
            row = await accounts.create_administrator(
                conn,
                runtime,
                email=email,
                password=password,
                first_name=first_name,
                last_name=last_name,
            )
        return str(row["id"])

    user_id = _run(work)
    console.print(f"created administrator {user_id}")


@users_app.command("erase-deleted")
def erase_deleted(
    days: Annotated[float | None, typer.Option(min=0, help="Grace period in days.")] = None,
) -> None:
    """Erase the personal data of accounts deleted longer ago than the grace period."""
    from mercato.identity.jobs import erase_deleted_accounts

    async def work(runtime: IdentityRuntime) -> int:
        grace = days if days is not None else runtime.settings.account_erase_after_days
        return await erase_deleted_accounts(runtime.db, grace=timedelta(days=grace))

    console.print(f"erased {_run(work)} accounts")


@keys_app.command("rotate")
def rotate() -> None:
    """Sign new access tokens with a new key; the old key verifies until its tokens expire."""
    from mercato.identity import audit
    from mercato.identity.tokens import rotate_signing_key

    async def work(runtime: IdentityRuntime) -> str:
        ttl = timedelta(seconds=runtime.settings.access_token_seconds)
        async with runtime.db.transaction() as conn:
            kid = await rotate_signing_key(conn, runtime.ring, token_ttl=ttl)
            await audit.record(conn, "signing_key.rotated", meta=audit.SYSTEM, details={"kid": kid})
        return kid

    console.print(f"now signing with key {_run(work)}")


@keys_app.command("rotate-data")
def rotate_data() -> None:
    """Re-encrypt personal data sealed under older data keys with the newest one."""
    from mercato.identity.jobs import reseal_personal_data

    console.print(f"re-sealed {_run(reseal_personal_data)} rows")
