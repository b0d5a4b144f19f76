"""The events the orders context publishes: one per placed order and per transition."""

from __future__ import annotations

from typing import Any

from mercato.events import EventDraft
from mercato.orders.rules import Status
from mercato.orders.schemas import OrderOut

ORDER_CREATED = "order.created"
STATUS_EVENTS = {
    Status.PAID: "order.paid",
    Status.FULFILLED: "order.fulfilled",
    Status.CANCELLED: "order.cancelled",
    Status.EXPIRED: "order.expired",
    Status.REFUNDED: "order.refunded",
    Status.PARTIALLY_REFUNDED: "order.partially_refunded",
}

EVENT_PAYLOADS = {(ORDER_CREATED, 1): OrderOut} | {
    (event_type, 1): OrderOut for event_type in STATUS_EVENTS.values()
}


def order_event(event_type: str, order: dict[str, Any]) -> EventDraft:
    return EventDraft(
        type=event_type,
        aggregate_type="order",
        aggregate_id=order["id"],
        aggregate_version=order["version"],
        payload=order,
    )
