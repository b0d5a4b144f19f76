"""HTTP helpers shared by every context: JSON responses, the envelope, ETags."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from mercato.core.errors import PreconditionFailed, PreconditionRequired


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def envelope(data: Any, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The seed's response shape: `{"data": ..., "meta": {...}}`."""
    return {"data": data, "meta": meta or {}}


def version_etag(version: int) -> str:
    # The representation of a resource is a pure function of its row, and every write bumps
    # the version, so the version is a strong validator.
    return f'"{version}"'


def content_etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _etags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


def not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    tags = _etags(header)
    return "*" in tags or etag in tags


def cached_json(request: Request, body: bytes, etag: str, status_code: int = 200) -> Response:
    """A JSON response that answers 304 when the client already holds this representation."""
    headers = {"etag": etag, "cache-control": "no-cache"}
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


def json_with_etag(body: bytes, etag: str, status_code: int = 200) -> Response:
    """A write's answer: the new representation and its validator (never a 304)."""
    return Response(
        body, status_code=status_code, media_type="application/json", headers={"etag": etag}
    )


def expected_version(request: Request, *, required: bool = True) -> int | None:
    """The version the client says it is changing, from `If-Match` (a version ETag).

    Returns None for `If-Match: *` or (when not required) no header at all.
    """
    header = request.headers.get("if-match")
    if header is None:
        if required:
            raise PreconditionRequired()
        return None
    tags = [tag.strip() for tag in header.split(",") if tag.strip()]
    if "*" in tags:
        return None
    # If-Match uses strong comparison: a weak tag never matches.
    for tag in tags:
        if tag.startswith('"') and tag.endswith('"') and tag[1:-1].isdigit():
            return int(tag[1:-1])
    raise PreconditionFailed()
