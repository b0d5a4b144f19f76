"""Which topics an event belongs to, and which topic names a client may ask for."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

from mercato.core.database import Executor
from mercato.core.security import Principal
from mercato.orders import READ_ANY_ORDER, order_owner

# aggregate type → the topic that carries every event of that kind
COLLECTIONS = {
    "product": "products",
    "inventory": "inventory",
    "category": "categories",
    "order": "orders",
    "import": "imports",
}
MANAGE_IMPORTS = "imports:manage"

_TOPIC = re.compile(
    r"^(products|inventory|categories|orders|imports)(:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$"
)
MAX_TOPICS = 50


def is_valid_topic(topic: str) -> bool:
    return bool(_TOPIC.match(topic))


async def refused_topics(
    topics: Iterable[str], principal: Principal | None, reader: Executor
) -> list[str]:
    """The topics this caller may not follow. Catalog topics are public. `orders` (every
    order) needs `orders:read:any`; `orders:<id>` needs that or owning the order. A refusal
    does not say whether the order exists. `imports` and `imports:<job id>` need
    `imports:manage`."""
    refused = []
    for topic in topics:
        collection, _, order_id = topic.partition(":")
        if collection == "imports":
            if principal is None or not principal.can(MANAGE_IMPORTS):
                refused.append(topic)
            continue
        if collection != "orders" or (principal is not None and principal.can(READ_ANY_ORDER)):
            continue
        if principal is None or not order_id:
            refused.append(topic)
            continue
        owner = await order_owner(reader, uuid.UUID(order_id))
        if owner is None or not principal.owns(owner):
            refused.append(topic)
    return refused


def topics_of(event: dict[str, Any]) -> tuple[str, ...]:
    """`products` and `products:<id>` for a product event, and so on."""
    collection = COLLECTIONS.get(event["aggregate_type"])
    if collection is None:
        return ()
    return collection, f"{collection}:{event['aggregate_id']}"


def matching_topic(topics: tuple[str, ...], subscribed: set[str]) -> str | None:
    """The most specific of an event's `topics` (from `topics_of`) subscribed to, or None."""
    for topic in reversed(topics):
        if topic in subscribed:
            return topic
    return None
