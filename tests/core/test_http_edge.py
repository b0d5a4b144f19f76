"""The HTTP edge: request ids, security headers, metrics, health."""

from __future__ import annotations

import httpx
from asgi_lifespan import LifespanManager

from mercato.app import create_app
from tests.factories import create_product
from tests.settings import make_settings


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert len(response.headers["x-request-id"]) == 32
    echoed = await client.get("/health/live", headers={"X-Request-ID": "trace-abc-123"})
    assert echoed.headers["x-request-id"] == "trace-abc-123"
    refused = await client.get("/health/live", headers={"X-Request-ID": "bad id; with spaces"})
    assert len(refused.headers["x-request-id"]) == 32


async def test_security_headers_are_set(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/products")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "strict-transport-security" not in response.headers


async def test_hsts_is_sent_behind_tls(client: httpx.AsyncClient) -> None:
    response = await client.get("https://test/health/live")
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_the_docs_page_loads_under_its_own_csp(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "cdn.jsdelivr.net" in response.headers["content-security-policy"]


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    product = await create_product(client, admin)
    await client.get(f"/api/v1/products/{product['id']}")
    text = (await client.get("/metrics", headers=admin)).text
    assert (
        'mercato_http_requests_total{method="GET",route="/api/v1/products/{product_id}",status="200"} 1.0'
        in text
    )
    assert "mercato_http_request_duration_seconds_bucket" in text
    assert 'mercato_db_pool_connections{state="idle"}' in text


async def test_health_endpoints_answer(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.json()["checks"] == {"database": "ok"}


async def test_access_log_lines_are_json_with_the_request_id(db: object, capfd: object) -> None:
    app = create_app(make_settings(access_log=True), database=db)  # type: ignore[arg-type]
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/health/live", headers={"X-Request-ID": "log-check-0001"})
    assert response.status_code == 200
    out = capfd.readouterr().out  # type: ignore[attr-defined]
    line = next(line for line in out.splitlines() if '"event":"request"' in line)
    assert '"request_id":"log-check-0001"' in line
    assert '"route":"/health/live"' in line


async def test_cors_allows_only_the_configured_origins(db: object) -> None:
    app = create_app(make_settings(cors_allow_origins=["https://shop.example"]), database=db)  # type: ignore[arg-type]
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            preflight = {
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "if-match",
            }
            allowed = await http.options(
                "/api/v1/products", headers={"Origin": "https://shop.example", **preflight}
            )
            denied = await http.options(
                "/api/v1/products", headers={"Origin": "https://evil.example", **preflight}
            )
            simple = await http.get("/api/v1/products", headers={"Origin": "https://shop.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert denied.status_code == 400
    assert "access-control-allow-origin" not in denied.headers
    assert "etag" in simple.headers["access-control-expose-headers"]
