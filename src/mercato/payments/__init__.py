"""Payments: paying orders through a provider port (Stripe's PaymentIntents protocol),
provider webhooks, reconciliation and refunds. Its tables live in the `payments` schema.
"""

from mercato.payments.provider import PaymentProvider
from mercato.payments.stripe import StripeProvider

__all__ = ["PaymentProvider", "StripeProvider"]
