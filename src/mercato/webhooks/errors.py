"""The webhooks context's errors, each with its stable code."""

from __future__ import annotations

from mercato.core.errors import Conflict, NotFound, ValidationFailed


class SubscriptionNotFound(NotFound):
    code = "WEBHOOK_SUBSCRIPTION_NOT_FOUND"
    message = "No such webhook subscription."


class DeliveryNotFound(NotFound):
    code = "WEBHOOK_DELIVERY_NOT_FOUND"
    message = "No such webhook delivery."


class WebhookUrlRefused(ValidationFailed):
    code = "WEBHOOK_URL_REFUSED"
    message = "This URL cannot receive webhooks."


class UnknownEventType(ValidationFailed):
    code = "UNKNOWN_EVENT_TYPE"
    message = 'Subscribe to known event types, or to "*" for all of them.'


class ReplayOutOfRange(ValidationFailed):
    code = "REPLAY_OUT_OF_RANGE"
    message = "The log does not hold events from that position."


class EventNotRetained(Conflict):
    code = "EVENT_NOT_RETAINED"
    message = "The event is no longer in the log (retention); it cannot be sent again."
