"""`mercato import …`: import a product feed from a file, or resume an interrupted import."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mercato.cli.database import database_url
from mercato.core.config import Settings
from mercato.core.database import Database
from mercato.core.errors import DomainError
from mercato.core.migrate import require_current_schema
from mercato.ingest.mapping import default_mapping, parse_mapping
from mercato.ingest.service import ImportRun, create_job

import_app = typer.Typer(help="Product feed imports.", no_args_is_help=True)
console = Console()


class _Bar:
    """Rich progress: rows read while staging, then products loaded out of those planned."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("staging", total=None)

    def __call__(self, job: Any) -> None:
        if job["phase"] in ("loading", "done") and not job["dry_run"]:
            planned = job["planned_creates"] + job["planned_updates"]
            self._progress.update(
                self._task, description="loading", total=planned, completed=job["loaded_through"]
            )
        else:
            self._progress.update(self._task, description=job["phase"], completed=job["rows_read"])


def _summary(job: Any) -> None:
    table = Table(title=f"import {job['id']} ({job['source']})", show_header=False)
    for label, name in (
        ("status", "status"),
        ("rows read", "rows_read"),
        ("rows rejected", "rows_rejected"),
        ("rows unchanged", "rows_unchanged"),
        ("products to create", "planned_creates"),
        ("products to update", "planned_updates"),
        ("products created", "products_created"),
        ("products updated", "products_updated"),
        ("categories created", "categories_created"),
    ):
        table.add_row(label, str(job[name]))
    console.print(table)
    if job["error_code"]:
        console.print(f"[red]{job['error_code']}[/red] {job['error_message']}")
    elif job["rows_rejected"]:
        console.print(f"rejected rows: GET /api/v1/imports/{job['id']}/rejects.csv (or …/rejects)")


async def _run_job(url: str, settings: Settings, job_id: uuid.UUID | None, **new: Any) -> Any:
    db = await Database.connect(url, min_size=1, max_size=2)
    try:
        await require_current_schema(db.reader)
        if job_id is None:
            async with db.transaction() as conn:
                job = await create_job(conn, created_by=None, **new)
            job_id = job["id"]
            console.print(f"import job {job_id} (resume it with `mercato import resume {job_id}`)")
        with Progress(
            TextColumn("{task.description:>9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            run = ImportRun(
                db,
                job_id,
                batch_size=settings.import_batch_size,
                load_connections=settings.import_load_connections,
                on_progress=_Bar(progress),
            )
            return await run.run()
    finally:
        await db.close()


def _execute(job_id: uuid.UUID | None, **new: Any) -> None:
    settings = Settings().with_local_secrets()
    with database_url(settings) as url:
        try:
            job: asyncpg.Record = asyncio.run(_run_job(url, settings, job_id, **new))
        except DomainError as error:
            console.print(f"[red]{error.code}[/red] {error.detail_message}")
            raise typer.Exit(1) from error
    _summary(job)
    if job["status"] != "succeeded":
        raise typer.Exit(1)


@import_app.command("products")
def import_products(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    source: Annotated[str, typer.Option(help="The feed's source name, e.g. acme.")],
    mapping: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="The source's mapping (TOML)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Validate and unify; report what would change; load nothing.")
    ] = False,
) -> None:
    """Import a product feed (CSV, JSON array or NDJSON) into the catalog."""
    try:
        spec = parse_mapping(mapping.read_text("utf-8")) if mapping else default_mapping()
    except (ValueError, ValidationError) as error:
        console.print(f"[red]the mapping is not valid[/red]: {error}")
        raise typer.Exit(2) from error
    _execute(
        None,
        source=source,
        path=file.resolve(),
        file_name=file.name,
        spec=spec,
        dry_run=dry_run,
    )


@import_app.command("resume")
def import_resume(job: Annotated[uuid.UUID, typer.Argument(help="The job's id.")]) -> None:
    """Resume an interrupted import from its last committed batch."""
    _execute(job)


@import_app.command("prune")
def import_prune(
    days: Annotated[float | None, typer.Option(min=0, help="Keep this many days.")] = None,
) -> None:
    """Forget import jobs that ended longer ago than the retention window, now: with their
    rejects, staged rows left and uploaded files (the catalog's data stays); and uploads no
    job names (left by a process that died between saving one and recording its job)."""
    from mercato.ingest.api import imports_dir
    from mercato.ingest.retention import forget_ended_jobs, forget_orphan_uploads

    settings = Settings()
    keep = timedelta(days=days if days is not None else settings.import_retention_days)

    async def run(url: str) -> tuple[Any, int]:
        db = await Database.connect(url, min_size=1, max_size=1)
        try:
            await require_current_schema(db.reader)
            uploads = imports_dir(settings)
            forgotten = await forget_ended_jobs(db, keep=keep, owned_files=uploads)
            return forgotten, await forget_orphan_uploads(db, owned_files=uploads)
        finally:
            await db.close()

    with database_url(settings) as url:
        forgotten, orphans = asyncio.run(run(url))
    console.print(
        f"forgot {forgotten.jobs} jobs ({forgotten.rows} rejected or staged rows,"
        f" {forgotten.files} uploaded files) and {orphans} uploads no job names"
    )
