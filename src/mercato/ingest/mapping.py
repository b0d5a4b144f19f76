"""A source's mapping: how its rows become canonical product fields. Declarative (TOML).

```toml
format = "csv"            # csv, json or ndjson; by default from the file name
delimiter = ";"
encoding = "utf-8"        # a BOM is always recognised and dropped
sku_prefix = "ACME-"      # the catalog SKU of a product this source creates
priority = 40             # how strongly this source's values win (per field below)

[fields]                  # canonical field = source column (a dotted path in JSON)
sku = "ArticleNo"         # the source's own key: required
name = { column = "Title", transforms = ["collapse_spaces"] }
price = { column = "PriceCents", transforms = ["cents"] }
currency = { default = "EUR" }

[attributes]
weight_kg = { column = "Weight", unit = "g->kg" }

[categories]
match = "path"            # or "name"
separator = " > "
unknown = "create"        # or "reject"

[priorities]
price = 90
```
"""

from __future__ import annotations

import codecs
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from mercato.ingest.transforms import (
    TRANSFORMS,
    UNITS,
    TransformError,
    fits_int64,
    unit_converter,
)

CanonicalField = Literal[
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
]
CANONICAL_FIELDS: tuple[str, ...] = CanonicalField.__args__  # type: ignore[attr-defined]
# Fields a source may change on a product that exists (the SKU and stock are set only when
# a product is created: stock belongs to the order path once a product is on sale).
MERGED_FIELDS = (
    "name",
    "description",
    "brand",
    "gtin",
    "mpn",
    "price",
    "currency",
    "category",
    "is_active",
    "attributes",
)
DEFAULT_PRIORITY = 50
Scalar = str | int | float | bool
AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Spec):
    column: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    default: Scalar | None = None
    values: dict[str, Scalar] | None = Field(
        default=None, description="Source values replaced before the transforms run."
    )
    transforms: list[str] = Field(default_factory=list, max_length=10)
    unit: str | None = Field(default=None, pattern=r"^[a-z]+->[a-z]+$")

    @field_validator("transforms")
    @classmethod
    def _known_transforms(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown transforms {unknown}; known: {sorted(TRANSFORMS)}")
        return names

    @field_validator("unit")
    @classmethod
    def _known_units(cls, unit: str | None) -> str | None:
        if unit is not None:
            source, target = unit.split("->")
            if source not in UNITS or target not in UNITS:
                raise ValueError(f"unknown unit in {unit!r}; known: {sorted(UNITS)}")
            unit_converter(source, target)  # refuses mixing dimensions
        return unit


class CategorySpec(_Spec):
    match: Literal["path", "name"] = "path"
    separator: Annotated[str, StringConstraints(min_length=1, max_length=5)] = "/"
    unknown: Literal["create", "reject"] = "reject"
    aliases: dict[str, str] = Field(default_factory=dict, max_length=10_000)


class MappingSpec(_Spec):
    format: Literal["csv", "json", "ndjson"] | None = None
    encoding: str = "utf-8"
    delimiter: Annotated[str, StringConstraints(min_length=1, max_length=1)] = ","
    quotechar: Annotated[str, StringConstraints(min_length=1, max_length=1)] = '"'
    records: str | None = Field(
        default=None, description="JSON: the dotted path of the array of products."
    )
    sku_prefix: Annotated[str, StringConstraints(max_length=20, pattern=r"^[A-Za-z0-9._/-]*$")] = ""
    priority: int = Field(default=DEFAULT_PRIORITY, ge=0, le=1000)
    priorities: dict[Literal[MERGED_FIELDS], Annotated[int, Field(ge=0, le=1000)]] = Field(  # type: ignore[valid-type]
        default_factory=dict
    )
    fields: dict[CanonicalField, str | FieldSpec] = Field(default_factory=dict)
    attributes: dict[AttributeName, str | FieldSpec] = Field(default_factory=dict, max_length=50)
    categories: CategorySpec = CategorySpec()

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            return codecs.lookup(encoding).name
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}") from None

    def field_priority(self, field: str) -> int:
        return self.priorities.get(field, self.priority)


