"""``POST /api/payments/webhook/``: the payment provider's word, the only way a
payment reaches ``payment.events`` (besides operators).

The signature is Stripe's scheme, checked by Stripe's own library
(``Stripe-Signature``, HMAC-SHA256 over the timestamp and the raw body, a
timestamp tolerance) with ``CARTFLOW_STRIPE_WEBHOOK_SECRET``. Then:

- a bad or missing signature, a stale timestamp, a body that is not JSON: 400;
- an event type that is not a payment outcome, or an intent that names no
  cartflow ``payment_id``: 200, ignored (Stripe expects 2xx for those);
- a timestamp further ahead than the tolerance (Stripe's library checks only
  how old it is): 400;
- a payment id the checkout worker says no checkout has: 404, nothing
  published (Stripe's dashboard shows the failed deliveries: refund there);
- a payment outcome: published, 200. When the checkout worker does not answer
  the lookup in time (it lags), the outcome is published all the same: the
  worker decides when it gets there (``UnmatchedPaymentReceived`` for an id no
  checkout has), so a buyer who paid in time is not left to Stripe's retries
  past the deadline. Kafka refusing it: 503 (Stripe delivers it again).

Nothing but the event id, its type and the payment id is logged: never the body.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import stripe
from aiokafka.errors import KafkaError
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from contracts.envelope import message_id_for
from contracts.errors import ErrorCode
from contracts.topics import CHECKOUT_QUERIES, PAYMENT_EVENTS
from services.gateway import payments
from services.gateway.exchange import Exchange, Unavailable
from services.gateway.original_api import problem
from services.runtime.settings import Settings

log = logging.getLogger(__name__)


class PaymentWebhook:
    def __init__(self, settings: Settings, exchange: Exchange) -> None:
        self.settings = settings
        self.exchange = exchange

    async def receive(self, request: Request) -> JSONResponse:
        secret = self.settings.stripe_webhook_secret
        assert secret is not None
        payload = await request.body()
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, request.headers.get("stripe-signature"), secret.get_secret_value(),
                self.settings.stripe_webhook_tolerance_seconds,
            )
            _not_ahead(request.headers.get("stripe-signature", ""), self.settings.stripe_webhook_tolerance_seconds)
            event = json.loads(text)
        except stripe.SignatureVerificationError as error:
            log.warning("refused a payment webhook: %s", str(error)[:200])
            return _refused(400, "INVALID_SIGNATURE", "The Stripe-Signature does not verify", "Sign with the endpoint's secret")
        except (UnicodeDecodeError, ValueError, RecursionError):
            log.warning("refused a signed payment webhook whose body is not JSON")
            return _refused(400, "INVALID_MESSAGE", "The body is not a JSON event", "Send the event as Stripe does")
        if not isinstance(event, dict):
            return _refused(400, "INVALID_MESSAGE", "The body is not a JSON event", "Send the event as Stripe does")
        outcome = payments.read(event, currency=self.settings.currency)
        where = {"event_id": str(event.get("id"))[:100], "event_type": str(event.get("type"))[:100]}
        if isinstance(outcome, payments.Ignored):
            log.info("payment webhook event ignored: %s", outcome.reason, extra=where)
            return JSONResponse({"received": True, "ignored": outcome.reason})
        if isinstance(outcome, payments.Unreadable):
            log.error("payment webhook event not taken: %s", outcome.reason, extra=where)
            return _refused(400, "INVALID_MESSAGE", f"The event cannot be taken: {outcome.reason}", "See the gateway's log")
        try:
            message = outcome.message(datetime.now(UTC))
        except ValidationError:
            log.error("payment webhook event not taken: its fields do not fit the contract", extra=where)
            return _refused(400, "INVALID_MESSAGE", "The event cannot be taken", "See the gateway's log")
        where["payment_id"] = outcome.payment_id
        try:
            known = await self._checkout_exists(outcome.payment_id)
            if known is False:
                log.error("payment webhook event names a payment id no checkout has: not passed on", extra=where)
                return _refused(404, "CHECKOUT_NOT_FOUND", "No checkout has this payment_id", "Check metadata.payment_id")
            if known is None:
                log.warning("the checkout worker did not answer the lookup in time: passed on all the same", extra=where)
            body = message.model_dump(mode="json", exclude_none=True)
            await self.exchange.publish(PAYMENT_EVENTS, body, outcome.payment_id)
        except (Unavailable, KafkaError):
            return _refused(503, "SERVICE_UNAVAILABLE", "The payment could not be passed on", "Deliver it again")
        log.info("payment webhook event published as %s", message.type, extra=where)
        return JSONResponse({"received": True, "payment_id": outcome.payment_id, "published": message.type})

    async def _checkout_exists(self, payment_id: str) -> bool | None:
        """Whether a checkout has ``payment_id`` (None: no usable answer in time)."""
        query: dict[str, Any] = {
            "type": "GetPayment",
            # A fresh question each delivery: a query's answer is where the checkout stands now.
            "message_id": message_id_for("stripe-webhook", "GetPayment", f"{payment_id}:{uuid.uuid4()}"),
            "schema_version": 1,
            "occurred_at": datetime.now(UTC).isoformat(),
            "payment_id": payment_id,
        }
        reply = await self.exchange.ask(CHECKOUT_QUERIES, query, payment_id)
        if reply is None:
            return None
        if reply.get("success"):
            return True
        return False if reply.get("error_code") == ErrorCode.CHECKOUT_NOT_FOUND else None


def _not_ahead(header: str, tolerance: int) -> None:
    """Refuse a signature timestamp further in the future than the tolerance."""
    for part in header.split(","):
        name, _, value = part.partition("=")
        if name.strip() == "t" and value.strip().isdigit() and int(value) > time.time() + tolerance:
            raise stripe.SignatureVerificationError("Timestamp ahead of the tolerance zone", header)


def _refused(status: int, code: str, message: str, action: str) -> JSONResponse:
    return JSONResponse(problem(code, message, action), status_code=status)
