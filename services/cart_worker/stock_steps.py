"""The cart's stock steps: with reservation at add-to-cart on, an add or an
increase is confirmed only once the stock worker answered on ``stock.events``;
the cart keeps the command pending and answers when the stock answer arrives,
or with ``RESERVATION_FAILED`` when it does not arrive in time.

Adds and increases of different lines run their steps at the same time; their
answers are taken in the order the commands came, so each reply leaves after
the replies to earlier commands and shows the cart as those left it. Any other
command that comes while steps are in flight (a look at the cart, a removal, a
checkout) waits in the cart's queue until none is left, and the commands after
it wait behind it; a second change of a line in flight waits, at the head of the
queue, only for that line's answer."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from contracts.envelope import message_id_for
from contracts.errors import ERROR_MESSAGES, ErrorCode
from contracts.holders import cart_line_holder, parse_cart_line_holder
from services.cart_worker import domain
from services.cart_worker.answers import CartSteps
from services.cart_worker.domain import Accepted, Cart, PendingStock, Rejected
from services.cart_worker.unit import CartUnit, StockAnswerOverdue, stock_command_id
from services.runtime.records import Outgoing


log = logging.getLogger(__name__)

#: How a held timeout is marked among held answers (stock events have a ``type``).
OVERDUE = "overdue"
#: Most stock steps one cart has in flight at once; later commands wait in its queue.
MAX_STEPS_IN_FLIGHT = 20
#: Largest answer a step holds as it came; one larger counts as its timeout.
MAX_HELD_ANSWER_BYTES = 4096
CHECKOUTS = ("CheckoutItem", "CheckoutCart")


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
                    holder=cart_line_holder(command.user_id, line.item_id),
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
                holder=cart_line_holder(command.user_id, item_id),
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
        holder = parse_cart_line_holder(getattr(event, "holder", None))
        if holder is None:
            return []
        cart = unit.cart(holder[0])
        if isinstance(event, stock_contract.StockReleased):
            if not event.no_op:
                unit.put_cart(domain.mark_released(cart, event.reservation_id, now=self.clock.now()))
            return []
        index = next(
            (n for n, step in enumerate(cart.steps) if step.is_answered_by(event.causation_id, event.reservation_id)),
            None,
        )
        if index is None:
            # Not the answer to a step in flight: a late one (the timeout already
            # compensated for it) or one to an earlier command on the same reservation.
            return []
        if index > 0:
            # An earlier step is still in flight: this answer waits its turn, so
            # that the replies leave in the order the commands came.
            if cart.steps[index].answer is None:
                unit.put_cart(domain.hold_answer(cart, index, self._to_hold(cart, index, event)))
            return []
        return [*self._take_first(unit, cart, event), *self._drain(unit, cart.user_id)]

    def _take_first(self, unit: CartUnit, cart: Cart, event: Any) -> list[Outgoing]:
        """Resolve the cart's first step with ``event``, its answer (or its timeout)."""
        if isinstance(event, StockAnswerOverdue):
            return self._time_out_first(unit, cart, event)
        now = self.clock.now()
        pending = cart.pending
        assert pending is not None
        command = cart_contract.cart_command_adapter.validate_python(pending.command)
        if isinstance(event, stock_contract.StockReserved | stock_contract.ReservationAdjusted):
            confirmed = domain.confirm_stock(cart, event.quantity, now=now)
            given_back = self._release_if_deleted(unit, confirmed, command, pending)
            confirmed = unit.cart(cart.user_id) if given_back else confirmed
            unit.put_cart(confirmed)
            if isinstance(command, cart_contract.CheckoutItem | cart_contract.CheckoutCart):
                # Only checkouts run while nothing else is in flight: resume it
                # after the line just reserved.
                return [*self._checkout(unit, command, late=True, reserved=pending.item_id), *given_back]
            confirmed_change = Accepted(confirmed, _events_of(command, pending, confirmed), None, pending.item_id)
            outcome = self._with_cart_view(unit, confirmed_change, command)
            return [*self._answer(command, outcome, late=True), *given_back]
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
                deadline=now + timedelta(seconds=self.settings.stock_reply_timeout_seconds),
                # The lapsed reservation holds nothing: a refusal leaves the line without one.
                previous=domain.unreserved(pending.previous) if pending.previous else None,
                stock_command_id=stock_command_id(command.message_id, "ReserveStock", reservation_id),
            )
            unit.put_cart(domain.retry_first(cart, retry, now=now))
            return [self._reserve(command, line, reservation_id, expires_at)]
        # Any other answer (a command refused for another reason, or an event that
        # answers nothing a cart asks): refused as a timeout would be, and whatever
        # the stock worker may have done for the step is undone.
        return self._time_out_first(unit, cart, StockAnswerOverdue.of(cart.user_id, pending))

    def _release_if_deleted(self, unit: CartUnit, cart: Cart, command: Any, pending: PendingStock) -> list[Outgoing]:
        """The product was deleted while the step was in flight (its units were not
        released then, the line held none yet): give them back now. The cart with
        the line unreserved is put in ``unit``."""
        line = cart.line(pending.item_id)
        product = unit.products.get(line.product_id) if line else None
        if line is None or product is None or not product.is_deleted or not line.reservation_id:
            return []
        unit.put_cart(domain.mark_released(cart, line.reservation_id, now=self.clock.now()))
        release = self._stock_command(
            stock_contract.ReleaseReservation,
            f"{command.message_id}:product_deleted",
            command.correlation_id,
            reservation_id=line.reservation_id,
            product_id=line.product_id,
            reason="product_deleted",
            holder=cart_line_holder(command.user_id, line.item_id),
        )
        return [release]

    def _resolve_refused(self, unit: CartUnit, cart: Cart, command: Any, rejection: Rejected) -> list[Outgoing]:
        unit.put_cart(domain.roll_back_stock(cart, now=self.clock.now()))
        return self._answer(command, rejection, late=True)

    def _on_overdue(self, unit: CartUnit, overdue: StockAnswerOverdue) -> list[Outgoing]:
        cart = unit.cart(overdue.user_id)
        index = next((n for n, step in enumerate(cart.steps) if StockAnswerOverdue.of(cart.user_id, step) == overdue), None)
        if index is None or cart.steps[index].answer is not None:
            return []  # answered (or answered already, waiting its turn)
        if index > 0:
            unit.put_cart(domain.hold_answer(cart, index, {OVERDUE: dataclasses.asdict(overdue)}))
            return []
        return [*self._time_out_first(unit, cart, overdue), *self._drain(unit, cart.user_id)]

    def _time_out_first(self, unit: CartUnit, cart: Cart, overdue: StockAnswerOverdue) -> list[Outgoing]:
        """The first step's answer did not come in time: refuse its command and undo
        whatever the stock worker may still do for it."""
        pending = cart.pending
        assert pending is not None
        try:
            command = cart_contract.cart_command_adapter.validate_python(pending.command)
        except ValueError:  # stored by an earlier release whose commands this one no longer reads
            command = None
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
            command.correlation_id if command else pending.command.get("correlation_id"),  # checked there
            reservation_id=pending.reservation_id,
            product_id=product_id,
            holder=cart_line_holder(cart.user_id, pending.item_id),
            **undo,
        )
        if command is None:
            log.error("the command of step %s no longer reads; the step is undone", pending.reservation_id)
            unit.put_cart(domain.roll_back_stock(cart, now=self.clock.now()))
            code = ErrorCode.RESERVATION_FAILED
            return [*self._answer_unreadable(pending.command, code, ERROR_MESSAGES[code]), compensation]
        return [*self._resolve_refused(unit, cart, command, domain.reservation_timed_out(pending)), compensation]

    @staticmethod
    def _to_hold(cart: Cart, index: int, event: Any) -> dict[str, Any]:
        """What the cart keeps of an answer that waits its turn: the event, or, when
        it is larger than any the stock worker sends (a long free-text field),
        the step's timeout, which undoes whatever the stock worker did for it."""
        answer = event.model_dump(mode="json")
        if len(json.dumps(answer)) <= MAX_HELD_ANSWER_BYTES:
            return answer
        return {OVERDUE: dataclasses.asdict(StockAnswerOverdue.of(cart.user_id, cart.steps[index]))}

    def _held(self, user_id: str, step: PendingStock) -> Any:
        """A held answer as it came: a stock event, or the timeout of its step. One
        that no longer reads (stored by another release) counts as the timeout,
        which undoes whatever the stock worker did for the step."""
        answer = {key: value for key, value in (step.answer or {}).items() if key != domain.RELEASED_SINCE}
        try:
            if OVERDUE in answer:
                return StockAnswerOverdue(**answer[OVERDUE])
            return stock_contract.stock_event_adapter.validate_python(answer)
        except (TypeError, ValueError):  # pydantic's ValidationError is a ValueError
            return StockAnswerOverdue.of(user_id, step)

    def _start_alongside(self, unit: CartUnit, cart: Cart, command: Any) -> list[Outgoing] | None:
        """Start ``command``'s own stock step while others are in flight, when it
        is an add or an increase of a line none of them is about; None when it
        must wait for them instead. ``cart`` is the cart as the command finds it."""
        if not (self.reserving and isinstance(command, cart_contract.AddItem | cart_contract.UpdateItemQuantity)):
            return None
        if cart.handover is not None:
            return None  # lines are being handed over: everything waits for that answer
        if len(cart.steps) >= MAX_STEPS_IN_FLIGHT or any(
            step.command.get("type") in CHECKOUTS for step in cart.steps
        ):
            return None
        outcome = self._decide(unit, command, cart)
        if not isinstance(outcome, Accepted) or not outcome.events or cart.in_flight(outcome.item_id or ""):
            return None
        pending, stock_step, new_cart = self._stock_step(cart, outcome, command)
        if pending is None:
            return None  # answered at once: it would overtake the replies still to come
        unit.put_cart(new_cart)
        return stock_step

    def _take_held(self, unit: CartUnit, cart: Cart, first: PendingStock) -> list[Outgoing]:
        """Resolve the first step with the answer it held. Should that fail (a bug,
        or what an earlier release stored), the step times out instead: the cart
        moves on rather than failing every answer that comes after."""
        assert first.answer is not None
        try:
            outputs = self._take_first(unit, cart, self._held(cart.user_id, first))
        except Exception:
            log.exception("taking the held answer of step %s failed; it times out instead", first.reservation_id)
            unit.carts[cart.user_id] = cart  # as before the attempt (only this cart was touched)
            unit.dirty_carts.add(cart.user_id)
            overdue = StockAnswerOverdue.of(cart.user_id, first)
            try:
                return self._time_out_first(unit, cart, overdue)
            except Exception:
                # Not even that: the step is dropped, its line as before it, so that
                # the cart goes on; its reservation, if any was made, lapses in time.
                log.critical("timing out step %s failed too; dropped", first.reservation_id, exc_info=True)
                unit.carts[cart.user_id] = cart
                unit.put_cart(domain.roll_back_stock(cart, now=self.clock.now()))
                return []
        if first.answer.get(domain.RELEASED_SINCE):
            now = self.clock.now()
            unit.put_cart(domain.mark_released(unit.cart(cart.user_id), first.reservation_id, now=now))
        return outputs

    def _drain(self, unit: CartUnit, user_id: str) -> list[Outgoing]:
        """After a step was resolved: resolve the next ones whose answers already
        came, then run the commands that waited, until one waits again."""
        outputs: list[Outgoing] = []
        while True:
            cart = unit.cart(user_id)
            first = cart.pending
            if first is not None and first.answer is not None:
                outputs.extend(self._take_held(unit, cart, first))
                continue
            if not cart.queue:
                return outputs
            rest = replace(cart, queue=cart.queue[1:])
            try:
                command = cart_contract.cart_command_adapter.validate_python(cart.queue[0])
            except ValueError:  # pydantic's ValidationError is one
                # Queued by an earlier release whose commands this one no longer
                # reads: answered as not carried out, so the cart does not wait on it forever.
                log.error("a command queued in the cart of %s no longer reads; dropped: %.500r", user_id, cart.queue[0])
                unit.put_cart(rest)
                outputs.extend(
                    self._answer_unreadable(cart.queue[0], ErrorCode.INTERNAL_ERROR, "The command could not be carried out")
                )
                continue
            if first is None and cart.handover is not None:
                return outputs  # they wait for the checkout worker's answer
            if first is None:
                unit.put_cart(rest)
                outputs.extend(self._on_command(unit, command, late=True))
                continue
            started = self._start_alongside(unit, rest, command)
            if started is None:
                return outputs
            outputs.extend(started)


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
