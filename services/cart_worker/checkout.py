"""Checking out from the cart: the lines are validated, each holds its stock (or
is reserved first), then they are handed over to the checkout worker in one
``StartCheckout``, which answers the buyer once the orders exist."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal
from typing import Any

from contracts import cart as cart_contract
from contracts.checkout import CheckoutLine, StartCheckout
from contracts.envelope import message_id_for
from contracts.errors import ERROR_MESSAGES, ErrorCode
from services.cart_worker import domain
from services.cart_worker.answers import CartSteps
from services.cart_worker.domain import PendingStock, Rejected
from services.cart_worker.unit import CartUnit, payment_id_for, stock_command_id
from services.runtime.emit import causal_envelope, event_records
from services.runtime.records import Outgoing


class CheckoutHandover(CartSteps):
    """Checkout from the cart's side: validate, make sure every line holds its
    stock, hand the lines over."""

    def _checkout(self, unit: CartUnit, command: Any, *, late: bool, reserved: str | None = None) -> list[Outgoing]:
        """Validate, make sure every line holds its stock, then hand the lines over
        to the checkout worker, which answers the upstream once the orders exist."""
        now = self.clock.now()
        cart = unit.cart(command.user_id)
        item_ids = [command.item_id] if isinstance(command, cart_contract.CheckoutItem) else None
        validation = domain.validate_cart(cart, unit.products, item_ids=item_ids, stock=unit.stock)
        if isinstance(validation, Rejected):
            return self._answer(command, validation, late=late)
        assert validation.data is not None
        if not validation.data["is_valid"]:
            rejection = Rejected(
                ErrorCode.CHECKOUT_VALIDATION_FAILED,
                ERROR_MESSAGES[ErrorCode.CHECKOUT_VALIDATION_FAILED],
                "See validation_details: accept the changes or remove the unavailable items, then check out again",
                data=validation.data,
            )
            return self._answer(command, rejection, late=late)
        lines = [line for line in cart.lines if item_ids is None or line.item_id in item_ids]
        # Lines are reserved one after the other, in the cart's order, each at
        # most once per checkout: after the answer for ``reserved``, only the
        # lines after it are looked at. One whose reservation lapsed while later
        # ones were reserved is handed over without one (the checkout worker
        # reserves it afresh), so a checkout ends in at most one round trip per
        # line, however short the reservations' TTL.
        order = [line.item_id for line in lines]
        start = order.index(reserved) + 1 if reserved in order else 0
        for line in lines[start:]:
            if not line.is_reserved:
                # Reserve first (the cart reservation expired, or reservation at
                # add-to-cart is off); the checkout runs again once stock answered.
                reservation_id = message_id_for(command.message_id, "Reservation", f"{line.item_id}@{cart.version}")
                expires_at = now + timedelta(seconds=self.settings.cart_reservation_ttl)
                reserve = self._reserve(command, line, reservation_id, expires_at)
                pending = PendingStock(
                    command=command.model_dump(mode="json"),
                    item_id=line.item_id,
                    reservation_id=reservation_id,
                    operation="reserve",
                    previous=line,
                    deadline=now + timedelta(seconds=self.settings.stock_reply_timeout_seconds),
                    stock_command_id=stock_command_id(command.message_id, "ReserveStock", reservation_id),
                )
                unit.put_cart(domain.await_stock(cart, pending, now=now))
                return [reserve]

        payment_id = payment_id_for(command.message_id)
        checkout_lines = [
            CheckoutLine(
                order_id=message_id_for(command.message_id, "Order", line.item_id),
                item_id=line.item_id,
                product_id=line.product_id,
                product_name=line.product_name,
                size=line.size,
                quantity=line.quantity,
                # The live price: a validated line's price has not changed, or the change was accepted.
                unit_price=domain.live_price(line, unit.products.get(line.product_id)),
                total_price=domain.live_total(line, unit.products.get(line.product_id)),
                reservation_id=line.reservation_id,
            )
            for line in lines
        ]
        total = sum((line.total_price for line in checkout_lines), Decimal(0))
        fingerprint = "|".join([payment_id, *(line.order_id for line in checkout_lines), str(total)])
        checkout_type = "single_item" if item_ids else "full_cart"
        start = StartCheckout(
            message_id=message_id_for(command.message_id, "StartCheckout", payment_id),
            **causal_envelope(command.message_id, command.correlation_id, now),
            reply_to=command.reply_to or self.replies_topic,
            payment_id=payment_id,
            payment_hash=hashlib.sha256(fingerprint.encode()).hexdigest(),
            user_id=command.user_id,
            checkout_type=checkout_type,
            lines=checkout_lines,
            total_amount=total,
            payment_method=command.payment_method,
            gateway_name=command.gateway_name or self.settings.checkout_default_gateway,
            shipping_address=command.shipping_address,
            command_type=command.type,
            command_message_id=command.message_id,
        )
        handover_bytes = start.to_json_bytes()
        if len(handover_bytes) > self.settings.max_message_bytes:
            # The checkout worker would refuse it unread: refuse it here, before anything moved.
            rejection = Rejected(
                ErrorCode.CART_LIMIT_REACHED,
                f"These {len(lines)} items are too many to check out at once",
                "Check out fewer items at a time",
            )
            return self._answer(command, rejection, late=late)
        item_ids_out = [line.item_id for line in lines]
        unit.put_cart(cart.without(item_ids_out, now))
        events = event_records(
            [domain.CartCheckedOut(command.user_id, payment_id, checkout_type, item_ids_out)],
            cart_contract,
            topic=self.events_topic,
            key=command.user_id,
            cause_id=command.message_id,
            envelope=causal_envelope(command.message_id, command.correlation_id, now),
        )
        # The hand-over counts as the command's reply: a repeat of the command
        # sends it again, and the checkout worker answers the repeat with its
        # stored response.
        handover = Outgoing(
            self.checkout_commands_topic,
            payment_id.encode(),
            handover_bytes,
            is_reply=True,
            answers=command.message_id if late else None,
        )
        return [handover, *events]
