"""Checking out from the cart: the lines are validated, each holds its stock (or
is reserved first), then they are handed over to the checkout worker in one
``StartCheckout``, which answers the buyer once the orders exist."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal
from typing import Any

from contracts import cart as cart_contract
from contracts.checkout import CheckoutAccepted, CheckoutLine, StartCheckout
from contracts.envelope import message_id_for
from contracts.errors import ERROR_MESSAGES, ErrorCode
from services.cart_worker import domain, published
from services.cart_worker.answers import CartSteps
from services.cart_worker.domain import PendingStock, Rejected
from services.cart_worker.unit import CartUnit, payment_id_for, stock_command_id
from services.runtime.codec import unstorable
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
        first = order.index(reserved) + 1 if reserved in order else 0
        for line in lines[first:]:
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
        if (problem := unstorable(start)) is not None:
            # The checkout worker could not keep it: refuse it here, before anything moved.
            rejection = Rejected(ErrorCode.INVALID_MESSAGE, f"The checkout cannot be started: {problem}", "Check the shipping address")
            return self._answer(command, rejection, late=late)
        # The lines stay the buyer's until the checkout worker accepts them
        # (``checkout.handovers``); the buyer's later commands wait meanwhile.
        unit.put_cart(
            domain.hand_over(
                cart,
                domain.Handover(
                    payment_id=payment_id,
                    start_message_id=start.message_id,
                    command=command.model_dump(mode="json"),
                    item_ids=tuple(line.item_id for line in lines),
                    checkout_type=checkout_type,
                    handed_at=now,
                ),
            )
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
        return [handover]

    def _on_handover_answer(self, unit: CartUnit, answer: Any) -> list[Outgoing]:
        """The checkout worker's answer to a hand-over: accepted, the lines are
        gone from the cart; refused, they stay as they were and the buyer's
        checkout is answered with the refusal. The commands that waited run
        next (see ``CartLogic.handle``)."""
        now = self.clock.now()
        accepted = isinstance(answer, CheckoutAccepted)
        cart = unit.cart(answer.user_id)
        answered = domain.handover_answered(cart, answer.payment_id, answer.causation_id, accepted=accepted, now=now)
        if answered is None:
            return []  # not the answer this cart waits for: a repeat, a late or a forged one
        cart, handover = answered
        unit.put_cart(cart)
        try:
            command = cart_contract.cart_command_adapter.validate_python(handover.command)
        except ValueError:
            command = None  # stored by a release whose commands this one no longer reads
        outputs: list[Outgoing] = []
        envelope = causal_envelope(answer.message_id, answer.correlation_id, now)
        if accepted:
            outputs = event_records(
                [domain.CartCheckedOut(answer.user_id, handover.payment_id, handover.checkout_type, list(handover.item_ids))],
                published.CART_EVENTS,
                topic=self.events_topic,
                key=answer.user_id,
                cause_id=handover.start_message_id,
                envelope=envelope,
            )
        elif command is not None:
            code = answer.error_code if answer.error_code in ErrorCode.__members__ else ErrorCode.CHECKOUT_NOT_AVAILABLE
            rejection = Rejected(
                ErrorCode(code),
                f"The checkout could not be started: {answer.message}"[:500] if answer.message else ERROR_MESSAGES[ErrorCode(code)],
                "Your cart is as it was; check the details and check out again",
            )
            outputs = self._answer(command, rejection, late=True)
        else:
            outputs = self._answer_unreadable(handover.command, ErrorCode.CHECKOUT_NOT_AVAILABLE, ERROR_MESSAGES[ErrorCode.CHECKOUT_NOT_AVAILABLE])
        return outputs
