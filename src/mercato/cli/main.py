"""The `mercato` command line: serve, migrate, seed, and database facts."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from mercato.cli.database import database_url
from mercato.cli.identity import keys_app, users_app
from mercato.cli.imports import import_app
from mercato.cli.schema import schema_app
from mercato.core.config import Settings
from mercato.core.database import Database, asyncpg_dsn

# Each command imports what it uses beyond this: the web app, the background services and
# uvicorn take most of a second to import, which every other command (an import of a
# 100,000-row feed takes a few seconds) would otherwise pay at start.

app = typer.Typer(help="Mercato: a commerce backend on PostgreSQL.", no_args_is_help=True)
db_app = typer.Typer(help="Database facts and maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
events_app = typer.Typer(help="The event log.", no_args_is_help=True)
app.add_typer(events_app, name="events")
dlq_app = typer.Typer(help="Dead letters of consumer groups.", no_args_is_help=True)
events_app.add_typer(dlq_app, name="dlq")
app.add_typer(schema_app, name="schema")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(import_app, name="import")
webhooks_app = typer.Typer(help="Outbound webhooks.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")
console = Console()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    context: Annotated[
        Literal["all", "orders"] | None,
        typer.Option(
            help="Serve every context (all), or the order context alone, reserving stock "
            "through the catalog over HTTP (orders: needs MERCATO_CATALOG_URL and "
            "MERCATO_CATALOG_API_KEY). Default: MERCATO_SERVE_CONTEXT, else all."
        ),
    ] = None,
) -> None:
    """Serve the API (uvicorn, uvloop, httptools)."""
    import uvicorn

    if context is not None:
        # Workers build their app from the environment: the choice travels there.
        os.environ["MERCATO_SERVE_CONTEXT"] = context
    settings = Settings()
    # uvicorn re-raises SIGTERM after its graceful shutdown; with Python's default handler
    # that would kill the process before the embedded database is released. Turning it
    # into SystemExit lets the `with` below stop the server cleanly.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with database_url(settings) as url:
        # Workers are separate processes: they read the resolved URL from the environment,
        # so they share this process's embedded server instead of starting their own.
        os.environ["DATABASE_URL"] = url
        uvicorn.run(
            "mercato.app:create_served_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            ws="websockets-sansio",
            ws_max_size=65_536,
            # Stream frames are built once and shared; deflate would redo it per
            # connection (ADR 0039).
            ws_per_message_deflate=False,
            proxy_headers=True,
            forwarded_allow_ips=",".join(settings.trusted_proxies),
            server_header=False,
            log_level="warning",
            timeout_graceful_shutdown=20,
        )


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@app.command()
def worker() -> None:
    """Run the background work: the outbox relay (one active at a time), log retention,
    the erasure of deleted accounts, the expiry of unpaid orders, payment reconciliation,
    the refund of cancelled paid orders, webhook delivery, product imports and the release
    of stock reservations nobody confirmed. With MERCATO_SERVE_CONTEXT=orders, the order
    context's work only (relay, expiry, reconciliation, refunds), plus the calls it owes
    the catalog."""
    from mercato.background import background_work, payment_provider, stock_port
    from mercato.core.migrate import require_current_schema
    from mercato.core.observability import configure_logging

    settings = Settings().with_local_secrets()
    configure_logging(level=settings.log_level, json=settings.log_json)

    async def run(url: str) -> None:
        # SIGTERM and Ctrl-C set `stop`: every service finishes its current step and
        # returns, and the relay's lock goes with its connection.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await require_current_schema(conn)
        finally:
            await conn.close()
        # One connection per service that may hold one at a time, plus one to spare (the
        # webhook delivery holds one only for short transactions, never while sending).
        db = await Database.connect(url, min_size=1, max_size=8)
        provider = payment_provider(settings)
        stock = stock_port(settings, db)
        try:
            work = background_work(settings, db, provider, stock)
            await asyncio.gather(*(service.run(stop) for service, _name in work))
        finally:
            await stock.close()
            await provider.close()
            await db.close()

    with database_url(settings) as url:
        asyncio.run(run(url))


@app.command("sandbox-pay")
def sandbox_pay(
    port: Annotated[int | None, typer.Option(help="Port (default: from payment_api_base).")] = None,
    settle_delay: Annotated[
        float, typer.Option(min=0, help="Seconds until pm_card_delayed payments settle.")
    ] = 2.0,
) -> None:
    """Run the local payment sandbox (Stripe's PaymentIntents protocol) on its own.

    Webhooks go to this installation's `/api/v1/payments/webhook`, signed with
    `payment_webhook_secret`. `mercato serve` already runs it in development; use this
    when the API runs elsewhere or in another mode."""
    from mercato import sandbox

    settings = Settings().with_local_secrets()
    address = urlsplit(settings.payment_api_base)
    secret = settings.payment_webhook_secret
    assert secret is not None, "settings.with_local_secrets() fills it"
    sandbox.main(
        port or address.port or 12111,
        f"{settings.public_base_url.rstrip('/')}/api/v1/payments/webhook",
        secret.get_secret_value(),
        host=address.hostname or "127.0.0.1",
        settle_delay=settle_delay,
    )


@events_app.command("prune")
def events_prune(
    days: Annotated[float | None, typer.Option(min=0, help="Keep this many days.")] = None,
) -> None:
    """Delete logged events older than the retention window (published ones only)."""
    from mercato.events.retention import prune

    settings = Settings()

    async def run(url: str) -> int:
        db = await Database.connect(url, min_size=1, max_size=1)
        try:
            return await prune(
                db, keep=timedelta(days=days if days is not None else settings.event_retention_days)
            )
        finally:
            await db.close()

    with database_url(settings) as url:
        deleted = asyncio.run(run(url))
    console.print(f"pruned {deleted} events")


@dlq_app.command("list")
def dlq_list(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer group.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
) -> None:
    """Events that consumers gave up on after their retries."""
    from mercato.events import repository as events_repository

    async def run(url: str) -> list[Any]:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return await events_repository.dead_letters(conn, consumer, limit=limit)
        finally:
            await conn.close()

    with database_url(Settings()) as url:
        rows = asyncio.run(run(url))
    table = Table("consumer", "position", "type", "event id", "attempts", "error", "state")
    for row in rows:
        state = (
            "replayed"
            if row["replayed_at"]
            else "replay requested"
            if row["replay_requested_at"]
            else "dead"
        )
        table.add_row(
            row["consumer"],
            str(row["position"]),
            row["type"],
            str(row["event_id"]),
            str(row["attempts"]),
            row["error"][:60],
            state,
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    consumer: Annotated[str, typer.Argument(help="The consumer group.")],
    event_id: Annotated[
        str | None, typer.Argument(help="One event; all of the group's if omitted.")
    ] = None,
) -> None:
    """Deliver dead-lettered events to their consumer again (on its next pass)."""
    from mercato.events import repository as events_repository

    try:
        wanted = uuid.UUID(event_id) if event_id else None
    except ValueError:
        console.print("[red]not an event id[/red]")
        raise typer.Exit(2) from None

    async def run(url: str) -> int:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return await events_repository.request_replay(conn, consumer, wanted)
        finally:
            await conn.close()

    with database_url(Settings()) as url:
        count = asyncio.run(run(url))
    console.print(f"replay requested for {count} dead letters")


@webhooks_app.command("reseal")
def webhooks_reseal() -> None:
    """Re-seal webhook signing secrets under the newest data key (after adding one to
    MERCATO_DATA_KEYS and `mercato keys rotate-data`, before dropping the old key)."""
    from mercato.core.crypto import DataKeyRing
    from mercato.core.migrate import require_current_schema
    from mercato.webhooks.service import reseal_secrets

    settings = Settings().with_local_secrets()
    assert settings.data_keys is not None, "settings.with_local_secrets() fills it"
    ring = DataKeyRing.parse(settings.data_keys.get_secret_value())

    async def run(url: str) -> int:
        db = await Database.connect(url, min_size=1, max_size=1)
        try:
            await require_current_schema(db.reader)
            return await reseal_secrets(db, ring)
        finally:
            await db.close()

    with database_url(settings) as url:
        count = asyncio.run(run(url))
    console.print(f"re-sealed the secrets of {count} webhook subscriptions")


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Bring the database schema up to date (Alembic)."""
    from mercato.core import migrate as migrations

    with database_url(Settings()) as url:
        migrations.upgrade(url, revision)
    console.print(f"[green]migrated to {revision}[/green]")


@app.command()
def seed(
    products: Annotated[int, typer.Option(min=0, max=10_000_000)] = 10_000,
    categories: Annotated[int, typer.Option(min=1, max=100_000)] = 200,
) -> None:
    """Load the deterministic demo data set (idempotent: only missing rows are added)."""
    from mercato.catalog.demo_data import seed_catalog

    async def run(url: str) -> int:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return await seed_catalog(conn, product_count=products, category_count=categories)
        finally:
            await conn.close()

    with database_url(Settings()) as url:
        started = time.perf_counter()
        added = asyncio.run(run(url))
    elapsed = time.perf_counter() - started
    console.print(f"seeded: {added} products added ({products} requested) in {elapsed:.1f}s")


@db_app.command("info")
def db_info() -> None:
    """Server version, schema revision, sizes and row counts."""

    async def run(url: str) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            version = await conn.fetchval("SHOW server_version")
            size = await conn.fetchval(
                "SELECT pg_size_pretty(pg_database_size(current_database()))"
            )
            revision = await conn.fetchval(
                "SELECT version_num FROM alembic_version"
                if await conn.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL")
                else "SELECT 'none'"
            )
            tables = await conn.fetch(
                "SELECT n.nspname AS schema, c.relname AS table, c.reltuples::bigint AS rows, "
                "pg_size_pretty(pg_total_relation_size(c.oid)) AS size FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'public') "
                "ORDER BY 1, 2"
            )
        finally:
            await conn.close()
        console.print(f"PostgreSQL {version}, database size {size}, schema revision {revision}")
        table = Table("schema", "table", "rows (estimate)", "size")
        for row in tables:
            table.add_row(row["schema"], row["table"], str(max(row["rows"], 0)), row["size"])
        console.print(table)

    with database_url(Settings()) as url:
        asyncio.run(run(url))


@app.command()
def openapi(
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Print (or write) the OpenAPI document, as committed in docs/openapi.json."""
    from mercato.app import openapi_document

    document = openapi_document()
    if output is None:
        sys.stdout.write(document)
    else:
        output.write_text(document)
        console.print(f"wrote {output}")


def main() -> None:
    app()
