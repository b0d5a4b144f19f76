"""Mappings and transforms: pure functions, no database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from mercato.ingest.mapping import RowMapper, parse_mapping
from mercato.ingest.transforms import (
    TransformError,
    boolean,
    cents,
    decimal_comma,
    integer,
    unit_converter,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1299", Decimal("12.99")), ("0", Decimal("0.00")), (5, Decimal("0.05"))],
)
def test_cents_become_a_decimal_price(value: object, expected: Decimal) -> None:
    assert cents(value) == expected


@pytest.mark.parametrize("value", ["12.5", "abc", "", True])
def test_cents_refuse_what_is_not_a_whole_number(value: object) -> None:
    with pytest.raises(TransformError):
        cents(value)


def test_decimal_comma_reads_european_notation() -> None:
    assert decimal_comma("1.234,50") == Decimal("1234.50")
    assert decimal_comma("22,00") == Decimal("22.00")


@pytest.mark.parametrize(("value", "expected"), [("yes", True), ("N", False), ("1", True)])
def test_boolean_reads_common_spellings(value: str, expected: bool) -> None:
    assert boolean(value) is expected


def test_units_convert_within_a_dimension_only() -> None:
    assert unit_converter("g", "kg")("1200") == Decimal("1.2")
    assert unit_converter("lb", "kg")("1") == Decimal("0.453592")
    with pytest.raises(ValueError, match="cannot convert"):
        unit_converter("g", "m")


def test_a_mapping_is_validated_with_the_offending_key() -> None:
    with pytest.raises(ValidationError, match="unknown transforms"):
        parse_mapping('[fields]\nprice = { column = "p", transforms = ["eval"] }')
    with pytest.raises(ValidationError, match="extra"):
        parse_mapping('[fields]\nprice = { column = "p", script = "x" }')
    with pytest.raises(ValidationError, match="fields"):
        parse_mapping('[fields]\nwarehouse = "w"')
    with pytest.raises(ValueError, match="not valid TOML"):
        parse_mapping("fields = [")
    with pytest.raises(ValidationError, match="unknown encoding"):
        parse_mapping('encoding = "klingon"')


def test_the_row_mapper_reads_nested_json_applies_defaults_values_and_transforms() -> None:
    spec = parse_mapping(
        """
        [fields]
        sku = "id"
        name = { column = "title", transforms = ["collapse_spaces"] }
        price = { column = "offer.price", transforms = ["decimal_comma"] }
        currency = { default = "EUR" }
        is_active = { column = "state", values = { live = "yes", gone = "no" }, transforms = ["boolean"] }
        [attributes]
        weight_kg = { column = "specs.weight", unit = "g->kg" }
        """
    )
    values, errors = RowMapper(spec).map(
        {
            "id": 7,
            "title": "  Two   words ",
            "offer": {"price": "3,50"},
            "state": "live",
            "specs": {"weight": 1500},
        }
    )
    assert errors == []
    assert values == {
        "sku": 7,
        "name": "Two words",
        "price": Decimal("3.50"),
        "currency": "EUR",
        "is_active": True,
        "attributes": {"weight_kg": 1.5},
    }


def test_the_row_mapper_reports_each_field_it_cannot_read() -> None:
    spec = parse_mapping(
        '[fields]\nsku = "id"\nprice = { column = "p", transforms = ["cents"] }\n'
        '[attributes]\nsize = { column = "s", transforms = ["integer"] }'
    )
    values, errors = RowMapper(spec).map({"id": "1", "p": "ten", "s": "XL"})
    assert values == {"sku": "1"}
    assert [(e.field, e.rule, e.value) for e in errors] == [
        ("price", "transform_cents", "ten"),
        ("attributes.size", "transform_integer", "XL"),
    ]


def test_empty_strings_count_as_missing() -> None:
    spec = parse_mapping('[fields]\nsku = "id"\nbrand = { column = "b", default = "Acme" }')
    values, _ = RowMapper(spec).map({"id": "1", "b": "   "})
    assert values == {"sku": "1", "brand": "Acme"}


@pytest.mark.parametrize("value", ["1e30", "1e999999999", Decimal("-1E+25"), 2**70])
def test_whole_numbers_beyond_64_bits_are_refused_without_being_built(value: object) -> None:
    # int(Decimal("1e999999999")) would spend minutes building a billion-digit number.
    with pytest.raises(TransformError, match="out of range"):
        integer(value)


def test_a_unit_conversion_beyond_decimal_precision_is_a_transform_error() -> None:
    with pytest.raises(TransformError, match="out of range"):
        unit_converter("g", "kg")("1e30")


def test_json_numbers_too_large_for_an_attribute_are_row_errors() -> None:
    spec = parse_mapping('[fields]\nsku = "id"\n[attributes]\na = "a"\nb = "b"\nc = "c"')
    row = {"id": "1", "a": Decimal("1E+999999999"), "b": 2**70, "c": Decimal("2.5")}
    values, errors = RowMapper(spec).map(row)
    assert values == {"sku": "1", "attributes": {"c": 2.5}}
    assert [(e.field, e.rule) for e in errors] == [
        ("attributes.a", "number_out_of_range"),
        ("attributes.b", "number_out_of_range"),
    ]
