"""Every context's metadata, combined: what migrations and the drift check compare against."""

from __future__ import annotations

from sqlalchemy import MetaData

from mercato.catalog.models import metadata as catalog_metadata

SCHEMAS = ("catalog",)
target_metadata: list[MetaData] = [catalog_metadata]
