"""The composition root: `create_app(settings)` wires every context into one ASGI app."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import structlog
import uvicorn
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import HTMLResponse
from starlette.types import Scope

from mercato import __version__
from mercato.background import background_work, payment_provider, running, stock_port
from mercato.catalog import api as catalog_api
from mercato.catalog import reservations_api
from mercato.core import health
from mercato.core.access import PUBLIC, add_route, add_security_scheme
from mercato.core.authentication import AuthenticationMiddleware
from mercato.core.config import Environment, Settings
from mercato.core.database import Database
from mercato.core.embedded import EmbeddedPostgres
from mercato.core.error_handlers import install_error_handlers
from mercato.core.mail import mailer_from_settings
from mercato.core.middleware import (
    BodyGuardMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from mercato.core.migrate import require_current_schema
from mercato.core.observability import HttpMetrics, PoolCollector, configure_logging
from mercato.core.pagination import CursorCodec
from mercato.core.ratelimit import FailureThrottle, RateLimiter, RateLimitMiddleware
from mercato.core.security import PRINCIPAL_KEY
from mercato.event_contracts import EVENT_PAYLOADS
from mercato.events import api as events_api
from mercato.identity import IdentityRuntime
from mercato.identity import admin_api as identity_admin_api
from mercato.identity import api as identity_api
from mercato.identity.tokens import ensure_signing_key
from mercato.ingest import ImportRunner
from mercato.ingest import api as ingest_api
from mercato.orders import api as orders_api
from mercato.payments import api as payments_api
from mercato.realtime import api as realtime_api
from mercato.realtime.api import ConnectionLimits
from mercato.realtime.hub import StreamHub
from mercato.sandbox import create_sandbox_app
from mercato.webhooks import WebhookRuntime
from mercato.webhooks import api as webhooks_api

log = structlog.get_logger("mercato")

API_PREFIX = "/api/v1"


def create_served_app() -> FastAPI:
    """`mercato serve`'s factory (each worker process builds its own app). What start-up
    built is frozen out of the garbage collector's reach once the lifespan has run
    (`_freeze_startup_heap`)."""
    return create_app()


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    """Build the app. Pass `database` to share a pool the caller owns (tests do)."""
    settings = (settings or Settings()).with_local_secrets()
    configure_logging(
        level=settings.log_level,
        json=settings.log_json,
        cache=settings.environment is not Environment.TEST,
    )
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry)
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    limiter = RateLimiter.create(redis_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as resources:
            db = (
                database
                if database is not None
                else await resources.enter_async_context(_owned_database(settings))
            )
            await require_current_schema(db.reader)
            app.state.db = db
            identity = IdentityRuntime(
                settings,
                db,
                mailer=mailer_from_settings(settings),
                throttle=FailureThrottle(limiter),
            )
            async with db.transaction() as conn:
                await ensure_signing_key(conn, identity.ring)
            app.state.identity = app.state.authenticator = identity
            app.state.payment_provider = provider = payment_provider(settings)
            resources.push_async_callback(provider.close)
            resources.push_async_callback(limiter.close)
            resources.push_async_callback(identity.mail.drain)
            app.state.webhooks = webhooks = WebhookRuntime.from_settings(
                settings, event_types=webhook_event_types()
            )
            resources.push_async_callback(webhooks.close)
            registry.register(PoolCollector(db.pool_stats))
            if _runs_sandbox(settings) and database is None:
                await resources.enter_async_context(_sandbox(settings))
            app.state.stock = stock = stock_port(settings, db)
            resources.push_async_callback(stock.close)
            if settings.relay_in_process and database is None:
                for service, name in background_work(settings, db, provider, stock):
                    await resources.enter_async_context(running(service, name))
                    if isinstance(service, ImportRunner):
                        app.state.import_runner = service  # uploads wake it
            app.state.stream_hub = hub = StreamHub(db)
            resources.push_async_callback(hub.stop)
            if database is None and settings.environment is not Environment.TEST:
                _freeze_startup_heap()
            log.info("started", version=__version__, environment=settings.environment.value)
            yield
        log.info("stopped")

    middleware: list[Middleware] = [
        Middleware(SecurityHeadersMiddleware, hsts=settings.hsts),
        Middleware(RequestContextMiddleware, metrics=metrics, access_log=settings.access_log),
    ]
    if settings.cors_allow_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_allow_origins,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=[
                    "authorization",
                    "content-type",
                    "if-match",
                    "if-none-match",
                    "idempotency-key",
                    "x-request-id",
                ],
                expose_headers=[
                    "etag",
                    "location",
                    "x-request-id",
                    "retry-after",
                    "ratelimit-limit",
                    "ratelimit-remaining",
                    "ratelimit-reset",
                    "ratelimit-policy",
                ],
                max_age=600,
            )
        )
    # Authentication runs before rate limiting, which counts signed-in callers per account.
    middleware.append(Middleware(AuthenticationMiddleware))
    if settings.rate_limits_enabled:
        middleware.append(
            Middleware(
                RateLimitMiddleware,
                limiter=limiter,
                anonymous=settings.rate_limit_anonymous,
                authenticated=settings.rate_limit_authenticated,
                sensitive=settings.rate_limit_sensitive,
                sensitive_paths=frozenset(
                    API_PREFIX + path for path in identity_api.SENSITIVE_PATHS
                ),
                identify=_verified_subject,
                trusted_proxies=settings.trusted_proxies,
                exempt_paths=frozenset({f"{API_PREFIX}/payments/webhook"}),
            )
        )
    middleware.append(
        Middleware(
            BodyGuardMiddleware,
            max_body_bytes=settings.max_body_bytes,
            other_media_types={f"{API_PREFIX}/imports": ("multipart/form-data",)},
            larger_bodies={f"{API_PREFIX}/imports": settings.import_max_upload_bytes},
        )
    )

    app = FastAPI(
        # FastAPI's native OpenTelemetry hooks run on every request even with no provider
        # configured; Mercato's own metrics cover RED, and tracing is opt-in.
        telemetry={"tracing": settings.otel_tracing, "metrics": False, "logs": False},
        title="Mercato",
        version=__version__,
        summary="A commerce backend on PostgreSQL.",
        lifespan=lifespan,
        middleware=middleware,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.import_runner = None
    app.state.metrics_registry = registry
    secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
    app.state.cursor_codec = CursorCodec(secret.encode())
    install_error_handlers(app)
    _document_security(app)
    _add_docs(app)
    app.state.stream_limits = ConnectionLimits(
        per_instance=settings.stream_max_connections, per_client=settings.stream_max_per_client
    )
    health.register_routes(app)
    contexts = ORDERS_ALONE if settings.serve_context == "orders" else EVERY_CONTEXT
    for register_routes in contexts:
        register_routes(app, prefix=API_PREFIX)
    return app


# The routes of each deployment: everything in one process, or the order context alone
# (with payments, which pay for its orders), reaching the catalog's stock over HTTP.
# Starlette tries routes in registration order, so the busiest contexts come first:
# reaching the 50th route cost an order ~40 µs of matching. No two contexts' paths overlap.
ORDERS_ALONE = (orders_api.register_routes, payments_api.register_routes)
EVERY_CONTEXT = (
    catalog_api.register_routes,
    *ORDERS_ALONE,
    identity_api.register_routes,
    reservations_api.register_routes,
    identity_admin_api.register_routes,
    events_api.register_routes,
    realtime_api.register_routes,
    webhooks_api.register_routes,
    ingest_api.register_routes,
)


def _freeze_startup_heap() -> None:
    """Move everything built so far (modules, the app and its routes, pools, runtimes) out of
    the cyclic collector's reach: it lives as long as the process, and a full collection
    that walks it stalls every request in flight. On the bench machine full collections
    went from 90-115 ms to 10-16 ms (W4, open loop). Not in tests: they build many apps in
    one process, and frozen objects are never freed.

    The youngest generation is collected every 10,000 net allocations instead of 700: a
    request allocates a few hundred container objects, nearly all freed by reference
    counting, so at the default most requests paid for a collection (3% of a W4 server's
    CPU); later collections see fewer survivors, and each stays short."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)


