"""What a subscriber may see of an event.

The REST API hides inactive and deleted products from anyone but staff; the stream must
not show them either. Anonymous subscribers get such events as tombstones (the id and
`"visible": false`), so they still learn that a product left the storefront.
"""

from __future__ import annotations

from typing import Any


def visible_to(event: dict[str, Any], *, principal: str | None) -> dict[str, Any]:
    if principal is not None:
        return event
    payload = event["payload"]
    if event["aggregate_type"] == "product" and (
        payload.get("deleted_at") is not None or not payload.get("is_active", True)
    ):
        return {**event, "payload": {"id": payload["id"], "visible": False}}
    if event["aggregate_type"] == "inventory" and not payload.get("visible", True):
        return {**event, "payload": {"product_id": payload["product_id"], "visible": False}}
    return event
