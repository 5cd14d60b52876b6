"""The cart's stock steps: with reservation at add-to-cart on, an add or an
increase is confirmed only once the stock worker answered on ``stock.events``;
the cart keeps the command pending, queues the user's later commands behind it,
and answers when the stock answer arrives, or with ``RESERVATION_FAILED`` when
it does not arrive in time."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from contracts.envelope import message_id_for
from contracts.errors import ERROR_MESSAGES, ErrorCode
from services.cart_worker import domain
from services.cart_worker.answers import CartSteps
from services.cart_worker.domain import Accepted, Cart, PendingStock, Rejected
from services.cart_worker.unit import CartUnit, StockAnswerOverdue, stock_command_id
from services.runtime.records import Outgoing


class StockSteps(CartSteps):
    """A change that needs stock waits for the stock worker's answer; the answer
    (or its absence) decides the reply, then the user's queued commands run."""

    def _stock_step(
        self, before: Cart, outcome: Accepted, command: Any
    ) -> tuple[PendingStock | None, list[Outgoing], Cart]:
        """What the stock worker must do for this change, and whether the answer waits for it."""
        now = self.clock.now()
        after = outcome.cart
        if isinstance(command, cart_contract.RemoveItem | cart_contract.ClearCart):
            gone = [line for line in before.lines if after.line(line.item_id) is None]
            releases = [
                self._stock_command(
                    stock_contract.ReleaseReservation,
                    command.message_id,
                    command.correlation_id,
                    reservation_id=line.reservation_id,
                    product_id=line.product_id,
                    reason="removed_from_cart",
                    holder=domain.holder_of(command.user_id, line.item_id),
                )
                for line in gone
                if line.is_reserved and line.reservation_id
            ]
            return None, releases, after
        if not isinstance(command, cart_contract.AddItem | cart_contract.UpdateItemQuantity) or not outcome.events:
            return None, [], after
        item_id = outcome.item_id or ""
        previous, line = before.line(item_id), after.line(item_id)
        if not self.reserving and (previous is None or not previous.is_reserved):
            return None, [], after  # reserved at checkout, not now
        assert line is not None
        expires_at = now + timedelta(seconds=self.settings.cart_reservation_ttl)
        if previous is not None and previous.is_reserved and previous.reservation_id:
            adjust = self._stock_command(
                stock_contract.AdjustReservation,
                command.message_id,
                command.correlation_id,
                reservation_id=previous.reservation_id,
                product_id=line.product_id,
                quantity=line.quantity,
                expires_at=expires_at,
                holder=domain.holder_of(command.user_id, item_id),
            )
            if line.quantity <= previous.reserved_quantity:
                # Shrinking cannot fail: confirm now, let the stock worker catch up.
                shrunk = replace(line, reserved_quantity=line.quantity)
                return None, [adjust], after.with_line(shrunk, now)
            reservation_id, operation, stock_command = previous.reservation_id, "adjust", adjust
        else:
            reservation_id = message_id_for(command.message_id, "Reservation", item_id)
            operation = "reserve"
            stock_command = self._reserve(command, line, reservation_id, expires_at)
        kind = "AdjustReservation" if operation == "adjust" else "ReserveStock"
        pending = PendingStock(
            command=command.model_dump(mode="json"),
            item_id=item_id,
            reservation_id=reservation_id,
            operation=operation,
            previous=previous,
            deadline=now + timedelta(seconds=self.settings.stock_reply_timeout_seconds),
            stock_command_id=stock_command_id(command.message_id, kind, reservation_id),
        )
        return pending, [stock_command], domain.await_stock(after, pending, now=now)

    def _on_stock_answer(self, unit: CartUnit, event: Any) -> list[Outgoing]:
        holder = domain.parse_holder(getattr(event, "holder", None))
        if holder is None:
            return []
        now = self.clock.now()
        cart = unit.cart(holder[0])
        pending = cart.pending
        if isinstance(event, stock_contract.StockReleased):
            if not event.no_op:
                unit.put_cart(domain.mark_released(cart, event.reservation_id, now=now))
            return []
        if pending is None or not pending.is_answered_by(event.causation_id, event.reservation_id):
            # Not the answer to the step in flight: a late one (the timeout already
            # compensated for it) or one to an earlier command on the same reservation.
            return []
        command = cart_contract.cart_command_adapter.validate_python(pending.command)
        if isinstance(event, stock_contract.StockReserved | stock_contract.ReservationAdjusted):
            confirmed = domain.confirm_stock(cart, event.quantity, now=now)
            unit.put_cart(confirmed)
            if isinstance(command, cart_contract.CheckoutItem | cart_contract.CheckoutCart):
                return [*self._on_command(unit, command, late=True), *self._drain(unit, cart.user_id)]
            confirmed_change = Accepted(confirmed, _events_of(command, pending, confirmed), None, pending.item_id)
            outcome = self._with_cart_view(unit, confirmed_change, command)
            return [*self._answer(command, outcome, late=True), *self._drain(unit, cart.user_id)]
        if isinstance(event, stock_contract.StockReservationRejected):
            rejection = domain.insufficient_stock(pending, command.type, event.requested, event.available)
            if isinstance(command, cart_contract.CheckoutItem | cart_contract.CheckoutCart):
                rejection = replace(
                    rejection,
                    code=ErrorCode.CHECKOUT_VALIDATION_FAILED,
                    message=ERROR_MESSAGES[ErrorCode.CHECKOUT_VALIDATION_FAILED],
                    data=domain.refused_at_checkout(
                        cart, unit.products, pending.item_id, event.requested, event.available, rejection.message),
                )
            return self._resolve_refused(unit, cart, command, rejection)
        if (
            isinstance(event, stock_contract.StockCommandRejected)
            and event.error_code == ErrorCode.RESERVATION_NOT_ACTIVE
            and pending.operation == "adjust"
        ):
            # The line's reservation lapsed while the change was on its way:
            # ask for the whole quantity afresh, once.
            line = cart.line(pending.item_id)
            assert line is not None
            reservation_id = message_id_for(command.message_id, "Reservation.retry", pending.item_id)
            expires_at = now + timedelta(seconds=self.settings.cart_reservation_ttl)
            retry = replace(
                pending,
                reservation_id=reservation_id,
                operation="reserve",
                # The lapsed reservation holds nothing: a refusal leaves the line without one.
                previous=domain.unreserved(pending.previous) if pending.previous else None,
                stock_command_id=stock_command_id(command.message_id, "ReserveStock", reservation_id),
            )
            unit.put_cart(domain.await_stock(replace(cart, pending=None), retry, now=now))
            return [self._reserve(command, line, reservation_id, expires_at)]
        return self._resolve_refused(unit, cart, command, domain.reservation_timed_out(pending))

    def _resolve_refused(self, unit: CartUnit, cart: Cart, command: Any, rejection: Rejected) -> list[Outgoing]:
        unit.put_cart(domain.roll_back_stock(cart, now=self.clock.now()))
        return [*self._answer(command, rejection, late=True), *self._drain(unit, cart.user_id)]

    def _on_overdue(self, unit: CartUnit, overdue: StockAnswerOverdue) -> list[Outgoing]:
        cart = unit.cart(overdue.user_id)
        pending = cart.pending
        if pending is None or (pending.reservation_id, pending.command.get("message_id")) != (
            overdue.reservation_id,
            overdue.command_id,
        ):
            return []
        command = cart_contract.cart_command_adapter.validate_python(pending.command)
        line = cart.line(pending.item_id)
        product_id = line.product_id if line else (pending.previous.product_id if pending.previous else "")
        previous = pending.previous
        if pending.operation == "adjust" and previous is not None and previous.reserved_quantity:
            # Whatever the stock worker did with the adjustment, put it back.
            kind: type = stock_contract.AdjustReservation
            undo: dict[str, Any] = {"quantity": previous.reserved_quantity}
        else:
            # Release whatever may be reserved late.
            kind, undo = stock_contract.ReleaseReservation, {"reason": "reservation_timeout"}
        compensation = self._stock_command(
            kind,
            overdue.dedup_key,
            command.correlation_id,
            reservation_id=pending.reservation_id,
            product_id=product_id,
            holder=domain.holder_of(cart.user_id, pending.item_id),
            **undo,
        )
        return [*self._resolve_refused(unit, cart, command, domain.reservation_timed_out(pending)), compensation]

    def _drain(self, unit: CartUnit, user_id: str) -> list[Outgoing]:
        """Run the commands that waited behind a resolved stock step, until one waits again."""
        outputs: list[Outgoing] = []
        while True:
            cart = unit.cart(user_id)
            if cart.pending is not None or not cart.queue:
                return outputs
            unit.put_cart(replace(cart, queue=cart.queue[1:]))
            command = cart_contract.cart_command_adapter.validate_python(cart.queue[0])
            outputs.extend(self._on_command(unit, command, late=True))


def _events_of(command: Any, pending: PendingStock, cart: Cart) -> tuple[domain.DomainEvent, ...]:
    """The cart events of a change confirmed by the stock worker."""
    line = cart.line(pending.item_id)
    if line is None:
        return ()
    previous = pending.previous
    if isinstance(command, cart_contract.AddItem):
        added = line.quantity - (previous.quantity if previous else 0)
        return (
            domain.ItemAdded(
                cart.user_id, line.item_id, line.product_id, line.size, added, line.quantity, line.unit_price, line.product_name
            ),
        )
    return (
        domain.ItemQuantityChanged(
            cart.user_id, line.item_id, line.product_id, line.size, previous.quantity if previous else 0, line.quantity
        ),
    )
