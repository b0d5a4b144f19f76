"""The webhooks admin API (`webhooks:manage`): subscriptions, their secrets, the attempts
log and replays. Secrets appear only in the answers that create them (`no-store`)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from mercato.core.access import current_principal, requires, route_adder
from mercato.core.deps import cursor_codec, database
from mercato.core.http import envelope
from mercato.core.pagination import decode_stamp_cursor, next_page, stamp_position
from mercato.core.pagination import fingerprint as query_fingerprint
from mercato.webhooks import repository, service, ssrf
from mercato.webhooks.errors import SubscriptionNotFound, WebhookUrlRefused
from mercato.webhooks.runtime import WebhookRuntime
from mercato.webhooks.schemas import (
    DeliveryEnvelope,
    DeliveryListQuery,
    DeliveryPage,
    SecretEnvelope,
    SecretRotation,
    SubscriptionCreate,
    SubscriptionCreatedEnvelope,
    SubscriptionEnvelope,
    SubscriptionListQuery,
    SubscriptionPage,
    SubscriptionReplay,
    SubscriptionUpdate,
)

MANAGE = "webhooks:manage"
PRIVATE = {"cache-control": "no-store"}


def runtime(request: Request) -> WebhookRuntime:
    webhooks: WebhookRuntime = request.app.state.webhooks
    return webhooks


def _json(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status_code,
        media_type="application/json",
        headers={**PRIVATE, **(headers or {})},
    )


async def _vetted(webhooks: WebhookRuntime, url: str) -> str:
    try:
        await webhooks.sender.vet(url)
    except ssrf.UrlRefused as exc:
        details = [{"field": "body.url", "message": str(exc)}]
        raise WebhookUrlRefused(str(exc), details=details) from exc
    return url


async def create_subscription(request: Request, data: SubscriptionCreate) -> Response:
    webhooks = runtime(request)
    event_types = service.checked_event_types(data.event_types, webhooks.event_types)
    url = await _vetted(webhooks, data.url)  # before the transaction: it resolves DNS
    principal = current_principal(request)
    async with database(request).transaction() as conn:
        row, secret = await service.create_subscription(
            conn,
            webhooks.ring,
            url=url,
            event_types=event_types,
            description=data.description,
            active=data.active,
            created_by=principal.subject_id,
        )
    body = envelope({**service.subscription_json(row), "secret": secret})
    return _json(body, 201, {"location": f"/api/v1/webhooks/subscriptions/{row['id']}"})


async def list_subscriptions(
    request: Request, params: Annotated[SubscriptionListQuery, Query()]
) -> Response:
    codec = cursor_codec(request)
    bound_to = query_fingerprint("webhook-subscriptions")
    rows = await repository.list_subscriptions(
        database(request).reader,
        before=decode_stamp_cursor(codec, bound_to, params.cursor),
        limit=params.limit + 1,
    )
    rows, next_cursor = next_page(
        codec, bound_to, rows, limit=params.limit, position=stamp_position("created_at")
    )
    meta = {"limit": params.limit, "count": len(rows), "next_cursor": next_cursor}
    return _json(envelope([service.subscription_json(row) for row in rows], meta))


async def get_subscription(request: Request, subscription_id: uuid.UUID) -> Response:
    row = await repository.get_subscription(database(request).reader, subscription_id)
    if row is None:
        raise SubscriptionNotFound()
    return _json(envelope(service.subscription_json(row)))


async def update_subscription(
    request: Request, subscription_id: uuid.UUID, data: SubscriptionUpdate
) -> Response:
    webhooks = runtime(request)
    changes = data.model_dump(include=data.model_fields_set)
    if data.event_types is not None:
        changes["event_types"] = service.checked_event_types(data.event_types, webhooks.event_types)
    if data.url is not None:
        await _vetted(webhooks, data.url)
    async with database(request).transaction() as conn:
        row = await service.change_subscription(conn, subscription_id, changes)
    return _json(envelope(service.subscription_json(row)))


async def delete_subscription(request: Request, subscription_id: uuid.UUID) -> Response:
    async with database(request).transaction() as conn:
        await service.delete_subscription(conn, subscription_id)
    return Response(status_code=204)


async def rotate_secret(
    request: Request, subscription_id: uuid.UUID, data: SecretRotation | None = None
) -> Response:
    overlap = timedelta(minutes=(data or SecretRotation()).overlap_minutes)
    async with database(request).transaction() as conn:
        row, secret = await service.rotate_secret(
            conn, runtime(request).ring, subscription_id, overlap=overlap
        )
    expires = row["previous_secret_expires_at"] if row["previous_secret"] else None
    body = {
        "id": str(row["id"]),
        "secret": secret,
        "previous_secret_expires_at": expires.isoformat() if expires else None,
    }
    return _json(envelope(body))


async def replay_subscription(
    request: Request, subscription_id: uuid.UUID, data: SubscriptionReplay
) -> Response:
    async with database(request).transaction() as conn:
        row = await service.rewind(conn, subscription_id, from_position=data.from_position)
    return _json(envelope(service.subscription_json(row)))


async def list_deliveries(
    request: Request, params: Annotated[DeliveryListQuery, Query()]
) -> Response:
    codec = cursor_codec(request)
    bound_to = query_fingerprint("webhook-deliveries", str(params.subscription_id), params.status)
    rows = await repository.list_deliveries(
        database(request).reader,
        subscription_id=params.subscription_id,
        status=params.status,
        before=decode_stamp_cursor(codec, bound_to, params.cursor),
        limit=params.limit + 1,
    )
    rows, next_cursor = next_page(
        codec, bound_to, rows, limit=params.limit, position=stamp_position("attempted_at")
    )
    meta = {"limit": params.limit, "count": len(rows), "next_cursor": next_cursor}
    return _json(envelope([service.delivery_json(row) for row in rows], meta))


async def replay_delivery(request: Request, delivery_id: uuid.UUID) -> Response:
    webhooks = runtime(request)
    row = await service.replay_delivery(
        database(request), webhooks.ring, webhooks.sender, delivery_id
    )
    return _json(envelope(service.delivery_json(row)))


def register_routes(app: FastAPI, *, prefix: str) -> None:
    add = route_adder(
        app, prefix=f"{prefix}/webhooks", tag="webhooks", errors=(400, 401, 403, 404, 409, 422, 429)
    )
    manage = requires(MANAGE)

    add(
        "/subscriptions",
        create_subscription,
        "POST",
        manage,
        "Subscribe a URL to event types; the answer shows the signing secret, once",
        status_code=201,
        response_model=SubscriptionCreatedEnvelope,
    )
    add(
        "/subscriptions",
        list_subscriptions,
        "GET",
        manage,
        "List webhook subscriptions, newest first",
        response_model=SubscriptionPage,
    )
    add(
        "/subscriptions/{subscription_id}",
        get_subscription,
        "GET",
        manage,
        "Read a webhook subscription (never its secret)",
        response_model=SubscriptionEnvelope,
    )
    add(
        "/subscriptions/{subscription_id}",
        update_subscription,
        "PATCH",
        manage,
        "Change a subscription; active=true resumes a paused one",
        response_model=SubscriptionEnvelope,
    )
    add(
        "/subscriptions/{subscription_id}",
        delete_subscription,
        "DELETE",
        manage,
        "Delete a subscription and its attempts log",
        status_code=204,
    )
    add(
        "/subscriptions/{subscription_id}/rotate-secret",
        rotate_secret,
        "POST",
        manage,
        "Rotate the signing secret; the previous one keeps signing during the overlap",
        response_model=SecretEnvelope,
    )
    add(
        "/subscriptions/{subscription_id}/replay",
        replay_subscription,
        "POST",
        manage,
        "Deliver every wanted event from a log position on again, in order",
        response_model=SubscriptionEnvelope,
    )
    add(
        "/deliveries",
        list_deliveries,
        "GET",
        manage,
        "The attempts log, newest first",
        response_model=DeliveryPage,
    )
    add(
        "/deliveries/{delivery_id}/replay",
        replay_delivery,
        "POST",
        manage,
        "Send a delivery's event again now, as a new attempt (same webhook-id)",
        response_model=DeliveryEnvelope,
    )
