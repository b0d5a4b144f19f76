"""What runs beside the API in `mercato serve`, or alone in `mercato worker`: each context's
background services, and the ports they are built on (payments, stock), chosen by settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Protocol, TypeVar

import structlog

from mercato.catalog.jobs import ReservationSweepJob
from mercato.core.config import Settings
from mercato.core.database import Database
from mercato.events.consumers import ConsumerRunner
from mercato.events.relay import relay_for
from mercato.events.retention import RetentionJob
from mercato.identity.jobs import ErasureJob
from mercato.ingest import ImportRunner
from mercato.ingest.api import imports_dir
from mercato.orders.catalog_client import CatalogStockClient
from mercato.orders.jobs import ExpiryJob, StockCallJob
from mercato.orders.stock import LocalStock, RemoteStock, StockPort
from mercato.payments.jobs import COMPENSATION, ReconcileJob
from mercato.payments.stripe import StripeProvider
from mercato.webhooks import DeliveryJob

log = structlog.get_logger("mercato")

STOCK_CALL_POLL = timedelta(seconds=0.5)


class BackgroundService(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


ServiceT = TypeVar("ServiceT", bound=BackgroundService)


@asynccontextmanager
async def running(service: ServiceT, name: str) -> AsyncIterator[ServiceT]:
    """Run a long-lived service (relay, retention) as a background task of this process."""
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop), name=f"mercato-{name}")
    try:
        yield service
    finally:
        stop.set()
        await task


def stock_port(settings: Settings, db: Database) -> StockPort:
    """In process in one process; over HTTP when the order context runs alone."""
    if settings.serve_context != "orders":
        return LocalStock()
    assert settings.catalog_url, "checked by Settings"
    assert settings.catalog_api_key, "checked by Settings"
    client = CatalogStockClient(
        base_url=settings.catalog_url,
        api_key=settings.catalog_api_key.get_secret_value(),
        connect_timeout=settings.catalog_connect_timeout_seconds,
        timeout=settings.catalog_timeout_seconds,
        breaker_threshold=settings.catalog_breaker_threshold,
        breaker_seconds=settings.catalog_breaker_seconds,
    )
    return RemoteStock(client, db)


def background_work(
    settings: Settings, db: Database, provider: StripeProvider, stock: StockPort
) -> list[tuple[BackgroundService, str]]:
    """What runs beside the API (or in `mercato worker`), each with its name: the order
    context's work alone, or every context's."""
    work: list[tuple[BackgroundService, str]] = [(relay_for(settings, db.url), "relay")]
    if settings.serve_context == "all":
        hourly = timedelta(hours=1)
        keep = timedelta(days=settings.event_retention_days)
        grace = timedelta(days=settings.account_erase_after_days)
        sweep = timedelta(seconds=settings.stock_reservation_sweep_seconds)
        work += [
            (RetentionJob(db, keep=keep, interval=hourly), "retention"),
            (ErasureJob(db, grace=grace, interval=hourly), "erasure"),
            (ReservationSweepJob(db, interval=sweep), "stock-reservation-sweep"),
        ]
    reconcile = ReconcileJob(
        db,
        provider,
        older_than=timedelta(seconds=settings.payment_reconcile_after_seconds),
        interval=timedelta(seconds=15),
        keep_webhook_events=timedelta(days=settings.payment_webhook_event_days),
    )
    expiry = timedelta(seconds=settings.order_expiry_sweep_seconds)
    work += [
        (ExpiryJob(db, interval=expiry), "order-expiry"),
        (reconcile, "payment-reconcile"),
        (ConsumerRunner(db, COMPENSATION), "compensation"),
    ]
    if isinstance(stock, RemoteStock):
        work.append((StockCallJob(db, stock, interval=STOCK_CALL_POLL), "stock-calls"))
    if settings.serve_context == "all":
        work.append((DeliveryJob(db, settings), "webhooks"))
        imports = ImportRunner(
            db,
            batch_size=settings.import_batch_size,
            load_connections=settings.import_load_connections,
            owned_files=imports_dir(settings),
            keep=timedelta(days=settings.import_retention_days),
        )
        work.append((imports, "imports"))
    return work


def payment_provider(settings: Settings) -> StripeProvider:
    return StripeProvider(
        base_url=settings.payment_api_base,
        api_key=settings.payment_api_key.get_secret_value(),
        timeout=settings.payment_timeout_seconds,
        breaker_threshold=settings.payment_breaker_threshold,
        breaker_seconds=settings.payment_breaker_seconds,
    )
