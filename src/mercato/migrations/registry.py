"""Every context's metadata, combined: what migrations and the drift check compare against."""

from __future__ import annotations

from sqlalchemy import MetaData

from mercato.catalog.models import metadata as catalog_metadata
from mercato.events.models import metadata as events_metadata
from mercato.identity.models import metadata as identity_metadata
from mercato.ingest.models import metadata as ingest_metadata
from mercato.orders.models import metadata as orders_metadata
from mercato.payments.models import metadata as payments_metadata
from mercato.webhooks.models import metadata as webhooks_metadata

SCHEMAS = ("catalog", "events", "identity", "ingest", "orders", "payments", "webhooks")
target_metadata: list[MetaData] = [
    catalog_metadata,
    events_metadata,
    identity_metadata,
    ingest_metadata,
    orders_metadata,
    payments_metadata,
    webhooks_metadata,
]
