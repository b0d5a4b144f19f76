"""The sandbox's memory (intents, charges, refunds) and what each operation does to it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, NoReturn

import httpx

from mercato.sandbox.objects import TEST_PAYMENT_METHODS, Card, Charge, Intent, Stored
from mercato.sandbox.protocol import (
    Answer,
    Call,
    StripeError,
    boolean_param,
    integer_param,
    invalid_request,
    metadata_param,
    new_id,
    not_found,
    now,
    param_error,
    reject_unknown,
    string_param,
)
from mercato.sandbox.webhooks import Endpoint, Webhooks

MAX_AMOUNT = 99_999_999
# Parameters real clients commonly send that change nothing here.
IGNORED = ("expand", "payment_method_types", "automatic_payment_methods", "return_url")
CANCELABLE = ("requires_payment_method", "requires_confirmation", "processing")
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")


@dataclass(slots=True)
class SandboxState:
    """All of the sandbox's state. Operations run under `lock`, one at a time, so two
    concurrent confirms of one intent cannot both charge it."""

    settle_delay: float = 2.0
    endpoints: list[Endpoint] = field(default_factory=list)
    webhook_transport: httpx.AsyncBaseTransport | None = None
    down: bool = False
    intents: dict[str, Intent] = field(default_factory=dict)
    charges: list[Charge] = field(default_factory=list)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], Stored] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    webhooks: Webhooks = field(init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.webhooks = Webhooks(self.endpoints, self.spawn, self.webhook_transport)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run in the background, holding a reference until done."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancel pending settlements and deliveries; close the webhook client."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.webhooks.aclose()

    def intent(self, intent_id: str) -> Intent:
        intent = self.intents.get(intent_id)
        if intent is None:
            raise not_found("payment_intent", intent_id, "intent")
        return intent

    # --- operations: each runs under `lock`, answers or raises StripeError ---

    def create_intent(self, call: Call) -> Answer:
        params = call.params
        reject_unknown(
            params,
            (
                "amount",
                "currency",
                "payment_method",
                "confirm",
                "metadata",
                "description",
                *IGNORED,
            ),
        )
        amount = integer_param(params, "amount")
        if amount is None:
            raise param_error(
                "Missing required param: amount.", code="parameter_missing", param="amount"
            )
        if amount < 1:
            raise param_error(
                "This value must be greater than or equal to 1.",
                code="parameter_invalid_integer",
                param="amount",
            )
        if amount > MAX_AMOUNT:
            raise param_error(
                f"Amount must be no more than {MAX_AMOUNT}.",
                code="amount_too_large",
                param="amount",
            )
        currency = (string_param(params, "currency") or "").lower()
        if not currency:
            raise param_error(
                "Missing required param: currency.", code="parameter_missing", param="currency"
            )
        if not re.fullmatch("[a-z]{3}", currency):
            raise param_error(
                f"Invalid currency: {currency}.", code="parameter_invalid_string", param="currency"
            )
        confirm = boolean_param(params, "confirm")
        method = string_param(params, "payment_method")
        if method is not None and method not in TEST_PAYMENT_METHODS:
            raise _no_such_method(method)  # before anything is created, as Stripe
        if confirm and method is None:
            raise param_error(
                "A payment_method is needed to confirm at creation.",
                code="parameter_missing",
                param="payment_method",
            )
        intent_id = new_id("pi")
        intent = Intent(
            id=intent_id,
            amount=amount,
            currency=currency,
            created=now(),
            client_secret=f"{intent_id}_secret_{new_id('', 25)[1:]}",
            metadata=metadata_param(params),
            description=string_param(params, "description"),
            payment_method=method,
        )
        if intent.payment_method is not None:
            intent.status = "requires_confirmation"
        self.intents[intent.id] = intent
        self.webhooks.emit("payment_intent.created", intent.as_json(), call)
        if confirm:
            return self._confirm(intent, intent.payment_method, call)
        return Answer(200, intent.as_json())

    def confirm(self, call: Call) -> Answer:
        reject_unknown(call.params, ("payment_method", *IGNORED))
        intent = self.intent(call.path["id"])
        method = string_param(call.params, "payment_method") or intent.payment_method
        return self._confirm(intent, method, call)

    def _confirm(self, intent: Intent, method: str | None, call: Call) -> Answer:
        if intent.status not in ("requires_payment_method", "requires_confirmation"):
            raise invalid_request(
                "You cannot confirm this PaymentIntent because it has a status of "
                f"{intent.status}.",
                code="payment_intent_unexpected_state",
                payment_intent=intent.as_json(),
            )
        if method is None:
            raise invalid_request(
                "You cannot confirm this PaymentIntent because it's missing a payment method. "
                "Pass payment_method.",
                code="payment_intent_unexpected_state",
                payment_intent=intent.as_json(),
            )
        card = TEST_PAYMENT_METHODS.get(method)
        if card is None:
            raise _no_such_method(method)
        intent.payment_method = method
        intent.last_payment_error = None
        if card.outcome == "decline":
            self._decline(intent, method, card, call)
        if card.outcome == "delay":
            intent.status = "processing"
            self.webhooks.emit("payment_intent.processing", intent.as_json(), call)
            self.spawn(self._settle(intent.id))
            return Answer(200, intent.as_json())
        self._succeed(intent, call)
        return Answer(200, intent.as_json(), drop=card.outcome == "drop")

    def _decline(self, intent: Intent, method: str, card: Card, call: Call) -> NoReturn:
        error: dict[str, Any] = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": card.decline_code,
            "message": card.message,
            "payment_method": {"id": method, "object": "payment_method", "type": "card"},
        }
        # As Stripe: the failed method is detached, the intent wants a new one.
        intent.status = "requires_payment_method"
        intent.payment_method = None
        intent.last_payment_error = error
        self.webhooks.emit("payment_intent.payment_failed", intent.as_json(), call)
        raise StripeError(
            402,
            "card_error",
            card.message,
            code="card_declined",
            decline_code=card.decline_code,
            payment_method=error["payment_method"],
            payment_intent=intent.as_json(),
        )

    def _succeed(self, intent: Intent, call: Call | None) -> None:
        charge = Charge(new_id("ch"), intent.id, intent.amount, intent.currency, now())
        self.charges.append(charge)
        intent.status = "succeeded"
        intent.latest_charge = charge.id
        self.webhooks.emit("payment_intent.succeeded", intent.as_json(), call)

    async def _settle(self, intent_id: str) -> None:
        await asyncio.sleep(self.settle_delay)
        async with self.lock:
            intent = self.intents[intent_id]
            if intent.status == "processing":  # not canceled meanwhile
                self._succeed(intent, None)

    def cancel(self, call: Call) -> Answer:
        reject_unknown(call.params, ("cancellation_reason", "expand"))
        intent = self.intent(call.path["id"])
        reason = string_param(call.params, "cancellation_reason")
        if reason is not None and reason not in CANCELLATION_REASONS:
            raise param_error(
                f"Invalid cancellation_reason: must be one of {', '.join(CANCELLATION_REASONS)}",
                code="parameter_invalid_string",
                param="cancellation_reason",
            )
        if intent.status not in CANCELABLE:
            raise invalid_request(
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{intent.status}. Only a PaymentIntent with one of the following statuses may "
                f"be canceled: {', '.join(CANCELABLE)}.",
                code="payment_intent_unexpected_state",
                payment_intent=intent.as_json(),
            )
        intent.status = "canceled"
        intent.canceled_at = now()
        intent.cancellation_reason = reason
        self.webhooks.emit("payment_intent.canceled", intent.as_json(), call)
        return Answer(200, intent.as_json())

    def refund(self, call: Call) -> Answer:
        params = call.params
        reject_unknown(params, ("payment_intent", "amount", "reason", "metadata", "expand"))
        intent_id = string_param(params, "payment_intent")
        if intent_id is None:
            raise param_error(
                "Missing required param: payment_intent.",
                code="parameter_missing",
                param="payment_intent",
            )
        amount = integer_param(params, "amount")
        if amount is not None and amount < 1:
            raise param_error(
                "This value must be greater than or equal to 1.",
                code="parameter_invalid_integer",
                param="amount",
            )
        intent = self.intents.get(intent_id)
        if intent is None:
            raise not_found("payment_intent", intent_id, "payment_intent")
        charge = self._charge(intent.latest_charge)
        if intent.status != "succeeded" or charge is None:
            raise invalid_request(
                f"This PaymentIntent ({intent.id}) does not have a successful charge to refund.",
                code="payment_intent_unexpected_state",
                param="payment_intent",
            )
        remaining = charge.amount - charge.amount_refunded
        if remaining == 0:
            raise invalid_request(
                f"Charge {charge.id} has already been refunded.", code="charge_already_refunded"
            )
        amount = remaining if amount is None else amount
        if amount > remaining:
            raise invalid_request(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({remaining}).",
                code="amount_too_large",
                param="amount",
            )
        charge.amount_refunded += amount
        refund: dict[str, Any] = {
            "id": new_id("re"),
            "object": "refund",
            "amount": amount,
            "currency": charge.currency,
            "payment_intent": intent.id,
            "charge": charge.id,
            "status": "succeeded",
            "reason": string_param(params, "reason"),
            "metadata": metadata_param(params),
            "created": now(),
        }
        self.refunds[refund["id"]] = refund
        self.webhooks.emit("refund.created", dict(refund), call)
        return Answer(200, refund)

    def _charge(self, charge_id: str | None) -> Charge | None:
        return next((c for c in self.charges if c.id == charge_id), None)


def _no_such_method(method: str) -> StripeError:
    return invalid_request(
        f"No such PaymentMethod: '{method}'", code="resource_missing", param="payment_method"
    )
