"""A mapped row → a canonical product, or the exact reasons it was rejected.

The canonical model is the catalog's own `ProductCreate` (the rules a product made through
the API obeys), with the category named by text instead of by id: an imported row passes
exactly the checks a hand-made product does, reported per field with the rule's code.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from pydantic import Field, ValidationError

from mercato.catalog import ProductCreate
from mercato.ingest.mapping import MappingSpec, RowError

MAX_VALUE_IN_REJECT = 200
ATTRIBUTE_TYPE_MESSAGE = "an attribute value is text, a number or true/false"


class ImportedProduct(ProductCreate):
    category: str | None = Field(default=None, min_length=1, max_length=500)


@dataclass(frozen=True, slots=True)
class Reject:
    row_number: int
    seq: int
    field: str
    rule: str
    value: str | None
    message: str

    def as_record(self, job_id: uuid.UUID) -> tuple[Any, ...]:
        return (job_id, self.row_number, self.seq, self.field, self.rule, self.value, self.message)


# Column order of ingest.staged_rows as the import copies it.
STAGED_COLUMNS = (
    "job_id",
    "row_number",
    "source_key",
    "content_hash",
    "sku",
    "name",
    "description",
    "brand",
    "gtin",
    "mpn",
    "price",
    "currency",
    "category",
    "inventory_count",
    "is_active",
    "attributes",
)


def _shown(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text[:MAX_VALUE_IN_REJECT]


def rejects_of(row_number: int, errors: list[RowError]) -> list[Reject]:
    return [
        Reject(row_number, seq, e.field, e.rule, _shown(e.value), e.message)
        for seq, e in enumerate(errors, start=1)
    ]


def _decimal_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError


def _row_errors(error: ValidationError) -> list[RowError]:
    """The model's errors, one per field. An attribute value is tried against each type it
    may have (text, true/false, integer, float), and a wrong one fails all four: it is one
    reject for the attribute, the text rule's own when the value is text."""
    errors: list[RowError] = []
    attributes_seen: set[str] = set()
    for e in error.errors(include_url=False):
        loc, value = e["loc"], e.get("input")
        if len(loc) == 3 and loc[0] == "attributes" and loc[2] != "[key]":
            field = f"attributes.{loc[1]}"
            if field in attributes_seen:
                continue
            attributes_seen.add(field)
            if isinstance(value, str):  # the first error is then the text type's
                errors.append(RowError(field, e["type"], value, e["msg"]))
            else:
                errors.append(RowError(field, "attribute_type", value, ATTRIBUTE_TYPE_MESSAGE))
            continue
        field = ".".join(str(part) for part in loc) or "row"
        errors.append(
            RowError(field, e["type"], value if e["type"] != "missing" else None, e["msg"])
        )
    return errors


def stage_record(
    job_id: uuid.UUID, row_number: int, values: dict[str, Any], spec: MappingSpec
) -> tuple[tuple[Any, ...] | None, list[Reject]]:
    """Validate mapped values; a staged-row record (STAGED_COLUMNS order) or rejects."""
    key = values.get("sku")
    source_key = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
    candidate = dict(values)
    if isinstance(source_key, str) and source_key:
        candidate["sku"] = f"{spec.sku_prefix}{source_key}"
    # Any other JSON type (true, 12.5, an object) stays as it came for the model to refuse:
    # copied into the staged key (text), it would crash the job instead of rejecting the row.
    try:
        product = ImportedProduct.model_validate(candidate)
    except ValidationError as error:
        return None, rejects_of(row_number, _row_errors(error))
    provided = product.model_fields_set
    record = {
        "name": product.name,
        "description": product.description,
        "brand": product.brand,
        "gtin": product.gtin,
        "mpn": product.mpn,
        "price": product.price,
        "currency": product.currency,
        "category": product.category,
        "inventory_count": product.inventory_count if "inventory_count" in provided else None,
        "is_active": product.is_active if "is_active" in provided else None,
        "attributes": product.attributes,
    }
    attributes = orjson.dumps(product.attributes, option=orjson.OPT_SORT_KEYS).decode()
    # PostgreSQL text cannot hold NUL (JSON can spell it \u0000).
    texts = (product.sku, product.name, product.description, product.brand, product.mpn)
    if "\\u0000" in attributes or any(t and "\x00" in t for t in (*texts, product.category)):
        nul = RowError("row", "nul_character", None, "a text value holds a NUL character")
        return None, rejects_of(row_number, [nul])
    # What this source says about the product, and how strongly: if neither changes, a
    # re-run has nothing to write.
    content_hash = hashlib.blake2b(
        orjson.dumps(
            [record, product.sku, spec.priority, spec.priorities],
            default=_decimal_default,
            option=orjson.OPT_SORT_KEYS,
        ),
        digest_size=16,
    ).digest()
    return (
        job_id,
        row_number,
        source_key,
        content_hash,
        product.sku,
        record["name"],
        record["description"],
        record["brand"],
        record["gtin"],
        record["mpn"],
        record["price"],
        record["currency"],
        record["category"],
        record["inventory_count"],
        record["is_active"],
        attributes,
    ), []
