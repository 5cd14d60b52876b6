"""The cart's saga: each message that concerns a cart (a buyer's command, the
stock worker's answer to a stock step, a step's timeout, the checkout worker's
answer to a hand-over) becomes a ``Step``: the cart after it, and the effects
it asks for (``effects``), in order.

With reservation at add-to-cart on, an add or an increase is confirmed only
once the stock worker answered; the cart keeps the command pending and answers
when the stock answer arrives, or with ``RESERVATION_FAILED`` when it does not
arrive in time, undoing the step with its compensation. Adds and increases of
different lines run their steps at the same time; their answers are taken in
the order the commands came, so each reply leaves after the replies to earlier
commands and shows the cart as those left it. Any other command that comes
while steps are in flight (a look at the cart, a removal, a checkout) waits in
the cart's queue until none is left, and the commands after it wait behind it;
a second change of a line in flight waits, at the head of the queue, only for
that line's answer.

A checkout validates the lines, reserves those that hold nothing (one after
the other, each at most once per checkout), then hands them over to the
checkout worker; the lines stay the buyer's until it accepted them.

Pure: the catalog and stock the batch read come in a ``Context``, the worker's
settings in ``Rules``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from contracts.checkout import CheckoutAccepted
from contracts.derived_ids import (
    new_item_id,
    order_id_for,
    payment_id_for,
    reservation_id_for,
    start_checkout_id,
    stock_command_id,
)
from contracts.errors import ERROR_MESSAGES, ErrorCode
from services.cart_worker.domain.availability import live_price, live_total, stock_key, units_available
from services.cart_worker.domain.changes import accept_changes, check_changes, refused_at_checkout, validate_cart
from services.cart_worker.domain.editing import add_item, clear_cart, remove_item, update_item_quantity
from services.cart_worker.domain.effects import (
    Adjust,
    Announce,
    Cause,
    HandedLine,
    HandOver,
    Release,
    Reply,
    ReplyUnreadable,
    Reserve,
    Step,
)
from services.cart_worker.domain.events import CartCheckedOut, DomainEvent, ItemAdded, ItemQuantityChanged
from services.cart_worker.domain.handover import hand_over, handover_answered
from services.cart_worker.domain.model import (
    Cart,
    CartLimits,
    CartLine,
    Handover,
    PendingStock,
    Product,
    StockAnswerOverdue,
    Unreadable,
)
from services.cart_worker.domain.outcomes import Accepted, Outcome, Rejected
from services.cart_worker.domain.reservations import (
    await_stock,
    before_steps,
    confirm_stock,
    give_up_product,
    hold_answer,
    insufficient_stock,
    mark_released,
    reservation_timed_out,
    retry_first,
    roll_back_stock,
    unreserved,
)
from services.cart_worker.domain.views import added_view, cart_count, cart_summary, product_page, updated_view

log = logging.getLogger(__name__)

#: Most stock steps one cart has in flight at once; later commands wait in its queue.
MAX_STEPS_IN_FLIGHT = 20
#: Most commands that wait behind one cart's stock step (a cart document stays bounded).
MAX_QUEUED_COMMANDS = 100
#: Largest answer a step holds as it came; one larger counts as its timeout.
MAX_HELD_ANSWER_BYTES = 4096
#: What a buyer is told of a checkout the checkout worker refused to start.
CHECKOUT_NOT_STARTED = "The checkout could not be started"

CHECKOUTS = (cart_contract.CheckoutItem, cart_contract.CheckoutCart)
CHANGES = (cart_contract.AddItem, cart_contract.UpdateItemQuantity)


@dataclass(frozen=True)
class Rules:
    """The settings the saga follows."""

    reserving: bool  # reservation at add-to-cart
    reservation_ttl: timedelta
    answer_timeout: timedelta  # how long a step waits for the stock worker
    limits: CartLimits
    default_gateway: str
    #: Why a hand-over could not be sent (too large, not storable), as the
    #: refusal to answer with; None when it can. Supplied by the translator.
    handover_refusal: Callable[[HandOver], Rejected | None] = lambda handover: None
    #: Raises when effects cannot become messages. Supplied by the translator;
    #: a held answer whose step fails it times out instead (see ``_take_held``).
    check_effects: Callable[[tuple[Any, ...]], object] = lambda effects: None


@dataclass(frozen=True)
class Context:
    """What the batch read besides the cart: the catalog, the stock read model
    and the catalog pages asked for (by the asking command's id)."""

    now: datetime
    products: Mapping[str, Product]
    stock: Mapping[str, int]
    pages: Mapping[str, Sequence[str]]


# --- a command ---------------------------------------------------------------------------------


def on_command(cart: Cart, command: Any, context: Context, rules: Rules, *, late: bool = False) -> Step:
    """A buyer's command: decided now, started as a stock step, or queued behind the steps in flight."""
    if cart.is_busy and not isinstance(command, cart_contract.ListProducts):
        # The catalog is no part of the cart: listing it waits for nothing.
        if not cart.queue and (started := _start_alongside(cart, command, context, rules)) is not None:
            return started
        if len(cart.queue) >= MAX_QUEUED_COMMANDS:
            busy = Rejected(
                ErrorCode.CART_LIMIT_REACHED,
                f"{MAX_QUEUED_COMMANDS} commands already wait for this cart",
                "Wait for the answers to the commands already sent, then send this one again",
            )
            return Step(cart, (Reply(command, busy, late),))
        return Step(replace(cart, queue=(*cart.queue, command)))
    if isinstance(command, CHECKOUTS):
        return _checkout(cart, command, context, rules, late=late)
    outcome = decide(cart, command, context, rules)
    if isinstance(outcome, Rejected):
        return Step(cart, (Reply(command, outcome, late),))
    stock_effects: tuple[Any, ...] = ()
    new_cart = outcome.cart
    # A line that holds units (with reservation at add-to-cart off: from a
    # checkout that was refused) keeps its reservation in step with it.
    if rules.reserving or any(line.is_reserved for line in cart.lines):
        pending, stock_effects, new_cart = _stock_step(cart, outcome, command, context, rules)
        if pending is not None:
            return Step(new_cart, stock_effects)
    if isinstance(command, CHANGES) and (new_cart is not outcome.cart or outcome.data is None or command.include_cart):
        # Answered now (not after a stock step), the stock step changed the line
        # (a shrunk reservation), or the whole cart was asked for: answer with the line as it is now.
        outcome = _with_cart_view(replace(outcome, cart=new_cart), command, context)
    elif new_cart is not outcome.cart:
        outcome = replace(outcome, cart=new_cart)
    return Step(new_cart, (Reply(command, outcome, late), *stock_effects))


def decide(cart: Cart, command: Any, context: Context, rules: Rules) -> Outcome:
    """The cart rules applied to a command that needs no stock step to be decided."""
    now, catalog, stock = context.now, context.products, context.stock
    match command:
        case cart_contract.AddItem():
            line = cart.line_for(command.product_id, command.size)
            return add_item(
                cart,
                catalog.get(command.product_id),
                product_id=command.product_id,
                quantity=command.quantity,
                size=command.size,
                properties=command.properties,
                new_item_id=new_item_id(command.message_id),
                now=now,
                limits=rules.limits,
                available=_units_for(line, command.product_id, command.size, context, rules),
                catalog=catalog,
                stock=stock,
                view=not rules.reserving,  # an add that reserves is answered once the stock worker did
            )
        case cart_contract.UpdateItemQuantity():
            line = cart.line(command.item_id)
            return update_item_quantity(
                cart,
                item_id=command.item_id,
                quantity=command.quantity,
                now=now,
                max_quantity=rules.limits.max_quantity,
                catalog=catalog,
                available=_units_for(line, line.product_id, line.size, context, rules) if line else None,
                stock=stock,
                view=not rules.reserving,
            )
        case cart_contract.RemoveItem():
            return remove_item(cart, item_id=command.item_id, now=now, catalog=catalog, stock=stock)
        case cart_contract.ClearCart():
            return clear_cart(cart, now=now)
        case cart_contract.GetCart():
            return Accepted(cart, (), cart_summary(cart, catalog, stock, now=now))
        case cart_contract.ListProducts():
            listed = [catalog[pid] for pid in context.pages.get(command.message_id, ()) if pid in catalog]
            return Accepted(cart, (), product_page(listed, stock, command.limit))
        case cart_contract.GetCartCount():
            return Accepted(cart, (), cart_count(cart, catalog, stock))
        case cart_contract.CheckChanges():
            return check_changes(cart, catalog, now=now, stock=stock)
        case cart_contract.AcceptChanges():
            return accept_changes(cart, catalog, item_ids=command.item_ids, now=now, stock=stock)
        case cart_contract.ValidateCart():
            return validate_cart(cart, catalog, item_ids=command.item_ids, stock=stock)
    raise TypeError(f"no cart rule for {type(command).__name__}")


def _units_for(line: CartLine | None, product_id: str, size: str | None, context: Context, rules: Rules) -> int | None:
    """Units a line may grow to by the stock read model, when no stock worker
    decides at once (reservation at add-to-cart off); None where unknown."""
    if rules.reserving:
        return None
    if line is not None:
        return units_available(line, context.stock)
    return context.stock.get(stock_key(product_id, size))


def _with_cart_view(outcome: Accepted, command: Any, context: Context) -> Accepted:
    """The answer to an add or a quantity change, judged against the catalog and stock now."""
    item_id = outcome.item_id or ""
    if outcome.cart.line(item_id) is None:
        return outcome
    view = added_view if isinstance(command, cart_contract.AddItem) else updated_view
    # Steps still in flight belong to later commands: the reply shows the cart without them.
    data = view(
        before_steps(outcome.cart), item_id, context.products, context.stock, now=context.now,
        include_cart=command.include_cart,
    )
    return replace(outcome, data=data)


# --- starting a stock step ---------------------------------------------------------------------


def _stock_step(
    before: Cart, outcome: Accepted, command: Any, context: Context, rules: Rules
) -> tuple[PendingStock | None, tuple[Any, ...], Cart]:
    """What the stock worker must do for this change, and whether the answer waits for it."""
    now, cause, after = context.now, Cause.of(command), outcome.cart
    if isinstance(command, cart_contract.RemoveItem | cart_contract.ClearCart):
        gone = [line for line in before.lines if after.line(line.item_id) is None]
        releases = tuple(
            Release(cause, command.user_id, line.item_id, line.reservation_id, line.product_id, "removed_from_cart")
            for line in gone
            if line.is_reserved and line.reservation_id
        )
        return None, releases, after
    if not isinstance(command, CHANGES) or not outcome.events:
        return None, (), after
    item_id = outcome.item_id or ""
    previous, line = before.line(item_id), after.line(item_id)
    if not rules.reserving and (previous is None or not previous.is_reserved):
        return None, (), after  # reserved at checkout, not now
    assert line is not None
    expires_at = now + rules.reservation_ttl
    effect: Reserve | Adjust
    if previous is not None and previous.is_reserved and previous.reservation_id:
        effect = Adjust(
            cause, command.user_id, item_id, previous.reservation_id, line.product_id,
            line.quantity, previous.reserved_quantity, expires_at,
        )
        if line.quantity <= previous.reserved_quantity:
            # Shrinking cannot fail: confirm now, let the stock worker catch up.
            return None, (effect,), after.with_line(replace(line, reserved_quantity=line.quantity), now)
    else:
        effect = _reserve(command, line, reservation_id_for(command.message_id, item_id), expires_at)
    pending = _pending(command, item_id, effect, previous, now + rules.answer_timeout)
    return pending, (effect,), await_stock(after, pending, now=now)


def _reserve(command: Any, line: CartLine, reservation_id: str, expires_at: datetime) -> Reserve:
    return Reserve(
        Cause.of(command), command.user_id, line.item_id, reservation_id, line.product_id, line.size,
        line.quantity, expires_at,
    )


def _pending(command: Any, item_id: str, effect: Reserve | Adjust, previous: CartLine | None, deadline: datetime) -> PendingStock:
    kind = "ReserveStock" if isinstance(effect, Reserve) else "AdjustReservation"
    return PendingStock(
        command=command,
        item_id=item_id,
        reservation_id=effect.reservation_id,
        operation="reserve" if isinstance(effect, Reserve) else "adjust",
        previous=previous,
        deadline=deadline,
        stock_command_id=stock_command_id(command.message_id, kind, effect.reservation_id),
    )


def _start_alongside(cart: Cart, command: Any, context: Context, rules: Rules) -> Step | None:
    """Start ``command``'s own stock step while others are in flight, when it
    is an add or an increase of a line none of them is about; None when it
    must wait for them instead."""
    if not (rules.reserving and isinstance(command, CHANGES)):
        return None
    if cart.handover is not None:
        return None  # lines are being handed over: everything waits for that answer
    if len(cart.steps) >= MAX_STEPS_IN_FLIGHT or any(isinstance(step.command, CHECKOUTS) for step in cart.steps):
        return None
    outcome = decide(cart, command, context, rules)
    if not isinstance(outcome, Accepted) or not outcome.events or cart.in_flight(outcome.item_id or ""):
        return None
    pending, effects, new_cart = _stock_step(cart, outcome, command, context, rules)
    if pending is None:
        return None  # answered at once: it would overtake the replies still to come
    return Step(new_cart, effects)


# --- the stock worker's answer, or its absence -------------------------------------------------


def on_stock_answer(cart: Cart, event: Any, context: Context, rules: Rules) -> Step:
    """A stock event about one of the cart's lines."""
    if isinstance(event, stock_contract.StockReleased):
        return Step(cart if event.no_op else mark_released(cart, event.reservation_id, now=context.now))
    index = next(
        (n for n, step in enumerate(cart.steps) if step.is_answered_by(event.causation_id, event.reservation_id)),
        None,
    )
    if index is None:
        # Not the answer to a step in flight: a late one (the timeout already
        # compensated for it) or one to an earlier command on the same reservation.
        return Step(cart)
    if index > 0:
        # An earlier step is still in flight: this answer waits its turn, so
        # that the replies leave in the order the commands came.
        if cart.steps[index].answer is None:
            cart = hold_answer(cart, index, _to_hold(cart, index, event))
        return Step(cart)
    first = _take_first(cart, event, context, rules)
    return first.then(_drain(first.cart, context, rules))


def on_overdue(cart: Cart, overdue: StockAnswerOverdue, context: Context, rules: Rules) -> Step:
    """A step's answer did not come in time."""
    index = next((n for n, step in enumerate(cart.steps) if StockAnswerOverdue.of(cart.user_id, step) == overdue), None)
    if index is None or cart.steps[index].answer is not None:
        return Step(cart)  # answered (or answered already, waiting its turn)
    if index > 0:
        return Step(hold_answer(cart, index, overdue))
    first = _time_out_first(cart, overdue, context, rules)
    return first.then(_drain(first.cart, context, rules))


def _to_hold(cart: Cart, index: int, event: Any) -> Any:
    """What the cart keeps of an answer that waits its turn: the event, or, when
    it is larger than any the stock worker sends (a long free-text field),
    the step's timeout, which undoes whatever the stock worker did for it."""
    if len(event.model_dump_json().encode()) <= MAX_HELD_ANSWER_BYTES:
        return event
    return StockAnswerOverdue.of(cart.user_id, cart.steps[index])


def _take_first(cart: Cart, event: Any, context: Context, rules: Rules) -> Step:
    """Resolve the cart's first step with ``event``, its answer (or its timeout)."""
    if isinstance(event, StockAnswerOverdue):
        return _time_out_first(cart, event, context, rules)
    now = context.now
    pending = cart.pending
    assert pending is not None
    command = pending.command
    if isinstance(command, Unreadable):
        return _time_out_first(cart, StockAnswerOverdue.of(cart.user_id, pending), context, rules)
    if isinstance(event, stock_contract.StockReserved | stock_contract.ReservationAdjusted):
        confirmed = confirm_stock(cart, event.quantity, now=now)
        confirmed, given_back = _release_if_deleted(confirmed, command, pending, context)
        if isinstance(command, CHECKOUTS):
            # Only checkouts run while nothing else is in flight: resume it
            # after the line just reserved.
            resumed = _checkout(confirmed, command, context, rules, late=True, reserved=pending.item_id)
            return Step(resumed.cart, (*resumed.effects, *given_back))
        change = Accepted(confirmed, _events_of(command, pending, confirmed), None, pending.item_id)
        return Step(confirmed, (Reply(command, _with_cart_view(change, command, context), late=True), *given_back))
    if isinstance(event, stock_contract.StockReservationRejected):
        rejection = insufficient_stock(pending, command.type, event.requested, event.available)
        if isinstance(command, CHECKOUTS):
            rejection = replace(
                rejection,
                code=ErrorCode.CHECKOUT_VALIDATION_FAILED,
                message=ERROR_MESSAGES[ErrorCode.CHECKOUT_VALIDATION_FAILED],
                data=refused_at_checkout(
                    cart, context.products, pending.item_id, event.requested, event.available, rejection.message
                ),
            )
        return Step(roll_back_stock(cart, now=now), (Reply(command, rejection, late=True),))
    if (
        isinstance(event, stock_contract.StockCommandRejected)
        and event.error_code == ErrorCode.RESERVATION_NOT_ACTIVE
        and pending.operation == "adjust"
    ):
        # The line's reservation lapsed while the change was on its way:
        # ask for the whole quantity afresh, once.
        line = cart.line(pending.item_id)
        assert line is not None
        reserve = _reserve(
            command, line, reservation_id_for(command.message_id, pending.item_id, ".retry"), now + rules.reservation_ttl
        )
        # The lapsed reservation holds nothing: a refusal leaves the line without one.
        previous = unreserved(pending.previous) if pending.previous else None
        retry = _pending(command, pending.item_id, reserve, previous, now + rules.answer_timeout)
        return Step(retry_first(cart, retry, now=now), (reserve,))
    # Any other answer (a command refused for another reason, or an event that
    # answers nothing a cart asks): refused as a timeout would be, and whatever
    # the stock worker may have done for the step is undone.
    return _time_out_first(cart, StockAnswerOverdue.of(cart.user_id, pending), context, rules)


def _release_if_deleted(cart: Cart, command: Any, pending: PendingStock, context: Context) -> tuple[Cart, tuple[Release, ...]]:
    """The product was deleted while the step was in flight (its units were not
    released then, the line held none yet): give them back now."""
    line = cart.line(pending.item_id)
    product = context.products.get(line.product_id) if line else None
    if line is None or product is None or not product.is_deleted or not line.reservation_id:
        return cart, ()
    release = Release(
        Cause(f"{command.message_id}:product_deleted", Cause.of(command).correlation_id),
        command.user_id, line.item_id, line.reservation_id, line.product_id, "product_deleted",
    )
    return mark_released(cart, line.reservation_id, now=context.now), (release,)


def _time_out_first(cart: Cart, overdue: StockAnswerOverdue, context: Context, rules: Rules) -> Step:
    """The first step's answer did not come in time: refuse its command and undo
    whatever the stock worker may still do for it, with the step's compensation."""
    pending = cart.pending
    assert pending is not None
    command = pending.command
    compensation = _effect_of(cart, pending).undo(Cause(overdue.dedup_key, Cause.of(command).correlation_id))
    rolled_back = roll_back_stock(cart, now=context.now)
    if isinstance(command, Unreadable):
        log.error("the command of step %s no longer reads; the step is undone", pending.reservation_id)
        code = ErrorCode.RESERVATION_FAILED
        return Step(rolled_back, (ReplyUnreadable(command.stored, code, ERROR_MESSAGES[code]), compensation))
    return Step(rolled_back, (Reply(command, reservation_timed_out(pending), late=True), compensation))


def _effect_of(cart: Cart, pending: PendingStock) -> Reserve | Adjust:
    """The stock effect a step waits on, as far as its compensation needs it."""
    line = cart.line(pending.item_id)
    previous = pending.previous
    product_id = line.product_id if line else (previous.product_id if previous else "")
    cause = Cause.of(pending.command)
    if pending.operation == "adjust" and previous is not None and previous.reserved_quantity:
        quantity = line.quantity if line else previous.reserved_quantity
        return Adjust(
            cause, cart.user_id, pending.item_id, pending.reservation_id, product_id, quantity, previous.reserved_quantity
        )
    size = line.size if line else (previous.size if previous else None)
    quantity = line.quantity if line else 0
    return Reserve(
        cause, cart.user_id, pending.item_id, pending.reservation_id, product_id, size, quantity, pending.deadline
    )


def _events_of(command: Any, pending: PendingStock, cart: Cart) -> tuple[DomainEvent, ...]:
    """The cart events of a change confirmed by the stock worker."""
    line = cart.line(pending.item_id)
    if line is None:
        return ()
    previous = pending.previous
    if isinstance(command, cart_contract.AddItem):
        added = line.quantity - (previous.quantity if previous else 0)
        return (
            ItemAdded(
                cart.user_id, line.item_id, line.product_id, line.size, added, line.quantity, line.unit_price,
                line.product_name,
            ),
        )
    return (
        ItemQuantityChanged(
            cart.user_id, line.item_id, line.product_id, line.size, previous.quantity if previous else 0, line.quantity
        ),
    )


def _take_held(cart: Cart, first: PendingStock, context: Context, rules: Rules) -> Step:
    """Resolve the first step with the answer it held. Should that fail (a bug,
    or what an earlier release stored), the step times out instead: the cart
    moves on rather than failing every answer that comes after."""
    try:
        step = _take_first(cart, first.answer, context, rules)
        rules.check_effects(step.effects)
    except Exception:
        log.exception("taking the held answer of step %s failed; it times out instead", first.reservation_id)
        try:
            return _time_out_first(cart, StockAnswerOverdue.of(cart.user_id, first), context, rules)
        except Exception:
            # Not even that: the step is dropped, its line as before it, so that
            # the cart goes on; its reservation, if any was made, lapses in time.
            log.critical("timing out step %s failed too; dropped", first.reservation_id, exc_info=True)
            return Step(roll_back_stock(cart, now=context.now))
    if first.released_since:
        return Step(mark_released(step.cart, first.reservation_id, now=context.now), step.effects)
    return step


def _drain(cart: Cart, context: Context, rules: Rules) -> Step:
    """After a step was resolved: resolve the next ones whose answers already
    came, then run the commands that waited, until one waits again."""
    step = Step(cart)
    while True:
        cart = step.cart
        first = cart.pending
        if first is not None and first.answer is not None:
            step = step.then(_take_held(cart, first, context, rules))
            continue
        if not cart.queue:
            return step
        command, rest = cart.queue[0], replace(cart, queue=cart.queue[1:])
        if isinstance(command, Unreadable):
            # Queued by an earlier release whose commands this one no longer
            # reads: answered as not carried out, so the cart does not wait on it forever.
            log.error("a command queued in the cart of %s no longer reads; dropped: %.500r", cart.user_id, command.stored)
            unreadable = ReplyUnreadable(command.stored, ErrorCode.INTERNAL_ERROR, "The command could not be carried out")
            step = step.then(Step(rest, (unreadable,)))
            continue
        if first is None and cart.handover is not None:
            return step  # they wait for the checkout worker's answer
        if first is None:
            step = step.then(on_command(rest, command, context, rules, late=True))
            continue
        started = _start_alongside(rest, command, context, rules)
        if started is None:
            return step
        step = step.then(started)


# --- checking out -------------------------------------------------------------------------------


def _checkout(cart: Cart, command: Any, context: Context, rules: Rules, *, late: bool, reserved: str | None = None) -> Step:
    """Validate, make sure every line holds its stock, then hand the lines over
    to the checkout worker, which answers the buyer once the orders exist."""
    now = context.now
    item_ids = [command.item_id] if isinstance(command, cart_contract.CheckoutItem) else None
    validation = validate_cart(cart, context.products, item_ids=item_ids, stock=context.stock)
    if isinstance(validation, Rejected):
        return Step(cart, (Reply(command, validation, late),))
    assert validation.data is not None
    if not validation.data["is_valid"]:
        rejection = Rejected(
            ErrorCode.CHECKOUT_VALIDATION_FAILED,
            ERROR_MESSAGES[ErrorCode.CHECKOUT_VALIDATION_FAILED],
            "See validation_details: accept the changes or remove the unavailable items, then check out again",
            data=validation.data,
        )
        return Step(cart, (Reply(command, rejection, late),))
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
            reservation_id = reservation_id_for(command.message_id, f"{line.item_id}@{cart.version}")
            reserve = _reserve(command, line, reservation_id, now + rules.reservation_ttl)
            pending = _pending(command, line.item_id, reserve, line, now + rules.answer_timeout)
            return Step(await_stock(cart, pending, now=now), (reserve,))

    handed = tuple(
        HandedLine(
            order_id=order_id_for(command.message_id, line.item_id),
            item_id=line.item_id,
            product_id=line.product_id,
            product_name=line.product_name,
            size=line.size,
            quantity=line.quantity,
            # The live price: a validated line's price has not changed, or the change was accepted.
            unit_price=live_price(line, context.products.get(line.product_id)),
            total_price=live_total(line, context.products.get(line.product_id)),
            reservation_id=line.reservation_id,
        )
        for line in lines
    )
    handover = HandOver(
        command=command,
        payment_id=payment_id_for(command.message_id),
        checkout_type="single_item" if item_ids else "full_cart",
        lines=handed,
        total=sum((line.total_price for line in handed), Decimal(0)),
        gateway_name=command.gateway_name or rules.default_gateway,
        occurred_at=context.now,
        late=late,
    )
    if (refusal := rules.handover_refusal(handover)) is not None:
        # The checkout worker could not take it: refused here, before anything moved.
        return Step(cart, (Reply(command, refusal, late),))
    # The lines stay the buyer's until the checkout worker accepts them
    # (``checkout.handovers``); the buyer's later commands wait meanwhile.
    kept = Handover(
        payment_id=handover.payment_id,
        start_message_id=start_checkout_id(command.message_id, handover.payment_id),
        command=command,
        item_ids=tuple(line.item_id for line in lines),
        checkout_type=handover.checkout_type,
        handed_at=now,
    )
    return Step(hand_over(cart, kept), (handover,))


def on_product_deleted(cart: Cart, product_id: str, cause: Cause, now: datetime) -> Step:
    """A product no longer sold: the cart's lines of it give back the units they
    hold, whether reserved at add-to-cart or by a checkout that did not go
    through (one release per line, each with a cause of its own)."""
    given_up, lines = give_up_product(cart, product_id, now=now)
    return Step(
        given_up,
        tuple(
            Release(
                Cause(f"{cause.message_id}:{cart.user_id}:{line.item_id}", cause.correlation_id),
                cart.user_id, line.item_id, line.reservation_id or "", line.product_id, "product_deleted",
            )
            for line in lines
        ),
    )


def on_handover_answer(cart: Cart, answer: Any, context: Context, rules: Rules) -> Step:
    """The checkout worker's answer to a hand-over: accepted, the lines are
    gone from the cart; refused, they stay as they were and the buyer's
    checkout is answered with the refusal. The commands that waited run next."""
    accepted = isinstance(answer, CheckoutAccepted)
    answered = handover_answered(cart, answer.payment_id, answer.causation_id, accepted=accepted, now=context.now)
    if answered is None:
        # Not the answer this cart waits for (a repeat, a late or a forged one): nothing changes.
        return Step(cart).then(_drain(cart, context, rules))
    cart, handover = answered
    command = handover.command
    if accepted:
        checked_out = CartCheckedOut(answer.user_id, handover.payment_id, handover.checkout_type, list(handover.item_ids))
        cause = Cause(answer.message_id, answer.correlation_id)
        effects: tuple[Any, ...] = (Announce(cause, (checked_out,), derived_from=handover.start_message_id),)
    elif isinstance(command, Unreadable):
        code = ErrorCode.CHECKOUT_NOT_AVAILABLE
        effects = (ReplyUnreadable(command.stored, code, ERROR_MESSAGES.get(code, CHECKOUT_NOT_STARTED)),)
    else:
        code = ErrorCode(answer.error_code) if answer.error_code in ErrorCode.__members__ else ErrorCode.CHECKOUT_NOT_AVAILABLE
        rejection = Rejected(
            code,
            # Not every code has words of the original app's: a refusal without a message gets these.
            f"{CHECKOUT_NOT_STARTED}: {answer.message}"[:500] if answer.message else ERROR_MESSAGES.get(code, CHECKOUT_NOT_STARTED),
            "Your cart is as it was; check the details and check out again",
        )
        effects = (Reply(command, rejection, late=True),)
    return Step(cart, effects).then(_drain(cart, context, rules))
