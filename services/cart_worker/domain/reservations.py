"""A line's stock step: who holds its reservation, waiting for the stock worker's
answer, confirming or rolling it back, and the rejections that follow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from contracts.errors import ERROR_MESSAGES, ErrorCode
from services.cart_worker.domain.model import PENDING, RESERVED, UNRESERVED, Cart, CartLine, PendingStock
from services.cart_worker.domain.outcomes import Rejected, cannot_add_more, not_enough_stock


def await_stock(
    cart: Cart, pending: PendingStock, *, now: datetime
) -> Cart:
    """The cart with the pending line marked as waiting for the stock worker,
    its step last in flight."""
    return _waiting(replace(cart, steps=(*cart.steps, pending)), pending, now)


def retry_first(cart: Cart, retry: PendingStock, *, now: datetime) -> Cart:
    """The cart with ``retry`` in place of its first step (asked again differently):
    whatever answer the first step held was the one that led to the retry."""
    retry = replace(retry, answer=None)
    return _waiting(replace(cart, steps=(retry, *cart.steps[1:])), retry, now)


def _waiting(cart: Cart, pending: PendingStock, now: datetime) -> Cart:
    line = cart.line(pending.item_id)
    assert line is not None
    return cart.with_line(replace(line, reservation_state=PENDING, reservation_id=pending.reservation_id), now)


def hold_answer(cart: Cart, index: int, answer: Any) -> Cart:
    """The cart with ``answer`` kept on its step ``index`` until the steps before it are answered."""
    steps = list(cart.steps)
    steps[index] = replace(steps[index], answer=answer)
    return replace(cart, steps=tuple(steps))


def confirm_stock(cart: Cart, quantity: int, *, now: datetime) -> Cart:
    """The stock worker holds the units: the first step's line is reserved."""
    pending = cart.pending
    assert pending is not None
    line = cart.line(pending.item_id)
    cart = replace(cart, steps=cart.steps[1:])
    if line is None:
        return cart
    reserved = replace(line, reservation_state=RESERVED, reserved_quantity=quantity, reservation_id=pending.reservation_id)
    return cart.with_line(reserved, now)


def roll_back_stock(cart: Cart, *, now: datetime) -> Cart:
    """The units could not be had: the first step's line is as it was before its command."""
    pending = cart.pending
    assert pending is not None
    cart = replace(cart, steps=cart.steps[1:])
    if pending.previous is None:
        return cart.without([pending.item_id], now)
    return cart.with_line(pending.previous, now)


def before_steps(cart: Cart) -> Cart:
    """The cart as it was before the steps still in flight: what a reply to an
    earlier command shows, since their commands came after it."""
    for step in reversed(cart.steps):
        if step.previous is None:
            cart = replace(cart, lines=tuple(line for line in cart.lines if line.item_id != step.item_id))
        else:
            cart = replace(cart, lines=tuple(step.previous if line.item_id == step.item_id else line for line in cart.lines))
    return replace(cart, steps=())


def mark_released(cart: Cart, reservation_id: str, *, now: datetime) -> Cart:
    """The stock worker let go of a line's units (expiry, product deleted)."""
    steps = tuple(
        # Should that step be refused, its line goes back to holding nothing.
        replace(step, previous=unreserved(step.previous))
        if step.previous is not None and step.previous.reservation_id == reservation_id
        else step
        for step in cart.steps
    )
    steps = tuple(
        # Its answer came, and waits for the steps before it: the release is
        # taken right after that answer, in the order the stock worker sent them.
        replace(step, released_since=True)
        if step.answer is not None and step.reservation_id == reservation_id
        else step
        for step in steps
    )
    if steps != cart.steps:
        cart = replace(cart, steps=steps)
    for line in cart.lines:
        if line.reservation_id == reservation_id and line.reservation_state != PENDING:
            return cart.with_line(unreserved(line), now)
        if line.reservation_id == reservation_id:
            # An adjustment is in flight for a reservation that just lapsed:
            # nothing is held any more, whatever the answer will be.
            return cart.with_line(replace(line, reserved_quantity=0), now)
    return cart


def give_up_product(cart: Cart, product_id: str, *, now: datetime) -> tuple[Cart, tuple[CartLine, ...]]:
    """A product no longer sold: the cart with none of its units held, and the
    lines whose reservations to release (as they held them). That is every line
    of it that holds a reservation, and every one whose change is in flight
    while it holds units from before (an increase waiting for the stock
    worker): should that change be refused or time out, the line goes back to
    holding nothing, not to the reservation it had."""
    held = {line.reservation_id: line for line in cart.lines if line.product_id == product_id and line.is_reserved}
    for step in cart.steps:
        before = step.previous
        if before is not None and before.product_id == product_id and before.is_reserved:
            held.setdefault(before.reservation_id, before)
    held.pop(None, None)
    for reservation_id in held:
        assert reservation_id is not None
        cart = mark_released(cart, reservation_id, now=now)
    return cart, tuple(held.values())


def unreserved(line: CartLine) -> CartLine:
    """The line holding no reservation (its own lapsed)."""
    return replace(line, reservation_state=UNRESERVED, reserved_quantity=0, reservation_id=None)


def insufficient_stock(pending: PendingStock, command_type: str, requested: int, available: int) -> Rejected:
    """The stock worker's refusal in the words buyers know: "Only N items available
    (requested R)", "Only N items available in size S", or, adding to a line
    already in the cart, "Cannot add N more. Only M more available"."""
    previous = pending.previous
    if command_type == "AddItem" and previous is not None:
        return cannot_add_more(requested - previous.quantity, available - previous.quantity, item_id=previous.item_id)
    size = previous.size if previous is not None else getattr(pending.command, "size", None)
    return not_enough_stock(
        available, requested, size if isinstance(size, str) else None, item_id=previous.item_id if previous else None
    )


def reservation_timed_out(pending: PendingStock) -> Rejected:
    return Rejected(
        ErrorCode.RESERVATION_FAILED,
        ERROR_MESSAGES[ErrorCode.RESERVATION_FAILED],
        "The stock could not be reserved in time: try again in a moment",
        item_id=pending.previous.item_id if pending.previous else None,
    )
