"""The served OpenAPI document matches the committed snapshot (`make openapi` updates it)."""

from __future__ import annotations

from pathlib import Path

import httpx

from mercato.app import openapi_document

SNAPSHOT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def test_the_openapi_document_matches_the_snapshot() -> None:
    assert openapi_document() == SNAPSHOT.read_text(), (
        "The API changed. If that was deliberate, run `make openapi` and commit docs/openapi.json."
    )


async def test_the_document_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/products/{product_id}" in paths
    assert "/api/v1/categories" in paths