YOUNG_GENERATION_THRESHOLD = 10_000


def webhook_event_types() -> frozenset[str]:
    """What webhooks may subscribe to: every event type with a published contract."""
    return frozenset(event_type for event_type, _version in EVENT_PAYLOADS)


def _runs_sandbox(settings: Settings) -> bool:
    return settings.payment_sandbox and settings.environment is Environment.DEVELOPMENT


@asynccontextmanager
async def _sandbox(settings: Settings) -> AsyncIterator[None]:
    """The local payment sandbox beside the API (development): `make run` needs no
    provider account. With several workers, the first to bind the port runs it."""
    address = urlsplit(settings.payment_api_base)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((address.hostname or "127.0.0.1", address.port or 80))
    except OSError:
        listener.close()
        log.info("payment_sandbox_elsewhere", address=settings.payment_api_base)
        yield
        return
    secret = settings.payment_webhook_secret
    assert secret is not None, "settings.with_local_secrets() fills it"
    webhook = f"{settings.public_base_url.rstrip('/')}{API_PREFIX}/payments/webhook"
    sandbox = create_sandbox_app(webhook_endpoints=[(webhook, secret.get_secret_value())])
    server = uvicorn.Server(uvicorn.Config(sandbox, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[listener]), name="mercato-payment-sandbox")
    log.info("payment_sandbox_started", address=settings.payment_api_base)
    try:
        yield
    finally:
        server.should_exit = True
        await task
        listener.close()


def _verified_subject(scope: Scope) -> str | None:
    """The rate limiter's account key: only a principal the middleware authenticated."""
    principal = (scope.get("state") or {}).get(PRINCIPAL_KEY)
    return str(principal.subject_id) if principal is not None else None


@asynccontextmanager
async def _owned_database(settings: Settings) -> AsyncIterator[Database]:
    """A pool on DATABASE_URL, or on the embedded server when none is configured."""
    async with AsyncExitStack() as resources:
        url = settings.database_url
        if url is None:
            embedded = EmbeddedPostgres(settings.data_dir)
            url = embedded.start()
            resources.callback(embedded.stop)
        db = await Database.connect(
            url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )
        resources.push_async_callback(db.close)
        yield db


def _document_security(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_security_scheme(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_docs(app: FastAPI) -> None:
    # The docs pages are registered by hand so that they, too, declare an access rule.
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Mercato API")

    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="Mercato API")

    for path, endpoint in (("/docs", swagger), ("/redoc", redoc)):
        add_route(app, path, endpoint, method="GET", access=PUBLIC, include_in_schema=False)


def openapi_document() -> str:
    """The API's OpenAPI document, stably formatted (the committed snapshot's format)."""
    settings = Settings(
        environment=Environment.TEST,
        secret_key="x" * 32,
        data_keys="1:" + "A" * 43 + "=",
        blind_index_key="x" * 32,
        payment_webhook_secret="whsec_" + "x" * 32,
    )
    document = create_app(settings).openapi()
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
