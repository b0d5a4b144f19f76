"""The order rules without a database: the state machine and line totals."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.orders.errors import InvalidTransition
from mercato.orders.rules import (
    HOLDS_RESERVATION,
    TRANSITIONS,
    Action,
    Status,
    line_total,
    next_status,
)

# A fulfilled order may still be refunded (a return); these allow nothing at all.
TERMINAL = frozenset({Status.CANCELLED, Status.EXPIRED, Status.REFUNDED})
EVERY_PAIR = list(itertools.product(Status, Action))


def test_the_state_machine_is_exactly_this() -> None:
    assert TRANSITIONS == {
        (Status.PENDING_PAYMENT, Action.PAY): Status.PAID,
        (Status.PENDING_PAYMENT, Action.CANCEL): Status.CANCELLED,
        (Status.PENDING_PAYMENT, Action.EXPIRE): Status.EXPIRED,
        (Status.PAID, Action.FULFIL): Status.FULFILLED,
        (Status.FULFILLED, Action.REFUND): Status.REFUNDED,
        (Status.FULFILLED, Action.REFUND_PART): Status.PARTIALLY_REFUNDED,
        (Status.PAID, Action.CANCEL): Status.CANCELLED,
        (Status.PAID, Action.REFUND): Status.REFUNDED,
        (Status.PAID, Action.REFUND_PART): Status.PARTIALLY_REFUNDED,
        (Status.PARTIALLY_REFUNDED, Action.REFUND_PART): Status.PARTIALLY_REFUNDED,
        (Status.PARTIALLY_REFUNDED, Action.REFUND): Status.REFUNDED,
    }


@pytest.mark.parametrize(("status", "action"), EVERY_PAIR, ids=lambda v: str(v))
def test_every_status_and_action_either_moves_per_the_table_or_is_refused(
    status: Status, action: Action
) -> None:
    if (status, action) in TRANSITIONS:
        assert next_status(status, action) is TRANSITIONS[(status, action)]
        return
    with pytest.raises(InvalidTransition) as refused:
        next_status(status, action)
    assert refused.value.code == "ORDER_INVALID_TRANSITION"
    assert refused.value.status == 409
    assert refused.value.details == [{"field": "status", "message": status.value}]
    assert status.value in refused.value.detail_message


def test_the_table_covers_known_statuses_and_actions_only() -> None:
    assert set(TRANSITIONS) <= set(EVERY_PAIR)
    assert set(TRANSITIONS.values()) <= set(Status)


@pytest.mark.parametrize("status", sorted(TERMINAL), ids=str)
def test_terminal_statuses_allow_nothing(status: Status) -> None:
    for action in Action:
        with pytest.raises(InvalidTransition):
            next_status(status, action)


def test_the_terminal_statuses_are_those_without_a_way_out() -> None:
    leaving = {status for status, _ in TRANSITIONS}
    assert set(Status) - leaving == TERMINAL


def test_only_a_pending_order_holds_a_reservation() -> None:
    assert {Status.PENDING_PAYMENT} == HOLDS_RESERVATION


@pytest.mark.parametrize(
    ("unit_price", "quantity", "expected"),
    [
        (Decimal("0.005"), 1, Decimal("0.01")),  # half-up, not half-even (0.00)
        (Decimal("0.015"), 1, Decimal("0.02")),
        (Decimal("0.025"), 1, Decimal("0.03")),  # half-even would give 0.02
        (Decimal("0.0049"), 1, Decimal("0.00")),
        (Decimal("19.99"), 3, Decimal("59.97")),
        (Decimal("0.333"), 3, Decimal("1.00")),  # 0.999
        (Decimal("2.345"), 2, Decimal("4.69")),  # exact 4.690
        (Decimal("1.125"), 1, Decimal("1.13")),
        (Decimal("10"), 1000, Decimal("10000.00")),
        (Decimal("0.00"), 7, Decimal("0.00")),
    ],
)
def test_line_total_rounds_half_up_to_cents(
    unit_price: Decimal, quantity: int, expected: Decimal
) -> None:
    total = line_total(unit_price, quantity)
    assert total == expected
    assert total.as_tuple().exponent == -2  # always two places, also for whole amounts
    assert str(total) == str(expected)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(Action)), max_size=30))
def test_a_random_walk_follows_the_table_and_never_leaves_a_terminal_status(
    actions: list[Action],
) -> None:
    status = Status.PENDING_PAYMENT
    terminal_at: Status | None = None
    for action in actions:
        try:
            moved = next_status(status, action)
        except InvalidTransition:
            assert (status, action) not in TRANSITIONS
            continue
        assert terminal_at is None, f"left terminal {terminal_at} by {action}"
        assert TRANSITIONS[(status, action)] is moved
        status = moved
        if status in TERMINAL:
            terminal_at = status
    if terminal_at is not None:
        assert status is terminal_at
