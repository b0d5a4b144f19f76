"""Order totals in the provider's minor units, per currency."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mercato.payments.errors import UnpayableAmount
from mercato.payments.service import minor_units


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("19.99", "USD", 1999),
        ("0.01", "EUR", 1),
        ("1000.00", "JPY", 1000),
        ("12.345", "KWD", 12345),
        ("21474836.47", "USD", 2**31 - 1),
    ],
)
def test_minor_units_follow_the_currency_exponent(amount: str, currency: str, minor: int) -> None:
    assert minor_units(Decimal(amount), currency) == minor


@pytest.mark.parametrize(("amount", "currency"), [("0.00", "USD"), ("21474836.48", "USD")])
def test_free_and_oversized_totals_are_refused(amount: str, currency: str) -> None:
    with pytest.raises(UnpayableAmount):
        minor_units(Decimal(amount), currency)
