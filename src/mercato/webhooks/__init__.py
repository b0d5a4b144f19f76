"""Outbound webhooks: client systems subscribe to event types and receive the event log's
events, signed (Standard Webhooks), in order per subscription, with retries, a dead letter
and replay. Its tables live in the `webhooks` schema.
"""

from mercato.webhooks.jobs import DeliveryJob
from mercato.webhooks.runtime import WebhookRuntime

__all__ = ["DeliveryJob", "WebhookRuntime"]
