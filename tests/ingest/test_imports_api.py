"""The import API over HTTP: upload, follow the job (run by the app's own runner), read and
download the rejects; access rules and bad requests."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from mercato.app import create_app
from tests.factories import TestUser, identity_runtime, make_user
from tests.ingest.conftest import ACME
from tests.settings import make_settings

API = "/api/v1/imports"


@dataclass
class Served:
    http: httpx.AsyncClient
    admin: TestUser
    customer: TestUser


@pytest.fixture
async def served(fresh_db_url: str) -> AsyncIterator[Served]:
    async with identity_runtime(fresh_db_url) as runtime, runtime.db.transaction() as conn:
        admin = await make_user(conn, runtime, roles=("admin",))
        customer = await make_user(conn, runtime)
    app = create_app(make_settings(database_url=fresh_db_url, import_max_upload_bytes=64_000))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Served(http, admin, customer)


def _upload(feed: Path, mapping: Path | None = None, **form: Any) -> dict[str, Any]:
    files: dict[str, Any] = {"file": (feed.name, feed.read_bytes(), "text/csv")}
    if mapping is not None:
        files["mapping"] = (mapping.name, mapping.read_bytes(), "application/toml")
    return {"files": files, "data": {"source": "acme", **form}}


async def _finished(served: Served, job_id: str) -> dict[str, Any]:
    for _ in range(200):
        response = await served.http.get(f"{API}/{job_id}", headers=served.admin.headers)
        job: dict[str, Any] = response.json()["data"]
        if job["status"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"the import did not finish: {job}")


async def test_staff_upload_a_feed_and_follow_it_to_the_end(served: Served) -> None:
    response = await served.http.post(API, headers=served.admin.headers, **_upload(*ACME))
    assert response.status_code == 202
    created = response.json()["data"]
    assert response.headers["location"] == f"{API}/{created['id']}"
    assert (created["status"], created["format"], created["source"]) == ("queued", "csv", "acme")
    job = await _finished(served, created["id"])
    assert job["status"] == "succeeded"
    assert job["counts"] | {"loaded_through": 3} == {
        "rows_read": 6,
        "rows_rejected": 3,
        "rows_unchanged": 0,
        "planned_creates": 3,
        "planned_updates": 0,
        "products_created": 3,
        "products_updated": 0,
        "categories_created": 5,
        "loaded_through": 3,
    }
    listed = await served.http.get(API, headers=served.admin.headers)
    assert [j["id"] for j in listed.json()["data"]] == [created["id"]]


async def test_rejects_are_listed_and_downloadable_as_csv(served: Served, tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    feed.write_text('sku,name,price\n1,=HYPERLINK("http://x"),nope\n2,Fine,1.00\n3,,2\n')
    response = await served.http.post(API, headers=served.admin.headers, **_upload(feed))
    job = await _finished(served, response.json()["data"]["id"])
    page = await served.http.get(
        f"{API}/{job['id']}/rejects", params={"limit": 1}, headers=served.admin.headers
    )
    first = page.json()
    assert [(r["row_number"], r["field"], r["rule"]) for r in first["data"]] == [
        (1, "price", "decimal_parsing")
    ]
    rest = await served.http.get(
        f"{API}/{job['id']}/rejects",
        params={"cursor": first["meta"]["next_cursor"]},
        headers=served.admin.headers,
    )
    assert [(r["row_number"], r["field"], r["rule"]) for r in rest.json()["data"]] == [
        (3, "name", "missing")
    ]
    download = await served.http.get(f"{API}/{job['id']}/rejects.csv", headers=served.admin.headers)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0] == ["source", "row_number", "field", "rule", "value", "message"]
    assert rows[1][:5] == ["acme", "1", "price", "decimal_parsing", "nope"]
    assert rows[2][:4] == ["acme", "3", "name", "missing"]


async def test_a_formula_in_a_rejected_value_is_defused_in_the_csv(
    served: Served, tmp_path: Path
) -> None:
    feed = tmp_path / "feed.csv"
    feed.write_text("sku,name,price\n=cmd|calc,Name,1.00\n")
    response = await served.http.post(API, headers=served.admin.headers, **_upload(feed))
    job = await _finished(served, response.json()["data"]["id"])
    download = await served.http.get(f"{API}/{job['id']}/rejects.csv", headers=served.admin.headers)
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[1][4] == "'=cmd|calc"


async def test_only_staff_with_imports_manage_may_import(served: Served) -> None:
    anonymous = await served.http.post(API, **_upload(*ACME))
    assert anonymous.status_code == 401
    customer = await served.http.post(API, headers=served.customer.headers, **_upload(*ACME))
    assert customer.status_code == 403
    assert customer.json()["error"]["code"] == "FORBIDDEN"
    listing = await served.http.get(API, headers=served.customer.headers)
    assert listing.status_code == 403


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        (b'[fields]\nprice = { column = "p", transforms = ["eval"] }', "mapping.fields.price"),
        (b"not = [toml", None),
        (b"\xff\xfe", None),
    ],
)
async def test_a_bad_mapping_is_refused_before_anything_is_queued(
    served: Served, tmp_path: Path, mapping: bytes, field: str | None
) -> None:
    bad = tmp_path / "mapping.toml"
    bad.write_bytes(mapping)
    response = await served.http.post(API, headers=served.admin.headers, **_upload(ACME[0], bad))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "IMPORT_MAPPING_INVALID"
    if field is not None:
        assert error["details"][0]["field"].startswith(field)
    listed = await served.http.get(API, headers=served.admin.headers)
    assert listed.json()["data"] == []


async def test_bad_sources_formats_and_sizes_are_refused(served: Served, tmp_path: Path) -> None:
    bad_source = await served.http.post(
        API, headers=served.admin.headers, **_upload(ACME[0], source="Not A Name")
    )
    assert (bad_source.status_code, bad_source.json()["error"]["code"]) == (
        422,
        "IMPORT_REQUEST_INVALID",
    )
    sheet = tmp_path / "feed.xlsx"
    sheet.write_bytes(b"PK\x03\x04")
    unknown = await served.http.post(API, headers=served.admin.headers, **_upload(sheet))
    assert unknown.status_code == 422
    assert "cannot tell the format" in unknown.json()["error"]["message"]
    huge = tmp_path / "huge.csv"
    huge.write_bytes(b"sku,name,price\n" + b"1,x,1\n" * 20_000)
    too_large = await served.http.post(API, headers=served.admin.headers, **_upload(huge))
    assert too_large.status_code == 413
    missing = await served.http.post(
        API, headers=served.admin.headers, data={"source": "acme"}, files={"x": ("a", b"1")}
    )
    assert missing.status_code == 422
    json_body = await served.http.post(API, headers=served.admin.headers, json={"source": "a"})
    assert json_body.status_code in (415, 422)


async def test_an_unknown_job_is_not_found(served: Served) -> None:
    response = await served.http.get(
        f"{API}/00000000-0000-4000-8000-000000000000", headers=served.admin.headers
    )
    assert (response.status_code, response.json()["error"]["code"]) == (404, "IMPORT_NOT_FOUND")
