"""`mercato schema …`: data contracts (API and events), migration safety, docs/schema.md."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import asyncpg
import typer
from rich.console import Console
from rich.markup import escape

from mercato.cli.database import database_url
from mercato.core.config import Settings
from mercato.core.database import asyncpg_dsn

# Each command imports what it uses: these build the whole app (see cli/main.py).
if TYPE_CHECKING:
    from mercato.core.contracts import Change

schema_app = typer.Typer(
    help="Data contracts, migration safety and the schema document.", no_args_is_help=True
)
console = Console()
OPENAPI_SNAPSHOT = Path("docs/openapi.json")
SCHEMA_DOC = Path("docs/schema.md")
SCHEMA_PREAMBLE = Path("docs/schema.preamble.md")
EVENT_SCHEMAS = Path("schemas/events")  # event_contracts.SCHEMA_DIR (a test checks they agree)


@schema_app.command("check")
def schema_check(
    openapi: Annotated[
        Path, typer.Option(help="The published OpenAPI document.")
    ] = OPENAPI_SNAPSHOT,
    events: Annotated[Path, typer.Option(help="The published event schemas.")] = EVENT_SCHEMAS,
) -> None:
    """Compare the live OpenAPI document and event schemas with the committed ones: list
    every change, and fail if any would break a client or consumer."""
    from mercato import event_contracts
    from mercato.app import openapi_document
    from mercato.core.openapi_contracts import openapi_changes

    changes = openapi_changes(json.loads(openapi.read_text()), json.loads(openapi_document()))
    changes += event_contracts.contract_changes(events)
    breaking = [change for change in changes if change.breaking]
    _print(breaking, "[red]breaking[/red]")
    _print([change for change in changes if not change.breaking], "[green]compatible[/green]")
    if breaking:
        console.print(
            f"{len(breaking)} breaking changes: keep the published contract (add, don't change),"
            " or publish a new version (a new path or event schema version)"
        )
        raise typer.Exit(1)
    if changes:
        console.print(
            f"{len(changes)} compatible changes: publish them with `make openapi` and "
            "`mercato schema events`"
        )
    else:
        console.print("the API and the event schemas match the published contracts")


def _print(changes: list[Change], label: str) -> None:
    for change in changes:
        console.print(f"{label} {escape(str(change))}", soft_wrap=True)


@schema_app.command("events")
def schema_events(
    check: Annotated[bool, typer.Option(help="Only compare with the committed files.")] = False,
    directory: Annotated[
        Path, typer.Option(help="Where the schemas are committed.")
    ] = EVENT_SCHEMAS,
) -> None:
    """Export the event payload JSON Schemas, refusing breaking changes to published ones."""
    from mercato import event_contracts

    if check:
        breaking, stale = event_contracts.compare(directory)
        for line in breaking:
            console.print(f"[red]breaking[/red] {escape(line)}")
        for name in stale:
            console.print(f"[yellow]differs from the committed file[/yellow] {name}")
        if breaking or stale:
            raise typer.Exit(1)
        console.print("event schemas match the committed files")
        return
    problems = event_contracts.write(directory)
    if problems:
        for line in problems:
            console.print(f"[red]breaking[/red] {escape(line)}")
        console.print("publish a new schema version instead of changing this one")
        raise typer.Exit(1)
    console.print(f"wrote {len(event_contracts.live_schemas())} schemas to {directory}")


@schema_app.command("lint")
def schema_lint() -> None:
    """Lint every migration's SQL (Alembic offline mode) with squawk for DDL that locks
    existing tables: non-concurrent index builds, NOT NULL without a default, type rewrites."""
    from mercato.core.migration_lint import lint_migrations

    findings = lint_migrations()
    for finding in findings:
        console.print(f"[red]unsafe[/red] {escape(str(finding))}", soft_wrap=True)
    if findings:
        console.print(
            "make the DDL safe (CREATE INDEX CONCURRENTLY in an autocommit block, a default "
            "for a new NOT NULL column, NOT VALID then VALIDATE), or accept it with a reason "
            "in ACCEPTED (src/mercato/core/migration_lint.py)"
        )
        raise typer.Exit(1)
    console.print("migrations: no locking DDL on existing tables")


@schema_app.command("docs")
def schema_docs_command(
    output: Annotated[Path, typer.Option(help="Where to write the document.")] = SCHEMA_DOC,
    preamble: Annotated[Path, typer.Option(help="The hand-written part.")] = SCHEMA_PREAMBLE,
) -> None:
    """Write docs/schema.md from the live database (migrated to the head) and the models."""
    from mercato.core import schema_docs
    from mercato.core.migrate import require_current_schema

    async def run(url: str) -> str:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await require_current_schema(conn)
            return await generate(conn, preamble.read_text())
        finally:
            await conn.close()

    with database_url(Settings()) as url:
        try:
            document = asyncio.run(run(url))
        except schema_docs.UndocumentedIndex as error:
            console.print(f"[red]{escape(str(error))}[/red]")
            raise typer.Exit(1) from None
    output.write_text(document)
    console.print(f"wrote {output}")


async def generate(conn: asyncpg.Connection, preamble: str) -> str:
    """The document for the database behind `conn` (the test compares it with the file)."""
    from mercato.core import schema_docs
    from mercato.migrations.registry import target_metadata

    tables = await schema_docs.read_tables(conn)
    return schema_docs.render(preamble, tables, schema_docs.purposes(target_metadata))