def parse_mapping(text: str) -> MappingSpec:
    """A mapping file's text (TOML) → its validated spec. Raises ValueError or
    pydantic.ValidationError with the offending key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"the mapping is not valid TOML: {error}") from None
    return MappingSpec.model_validate(data)


def default_mapping() -> MappingSpec:
    """Without a mapping file: the source's columns already have the canonical names."""
    return MappingSpec()


@dataclass(frozen=True, slots=True)
class RowError:
    field: str
    rule: str
    value: Any
    message: str


@dataclass(frozen=True, slots=True)
class _CompiledField:
    target: str
    label: str  # how errors name it: `price`, `attributes.weight_kg`
    path: tuple[str, ...]
    default: Any
    steps: tuple[tuple[str, Callable[[Any], Any]], ...]
    values: dict[str, Scalar] | None


def _compile(
    target: str, spec: str | FieldSpec, fallback_column: str, *, label: str
) -> _CompiledField:
    if isinstance(spec, str):
        spec = FieldSpec(column=spec)
    column = spec.column if spec.column is not None else None
    if column is None and spec.default is None:
        column = fallback_column
    steps = [(name, TRANSFORMS[name]) for name in spec.transforms]
    if spec.unit:
        source, target_unit = spec.unit.split("->")
        steps.append(("unit", unit_converter(source, target_unit)))
    path = tuple(column.split(".")) if column else ()
    return _CompiledField(target, label, path, spec.default, tuple(steps), spec.values)


class RowMapper:
    """Turns one source row (a dict) into canonical field values, with a RowError per field
    that could not be read. Empty strings count as missing: CSV cannot say null."""

    def __init__(self, spec: MappingSpec) -> None:
        # Without [fields], the source's columns already have the canonical names.
        fields: dict[str, str | FieldSpec] = {name: name for name in CANONICAL_FIELDS}
        if spec.fields:
            fields = {str(name): field for name, field in spec.fields.items()}
        self._fields = [_compile(name, field, name, label=name) for name, field in fields.items()]
        self._attributes = [
            _compile(name, field, name, label=f"attributes.{name}")
            for name, field in spec.attributes.items()
        ]

    @staticmethod
    def _read(row: dict[str, Any], path: tuple[str, ...]) -> Any:
        value: Any = row
        for key in path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    def _value(self, field: _CompiledField, row: dict[str, Any], errors: list[RowError]) -> Any:
        path = field.path
        # A flat column (every CSV field) is one lookup; a dotted JSON path walks the row.
        raw = row.get(path[0]) if len(path) == 1 else self._read(row, path) if path else None
        if isinstance(raw, str):
            raw = raw.strip()
        if raw is None or raw == "":
            return field.default
        value = raw
        if field.values is not None:
            value = field.values.get(str(value), value)
        for name, step in field.steps:
            try:
                value = step(value)
            except TransformError as error:
                errors.append(RowError(field.label, f"transform_{name}", raw, str(error)))
                return None
        return value

    def map(self, row: dict[str, Any]) -> tuple[dict[str, Any], list[RowError]]:
        errors: list[RowError] = []
        values: dict[str, Any] = {}
        for field in self._fields:
            value = self._value(field, row, errors)
            if value is not None:
                values[field.target] = value
        attributes: dict[str, Any] = {}
        for field in self._attributes:
            value = self._value(field, row, errors)
            if value is None:
                continue
            # JSON numbers: whole ones stay integers (64-bit, as JSON is written), others
            # become floats.
            whole = isinstance(value, int) and not isinstance(value, bool)
            if isinstance(value, Decimal):
                whole = value == value.to_integral_value()
                value = value if whole else float(value)
            if whole and not fits_int64(value):
                message = "a whole number out of the 64-bit range"
                errors.append(RowError(field.label, "number_out_of_range", str(value), message))
                continue
            attributes[field.target] = int(value) if whole else value
        if attributes:
            values["attributes"] = attributes
        return values, errors
