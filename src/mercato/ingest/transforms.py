"""The named value transforms a mapping may apply to a source field, and unit conversion.

Each transform takes the value read from the source (a string from CSV, any JSON value from
JSON) and returns the new value, or raises `TransformError` with a message a person can act
on. They are plain functions so that a mapping is data, not code: a feed's mapping file can
name them but never run anything else.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any


class TransformError(ValueError):
    """A value the transform cannot turn into what it promises."""


_SPACES = re.compile(r"\s+")
_TAGS = re.compile(r"<[^>]*>")
_TRUE = frozenset({"1", "true", "yes", "y", "on", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "off", "f"})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def lower(value: Any) -> str:
    return _text(value).lower()


def upper(value: Any) -> str:
    return _text(value).upper()


def collapse_spaces(value: Any) -> str:
    return _SPACES.sub(" ", _text(value)).strip()


def strip_html(value: Any) -> str:
    return collapse_spaces(_TAGS.sub(" ", _text(value)))


def digits(value: Any) -> str:
    """Barcodes written with spaces or dashes: keep the digits."""
    return "".join(ch for ch in _text(value) if ch.isascii() and ch.isdigit())


# Whole numbers end up in int4 columns or in JSON that orjson writes as 64-bit integers.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def fits_int64(number: int | Decimal) -> bool:
    """Compared before `int()` is called: int(Decimal("1e999999999")) takes minutes."""
    return INT64_MIN <= number <= INT64_MAX


def integer(value: Any) -> int:
    if isinstance(value, bool):
        raise TransformError("expected a whole number, got a boolean")
    number: int | Decimal = value if isinstance(value, int) else decimal(value)
    if isinstance(number, Decimal) and number != number.to_integral_value():
        raise TransformError(f"expected a whole number, got {value!r}")
    if not fits_int64(number):
        raise TransformError(f"a whole number out of range: {value!r}")
    return int(number)


def decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise TransformError("expected a number, got a boolean")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    try:
        number = Decimal(_text(value).strip())
    except InvalidOperation:
        raise TransformError(f"expected a number, got {value!r}") from None
    if not number.is_finite():
        raise TransformError(f"expected a finite number, got {value!r}")
    return number


def decimal_comma(value: Any) -> Decimal:
    """European notation: `1.234,50` → 1234.50."""
    if isinstance(value, str):
        return decimal(value.replace(".", "").replace(" ", "").replace(",", "."))
    return decimal(value)


def cents(value: Any) -> Decimal:
    """Prices in minor units: `1299` → 12.99."""
    return Decimal(integer(value)).scaleb(-2)


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise TransformError(f"expected yes/no, true/false or 1/0, got {value!r}")


def ascii_fold(value: Any) -> str:
    return unicodedata.normalize("NFKD", _text(value)).encode("ascii", "ignore").decode()


TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "strip": strip,
    "lower": lower,
    "upper": upper,
    "collapse_spaces": collapse_spaces,
    "strip_html": strip_html,
    "digits": digits,
    "integer": integer,
    "decimal": decimal,
    "decimal_comma": decimal_comma,
    "cents": cents,
    "boolean": boolean,
    "ascii_fold": ascii_fold,
}

# Conversion factors to each dimension's base unit (kilogram, metre, litre).
UNITS: dict[str, tuple[str, Decimal]] = {
    "mg": ("mass", Decimal("0.000001")),
    "g": ("mass", Decimal("0.001")),
    "kg": ("mass", Decimal("1")),
    "oz": ("mass", Decimal("0.028349523125")),
    "lb": ("mass", Decimal("0.45359237")),
    "mm": ("length", Decimal("0.001")),
    "cm": ("length", Decimal("0.01")),
    "m": ("length", Decimal("1")),
    "in": ("length", Decimal("0.0254")),
    "ft": ("length", Decimal("0.3048")),
    "ml": ("volume", Decimal("0.001")),
    "l": ("volume", Decimal("1")),
}


def unit_converter(source_unit: str, target_unit: str) -> Callable[[Any], Decimal]:
    """A function converting numbers in `source_unit` to `target_unit` (same dimension)."""
    source_dimension, source_factor = UNITS[source_unit]
    target_dimension, target_factor = UNITS[target_unit]
    if source_dimension != target_dimension:
        raise ValueError(f"cannot convert {source_unit} ({source_dimension}) to {target_unit}")
    factor = source_factor / target_factor

    def convert(value: Any) -> Decimal:
        # Six decimal places are more than any catalog shows, and keep results stable.
        try:
            return (decimal(value) * factor).quantize(Decimal("0.000001")).normalize()
        except InvalidOperation:  # more digits than the decimal context holds
            raise TransformError(f"a number out of range: {value!r}") from None

    return convert
