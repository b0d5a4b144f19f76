"""A local stand-in for Stripe: a subset of the PaymentIntents API, for development and tests.

Mercato's payments context talks to it exactly as it would to Stripe (base URL
`http://127.0.0.1:<port>`), and tests use it to stage what is hard to get from a real
provider on demand: declines, slow settlements, lost responses, lost or duplicated
webhooks, outages. State lives in memory; it is gone when the process ends.

Wire format, as Stripe's: requests are `application/x-www-form-urlencoded` with bracket
notation (`metadata[order_id]=42`), answers are JSON, auth is `Authorization: Bearer
sk_test_...` (any key starting `sk_test_`; Basic auth with the key as user works too).
Errors are `{"error": {"type", "message", "code"?, "param"?, ...}}`; unknown parameters
are refused (`parameter_unknown`), as Stripe does.

    POST /v1/payment_intents             amount, currency, payment_method?, confirm?,
                                         description?, metadata[...]
    GET  /v1/payment_intents/{id}
    POST /v1/payment_intents/{id}/confirm   payment_method?
    POST /v1/payment_intents/{id}/cancel    cancellation_reason?
    POST /v1/refunds                     payment_intent, amount? (default: what is left),
                                         reason?, metadata[...]
    GET  /v1/refunds/{id}, GET /v1/events/{id}

Idempotency (POST): the first answer under an `Idempotency-Key` (per API key) is stored
with its status, declines (402) included, and replayed for a retry with the same
parameters, marked `Idempotent-Replayed: true`; other parameters or another endpoint get
400 `idempotency_error`. Answers to invalid parameters are not stored. Requests run one
at a time, so a concurrent retry waits for the first and gets its answer replayed (Stripe
would answer 409 while the first is in flight).

Test payment methods (on confirm, or on create with `confirm=true`):

    ======================================= ===============================================
    payment_method                           outcome
    ======================================= ===============================================
    pm_card_visa, pm_card_mastercard         succeeded; one charge; payment_intent.succeeded
    pm_card_chargeDeclined                   402 card_error card_declined / generic_decline;
                                             intent back to requires_payment_method with
                                             last_payment_error; payment_intent.payment_failed
    pm_card_chargeDeclinedInsufficientFunds  as above, decline_code insufficient_funds
    pm_card_delayed                          200 processing (payment_intent.processing);
                                             succeeded with its charge `settle_delay` seconds
                                             later (payment_intent.succeeded)
    pm_card_networkFailure                   charged and succeeded, webhook sent, but the
                                             connection closes without a response; a retry
                                             with the same Idempotency-Key gets the success
    anything else                            400 resource_missing (param payment_method)
    ======================================= ===============================================

Confirming an intent that is processing, succeeded or canceled is 400
`payment_intent_unexpected_state`; so is canceling a succeeded or canceled one. Canceling
a processing intent is allowed and stops its settlement (no charge). A 402 decline, like
Stripe's, detaches the method (`payment_method: null`); the intent can be confirmed again.
Refunds need a succeeded intent; more than is left is 400 `amount_too_large`, nothing
left is 400 `charge_already_refunded`.

A lost response (pm_card_networkFailure) is a connection closed before a byte of answer:
over a socket, httpx raises `RemoteProtocolError` (curl: "Empty reply from server");
through `httpx.ASGITransport` the app raises `ConnectionDropped`, a subclass of it. (The
uvicorn access log still lists it as a 500: uvicorn logs the status before it refuses the
deliberately invalid header that keeps it from writing anything; see `server.py`.)

Webhooks: every event is `{"id": "evt_...", "object": "event", "type", "created",
"livemode": false, "data": {"object": <intent or refund>}, ...}`, POSTed as JSON to each
endpoint with `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`,
in the background, retried up to 3 times (0.25 s, 0.5 s, 1 s) on a non-2xx answer or a
connection error. Types: payment_intent.created, .processing, .succeeded,
.payment_failed, .canceled, and refund.created (data.object: the refund) for refunds.

Controls for tests (no auth):

    POST /_sandbox/outage              {"down": bool}: every /v1 call answers 503 api_error
    POST /_sandbox/webhooks            {"paused": bool}: new events are recorded, never sent
                                       (lost webhooks; unpausing does not send them)
    POST /_sandbox/events/{id}/resend  send that event again (a duplicate delivery)
    GET  /_sandbox/events              every event, oldest first, sent or not
    GET  /_sandbox/deliveries          [{event, url, status, attempts, response_status, error}]
    GET  /_sandbox/charges             [{id, payment_intent, amount, amount_refunded, ...}]
    GET  /_sandbox/endpoints           [{url, secret}]
    POST /_sandbox/endpoints           {"url", "secret"?}: add a webhook endpoint
"""

from mercato.sandbox.objects import TEST_PAYMENT_METHODS
from mercato.sandbox.protocol import signature_header
from mercato.sandbox.server import ConnectionDropped, create_sandbox_app, main, sandbox_state
from mercato.sandbox.state import SandboxState

__all__ = [
    "TEST_PAYMENT_METHODS",
    "ConnectionDropped",
    "SandboxState",
    "create_sandbox_app",
    "main",
    "sandbox_state",
    "signature_header",
]
