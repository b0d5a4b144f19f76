"""Orders: placing an order reserves stock through the catalog's port, prices are frozen
on the order, and its status moves only along the state machine in rules.py.

Its tables live in the `orders` schema; other contexts use only this facade.
"""

from mercato.orders.events import EVENT_PAYLOADS
from mercato.orders.rules import Action as OrderAction
from mercato.orders.service import READ_ANY as READ_ANY_ORDER
from mercato.orders.service import WRITE_ANY as WRITE_ANY_ORDER
from mercato.orders.service import (
    lock_order,
    lock_order_status,
    order_owner,
    payable_order,
    settle_order,
    statuses,
)

__all__ = [
    "EVENT_PAYLOADS",
    "READ_ANY_ORDER",
    "WRITE_ANY_ORDER",
    "OrderAction",
    "lock_order",
    "lock_order_status",
    "order_owner",
    "payable_order",
    "settle_order",
    "statuses",
]
