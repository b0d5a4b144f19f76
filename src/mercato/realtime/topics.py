"""Which topics an event belongs to, and which topic names a client may ask for."""

from __future__ import annotations

import re
from typing import Any

# aggregate type → the topic that carries every event of that kind
COLLECTIONS = {"product": "products", "inventory": "inventory", "category": "categories"}

_TOPIC = re.compile(
    r"^(products|inventory|categories)(:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$"
)
MAX_TOPICS = 50


def is_valid_topic(topic: str) -> bool:
    return bool(_TOPIC.match(topic))


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
