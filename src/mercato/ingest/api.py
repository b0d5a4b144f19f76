"""The import API (`imports:manage`): upload a feed as a job, follow it, read its rejects."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import orjson
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from mercato.core.access import current_principal, requires, route_adder
from mercato.core.config import Settings
from mercato.core.deps import cursor_codec, database
from mercato.core.http import envelope
from mercato.core.pagination import decode_stamp_cursor, next_page, stamp_position
from mercato.core.pagination import fingerprint as query_fingerprint
from mercato.ingest import repository, service
from mercato.ingest.errors import InvalidMapping
from mercato.ingest.mapping import MappingSpec, default_mapping, parse_mapping
from mercato.ingest.schemas import JobEnvelope, JobListQuery, JobPage, RejectListQuery, RejectPage

MANAGE = "imports:manage"
PRIVATE = {"cache-control": "no-store"}
MAX_MAPPING_BYTES = 256 * 1024
CSV_PAGE = 5_000
# A spreadsheet runs a cell starting with these as a formula: rejected values are shown as
# text, prefixed with a quote (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def imports_dir(settings: Settings) -> Path:
    return settings.data_dir / "imports"


def _json(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status_code,
        media_type="application/json",
        headers={**PRIVATE, **(headers or {})},
    )


def job_json(job: Any) -> dict[str, Any]:
    counts = {
        name: job[name]
        for name in (
            "rows_read",
            "rows_rejected",
            "rows_unchanged",
            "planned_creates",
            "planned_updates",
            "products_created",
            "products_updated",
            "categories_created",
            "loaded_through",
        )
    }
    error = (
        {"code": job["error_code"], "message": job["error_message"]} if job["error_code"] else None
    )
    return {
        "id": str(job["id"]),
        "source": job["source"],
        "file_name": job["file_name"],
        "file_size": job["file_size"],
        "file_sha256": job["file_sha256"].hex(),
        "format": job["format"],
        "dry_run": job["dry_run"],
        "status": job["status"],
        "phase": job["phase"],
        "counts": counts,
        "error": error,
        "mapping": job["mapping"],
        "created_by": str(job["created_by"]) if job["created_by"] else None,
        "version": job["version"],
        "created_at": job["created_at"],
        "updated_at": job["updated_at"],
        "started_at": job["started_at"],
        "finished_at": job["finished_at"],
    }


async def _mapping(upload: UploadFile | None) -> MappingSpec:
    if upload is None:
        return default_mapping()
    text = await upload.read(MAX_MAPPING_BYTES + 1)
    if len(text) > MAX_MAPPING_BYTES:
        raise InvalidMapping(f"The mapping is larger than {MAX_MAPPING_BYTES} bytes.")
    try:
        return parse_mapping(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidMapping("The mapping is not UTF-8 text.") from None
    except ValidationError as error:
        details = [
            {"field": "mapping." + ".".join(map(str, e["loc"])), "message": e["msg"]}
            for e in error.errors(include_url=False)
        ]
        raise InvalidMapping(details=details) from None
    except ValueError as error:
        raise InvalidMapping(str(error)) from None


def _keep(source: BinaryIO, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with destination.open("xb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


async def create_import(
    request: Request,
    source: Annotated[str, Form(min_length=1, max_length=63)],
    file: Annotated[UploadFile, File(description="The feed: CSV, JSON array or NDJSON.")],
    mapping: Annotated[UploadFile | None, File(description="The source's mapping (TOML).")] = None,
    dry_run: Annotated[bool, Form()] = False,
) -> Response:
    service.check_source(source)
    spec = await _mapping(mapping)
    settings: Settings = request.app.state.settings
    path = imports_dir(settings) / f"{uuid.uuid4()}.feed"
    await asyncio.to_thread(_keep, file.file, path)
    try:
        async with database(request).transaction() as conn:
            job = await service.create_job(
                conn,
                source=source,
                path=path,
                file_name=file.filename or "upload",
                spec=spec,
                dry_run=dry_run,
                created_by=current_principal(request).subject_id,
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    runner = getattr(request.app.state, "import_runner", None)
    if runner is not None:
        runner.wake()
    return _json(envelope(job_json(job)), 202, {"location": f"/api/v1/imports/{job['id']}"})


async def list_imports(request: Request, params: Annotated[JobListQuery, Query()]) -> Response:
    codec = cursor_codec(request)
    bound_to = query_fingerprint("imports")
    rows = await repository.list_jobs(
        database(request).reader,
        limit=params.limit + 1,
        before=decode_stamp_cursor(codec, bound_to, params.cursor),
    )
    rows, next_cursor = next_page(
        codec, bound_to, rows, limit=params.limit, position=stamp_position("created_at")
    )
    meta = {"limit": params.limit, "count": len(rows), "next_cursor": next_cursor}
    return _json(envelope([job_json(row) for row in rows], meta))


async def get_import(request: Request, job_id: uuid.UUID) -> Response:
    job = await service.get_job(database(request).reader, job_id)
    return _json(envelope(job_json(job)), headers={"etag": f'"{job["version"]}"'})


async def list_rejects(
    request: Request, job_id: uuid.UUID, params: Annotated[RejectListQuery, Query()]
) -> Response:
    reader = database(request).reader
    await service.get_job(reader, job_id)
    codec = cursor_codec(request)
    bound_to = query_fingerprint("import-rejects", str(job_id))
    after = None
    if params.cursor:
        row_number, seq = codec.decode(bound_to, params.cursor)
        after = (int(row_number), int(seq))
    rows = await repository.list_rejects(reader, job_id, limit=params.limit + 1, after=after)
    rows, next_cursor = next_page(
        codec,
        bound_to,
        rows,
        limit=params.limit,
        position=lambda row: [row["row_number"], row["seq"]],
    )
    meta = {"limit": params.limit, "count": len(rows), "next_cursor": next_cursor}
    return _json(envelope([dict(row) for row in rows], meta))


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


async def download_rejects(request: Request, job_id: uuid.UUID) -> Response:
    reader = database(request).reader
    job = await service.get_job(reader, job_id)

    async def lines() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["source", "row_number", "field", "rule", "value", "message"])
        after: tuple[int, int] | None = None
        while True:
            rows = await repository.list_rejects(reader, job_id, limit=CSV_PAGE, after=after)
            for row in rows:
                writer.writerow(
                    (
                        job["source"],
                        row["row_number"],
                        row["field"],
                        row["rule"],
                        _cell(row["value"]),
                        _cell(row["message"]),
                    )
                )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(rows) < CSV_PAGE:
                return
            after = (rows[-1]["row_number"], rows[-1]["seq"])

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={
            **PRIVATE,
            "content-disposition": f'attachment; filename="import-{job_id}-rejects.csv"',
        },
    )


def register_routes(app: FastAPI, *, prefix: str) -> None:
    add = route_adder(
        app,
        prefix=f"{prefix}/imports",
        tag="imports",
        errors=(400, 401, 403, 404, 413, 415, 422, 429),
    )
    manage = requires(MANAGE)
    add(
        "",
        create_import,
        "POST",
        manage,
        "Upload a product feed; it is imported in the background (202 with the job)",
        status_code=202,
        response_model=JobEnvelope,
    )
    add("", list_imports, "GET", manage, "List import jobs, newest first", response_model=JobPage)
    add(
        "/{job_id}",
        get_import,
        "GET",
        manage,
        "An import job: its status, phase, counts and error",
        response_model=JobEnvelope,
    )
    add(
        "/{job_id}/rejects",
        list_rejects,
        "GET",
        manage,
        "The rows an import rejected, with the field, the rule and the offending value",
        response_model=RejectPage,
    )
    add(
        "/{job_id}/rejects.csv",
        download_rejects,
        "GET",
        manage,
        "The rejected rows as a CSV file",
        response_class=StreamingResponse,
    )
