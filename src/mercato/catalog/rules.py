"""The catalog's rules as plain functions: no I/O, unit-tested on their own."""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from stdnum import ean

MAX_CATEGORY_DEPTH = 6
MAX_PAGE_SIZE = 100
MAX_SEARCH_TERMS = 8
MIN_PREFIX_LENGTH = 2

_WORD = re.compile(r"\w+", re.UNICODE)
_NON_SLUG = re.compile(r"[^a-z0-9]+")


def gtin_is_valid(gtin: str) -> bool:
    """GTIN-8/12/13/14: digits only (no separators) with a correct GS1 check digit."""
    # `ean.calc_check_digit`, not `ean.is_valid`: the checks above already do what is_valid
    # adds (removing separators, digits only, the length), at a third of its cost; an
    # import validates a GTIN on every row.
    return (
        gtin.isascii()
        and gtin.isdigit()
        and len(gtin) in (8, 12, 13, 14)
        and ean.calc_check_digit(gtin[:-1]) == gtin[-1]
    )


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NON_SLUG.sub("-", ascii_text.lower()).strip("-")[:120]


def child_path(parent_path: str | None, category_id: uuid.UUID) -> str:
    """Materialised path of a category: its ancestors' ids and its own, slash-delimited."""
    return f"{parent_path or '/'}{category_id}/"


def depth_of(path: str) -> int:
    return path.count("/") - 2


def is_within(path: str, ancestor_path: str) -> bool:
    """True when `path` is `ancestor_path` itself or lies below it."""
    return path.startswith(ancestor_path)


def prefix_tsquery(text: str) -> str | None:
    """Turn free text into a safe prefix tsquery: `wirel head` → `wirel:* & head:*`.

    Only word characters survive, so operators, quotes and parentheses typed by a user can
    never reach the tsquery parser. Returns None when nothing searchable is left.
    """
    words = [w.lower() for w in _WORD.findall(text) if w.strip("_")][:MAX_SEARCH_TERMS]
    terms = [f"{w}:*" if len(w) >= MIN_PREFIX_LENGTH else w for w in words]
    return " & ".join(terms) or None


class ProductSort(StrEnum):
    NEWEST = "newest"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"
    NAME_ASC = "name_asc"
    NAME_DESC = "name_desc"
    RELEVANCE = "relevance"


@dataclass(frozen=True, slots=True)
class SortKey:
    column: str
    descending: bool


SORT_KEYS: dict[ProductSort, SortKey] = {
    ProductSort.NEWEST: SortKey("created_at", descending=True),
    ProductSort.PRICE_ASC: SortKey("price", descending=False),
    ProductSort.PRICE_DESC: SortKey("price", descending=True),
    ProductSort.NAME_ASC: SortKey("name", descending=False),
    ProductSort.NAME_DESC: SortKey("name", descending=True),
    ProductSort.RELEVANCE: SortKey("rank", descending=True),
}


@dataclass(frozen=True, slots=True)
class ProductFilters:
    category_path: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    brand: str | None = None
    in_stock: bool | None = None
    tsquery: str | None = None
