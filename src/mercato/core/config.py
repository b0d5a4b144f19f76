"""Typed settings, read from the environment (and `.env`), grouped by concern."""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MERCATO_", env_file=".env", extra="ignore", frozen=True
    )

    environment: Environment = Environment.DEVELOPMENT

    # Database. Without a URL, an embedded PostgreSQL is started in `data_dir`.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "MERCATO_DATABASE_URL")
    )
    data_dir: Path = Path(".mercato")
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=20, ge=1)
    db_statement_timeout_ms: int = Field(default=5_000, ge=100)

    # Events. The relay runs inside `serve` unless a separate `mercato worker` runs it;
    # with a broker URL it also publishes every event to RabbitMQ.
    amqp_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AMQP_URL", "MERCATO_AMQP_URL")
    )
    relay_in_process: bool = True
    event_retention_days: float = Field(default=7.0, gt=0)

    # Real-time streams.
    stream_buffer_messages: int = Field(default=1_000, ge=10)
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # A client whose send buffer stays full this long is closed as a slow consumer.
    stream_stall_seconds: float = Field(default=10.0, gt=0)
    stream_max_connections: int = Field(default=10_000, ge=1)
    stream_max_per_client: int = Field(default=100, ge=1)

    # Secrets. In development they default to values kept in `data_dir`; production
    # refuses to start without them (see `require_production_secrets`).
    secret_key: SecretStr | None = None
    # Personal data at rest: AES-256-GCM data keys as "version:base64key,..." (the highest
    # version encrypts, every listed version decrypts) and the key of the email blind index.
    data_keys: SecretStr | None = None
    blind_index_key: SecretStr | None = None

    # Identity. Token lifetimes, password hashing cost (OWASP's argon2id baseline), and
    # the links put in outgoing mail.
    jwt_issuer: str = "mercato"
    jwt_audience: str = "mercato-api"
    access_token_seconds: int = Field(default=900, ge=30, le=3_600)
    refresh_token_days: float = Field(default=30.0, gt=0)
    verify_email_hours: float = Field(default=48.0, gt=0)
    password_reset_minutes: float = Field(default=30.0, gt=0)
    account_erase_after_days: float = Field(default=30.0, ge=0)
    argon2_memory_kib: int = Field(default=19_456, ge=8)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_parallelism: int = Field(default=1, ge=1)
    public_base_url: str = "http://127.0.0.1:8000"

    # Orders: how long stock is held for an unpaid order, and how often the sweep that
    # expires unpaid orders (and releases their stock) runs.
    order_reservation_minutes: float = Field(default=15.0, gt=0)
    order_expiry_sweep_seconds: float = Field(default=30.0, gt=0)

    # Which contexts this process serves: "all" (one process; orders take stock in process,
    # in their own transaction) or "orders" (orders and payments alone; stock is reserved
    # through the catalog's port over HTTP at `catalog_url`, as the service whose API key,
    # `catalog_api_key`, holds `stock:reserve`). Calls to the catalog have these timeouts
    # (connect; each read), are retried a few times, and a breaker stops them for
    # `catalog_breaker_seconds` after `catalog_breaker_threshold` failed calls in a row.
    serve_context: Literal["all", "orders"] = "all"
    catalog_url: str | None = None
    catalog_api_key: SecretStr | None = None
    catalog_connect_timeout_seconds: float = Field(default=1.0, gt=0)
    catalog_timeout_seconds: float = Field(default=5.0, gt=0)
    catalog_breaker_threshold: int = Field(default=5, ge=1)
    catalog_breaker_seconds: float = Field(default=10.0, gt=0)
    # The catalog's side: a reservation made over HTTP and never confirmed (its caller died
    # before recording its order) is released after this long; the sweep looks this often.
    stock_reservation_minutes: float = Field(default=15.0, gt=0)
    stock_reservation_sweep_seconds: float = Field(default=10.0, gt=0)

    # Payments: a provider speaking Stripe's PaymentIntents protocol. Without a base URL,
    # development and tests use the local sandbox (`mercato sandbox-pay`) at this address.
    payment_api_base: str = "http://127.0.0.1:12111"
    payment_api_key: SecretStr = SecretStr("sk_test_sandbox")
    payment_webhook_secret: SecretStr | None = None
    payment_timeout_seconds: float = Field(default=10.0, gt=0)
    # Consecutive provider failures that open the circuit breaker, and how long it stays open.
    payment_breaker_threshold: int = Field(default=5, ge=1)
    payment_breaker_seconds: float = Field(default=30.0, gt=0)
    # Development only: `mercato serve` also runs the local sandbox at payment_api_base.
    payment_sandbox: bool = True
    # Payments still unsettled after this long are checked with the provider.
    payment_reconcile_after_seconds: float = Field(default=120.0, gt=0)
    # Provider event ids are remembered this long, so that a redelivered event is
    # acknowledged without being applied again. Providers retry for a few days at most
    # (Stripe: up to three days) and Stripe lists events for a manual resend for 30 days;
    # a captured request replayed later is refused by its signature's timestamp (5 minutes).
    payment_webhook_event_days: float = Field(default=30.0, gt=0)

    # Outbound webhooks. Each attempt has this timeout (connect, and each read); a failing
    # event is retried with exponential backoff and full jitter (base, cap) up to
    # `webhook_max_attempts`, then its subscription is paused. At most
    # `webhook_max_response_bytes` of an answer are read. `webhook_concurrency`
    # subscriptions are delivered at once per process.
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_backoff_seconds: float = Field(default=1.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=3_600.0, gt=0)
    webhook_max_response_bytes: int = Field(default=65_536, ge=0, le=1_048_576)
    webhook_concurrency: int = Field(default=10, ge=1, le=100)
    # The attempts log keeps this many days.
    webhook_log_days: float = Field(default=30.0, gt=0)
    # The SSRF guard refuses receivers at any non-global address (private, loopback,
    # link-local, …) unless it lies in one of these CIDRs, e.g. "10.20.0.0/16".
    webhook_allowed_networks: Annotated[list[str], NoDecode] = []

    # Product imports. Uploaded feeds are kept under `data_dir/imports` until their job
    # ends, at most `import_max_upload_bytes` each. A job loads `import_batch_size`
    # products per transaction.
    import_max_upload_bytes: int = Field(default=1 << 30, ge=1024)
    import_batch_size: int = Field(default=5_000, ge=1, le=50_000)
    # Load batches run on this many connections at once (PostgreSQL does the work: more
    # than the server's cores buys nothing).
    import_load_connections: int = Field(default=2, ge=1, le=8)
    # An ended job (succeeded or failed) is forgotten this long after it ended: its row, its
    # rejects and its uploaded file, if still there. The catalog's record of what each
    # source fed (source records, provenance) stays.
    import_retention_days: float = Field(default=30.0, gt=0)

    # Outgoing mail: SMTP when a host is set, otherwise written under `data_dir/mail`.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str = "Mercato <no-reply@mercato.local>"

    # Rate limits (the `limits` notation, e.g. "100/minute"), shared through Redis when
    # REDIS_URL is set, per process otherwise.
    redis_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "MERCATO_REDIS_URL")
    )
    rate_limits_enabled: bool = True
    rate_limit_anonymous: str = "300/minute"
    rate_limit_authenticated: str = "1200/minute"
    rate_limit_sensitive: str = "10/minute"

    # HTTP edge.
    cors_allow_origins: Annotated[list[str], NoDecode] = []
    max_body_bytes: int = Field(default=1_048_576, ge=1_024)
    hsts: bool = False
    trusted_proxies: Annotated[list[str], NoDecode] = ["127.0.0.1"]

    # Observability.
    log_level: str = "INFO"
    log_json: bool = True
    access_log: bool = True
    metrics_public: bool = False
    # OpenTelemetry request spans through FastAPI's native support (uses the globally
    # configured tracer provider, e.g. from the OTEL_* environment of opentelemetry-sdk).
    otel_tracing: bool = False

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, values: dict[str, object]) -> dict[str, object]:
        for key in ("cors_allow_origins", "trusted_proxies", "webhook_allowed_networks"):
            raw = values.get(key)
            if isinstance(raw, str):
                values[key] = [item.strip() for item in raw.split(",") if item.strip()]
        return values

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks_parse(cls, networks: list[str]) -> list[str]:
        # A typo must stop the start, not silently refuse (or allow) deliveries later.
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"{network!r} is not a CIDR network") from exc
        return networks

    @model_validator(mode="after")
    def _orders_alone_need_the_catalog(self) -> Settings:
        if self.serve_context == "orders" and (not self.catalog_url or not self.catalog_api_key):
            raise ValueError("serve_context 'orders' needs catalog_url and catalog_api_key")
        return self

    @model_validator(mode="after")
    def require_production_secrets(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            missing = [
                name
                for name in (
                    "database_url",
                    "secret_key",
                    "data_keys",
                    "blind_index_key",
                    "payment_webhook_secret",
                )
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"production requires {', '.join(missing)} to be set")
            for name in ("secret_key", "blind_index_key"):
                value: SecretStr = getattr(self, name)
                if len(value.get_secret_value()) < 32:
                    raise ValueError(f"{name} must be at least 32 characters in production")
            if "*" in self.cors_allow_origins:
                raise ValueError("a wildcard CORS origin is refused in production")
            if self.payment_api_key.get_secret_value() == "sk_test_sandbox":
                raise ValueError("production needs the payment provider's own payment_api_key")
        return self

    def with_local_secrets(self) -> Settings:
        """Fill unset secrets from files in `data_dir`, creating them on first use.

        Only for development and tests: a fresh clone must work with no setup, and the
        key must survive restarts so that cursors and scripts keep working.
        """
        if self.environment is Environment.PRODUCTION:
            return self
        updates: dict[str, SecretStr] = {}
        generators = {
            "payment_webhook_secret": _webhook_secret,
            "secret_key": _random_secret,
            "data_keys": _first_data_key,
            "blind_index_key": _random_secret,
        }
        for name, generate in generators.items():
            if getattr(self, name) is None:
                updates[name] = SecretStr(_read_or_create_secret(self.data_dir / name, generate))
        return self.model_copy(update=updates) if updates else self


def _random_secret() -> str:
    return secrets.token_urlsafe(32)


def _webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _first_data_key() -> str:
    return "1:" + base64.b64encode(secrets.token_bytes(32)).decode()


def _read_or_create_secret(path: Path, generate: Callable[[], str] = _random_secret) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Several workers may start at once: write a private file, then link it into place.
        # The link fails for every process but the first, and no one reads a half-written key.
        scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(generate() + "\n")
        try:
            os.link(scratch, path)
        except FileExistsError:
            pass
        finally:
            scratch.unlink()
    return path.read_text().strip()
