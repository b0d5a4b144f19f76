"""Logging (structlog, JSON, request id on every line) and Prometheus metrics."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from contextvars import ContextVar

import orjson
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def _add_request_id(
    _: object, __: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    request_id = request_id_var.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def configure_logging(*, level: str = "INFO", json: bool = True, cache: bool = True) -> None:
    """`cache=False` keeps loggers re-configurable (tests capture logs after the app has
    configured them); production caches each logger's pipeline on first use."""
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor
    if json:
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        logger_factory: structlog.types.WrappedLogger = structlog.BytesLoggerFactory(
            sys.stdout.buffer
        )
    else:
        renderer = structlog.dev.ConsoleRenderer()
        logger_factory = structlog.PrintLoggerFactory(sys.stdout)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=logger_factory,
        cache_logger_on_first_use=cache,
    )
    # Libraries that use the standard logging module (uvicorn, asyncpg, alembic) go to
    # stderr at WARNING and above; uvicorn's own access log is off: ours carries more.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("uvicorn.access").disabled = True


# Buckets from 1 ms to 5 s: the range an API's latency objectives are written in.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)


class HttpMetrics:
    """RED metrics per route template. Label children are cached: `.labels()` is not free."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "mercato_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "mercato_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self.requests.labels(method, route, str(status))
            self._counters[(method, route, status)] = counter
        counter.inc()
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self.latency.labels(method, route)
            self._histograms[(method, route)] = histogram
        histogram.observe(seconds)


class PoolCollector(Collector):
    """Reads the database pool's size at scrape time."""

    def __init__(self, stats: Callable[[], tuple[int, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        size, idle = self._stats()
        gauge = GaugeMetricFamily(
            "mercato_db_pool_connections", "Database pool connections by state.", labels=["state"]
        )
        gauge.add_metric(["in_use"], size - idle)
        gauge.add_metric(["idle"], idle)
        yield gauge
