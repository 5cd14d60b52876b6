"""The cart's stock saga as the pure domain decides it: each message becomes a
``Step`` (the cart after it and the effects it asks for), every stock effect
carries its compensation, and a step whose answer does not come in time is
refused and undone by that compensation. No worker, no I/O, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from contracts.errors import ErrorCode
from services.cart_worker.domain import Cart, CartLimits, Product, StockAnswerOverdue, saga
from services.cart_worker.domain.effects import Adjust, Release, Reply, Reserve
from services.cart_worker.domain.events import ItemAdded
from services.cart_worker.domain.outcomes import Accepted, Rejected

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CAP = Product("cap", "Cap", Decimal("10.00"))


def rules(*, reserving: bool = True) -> saga.Rules:
    return saga.Rules(
        reserving=reserving,
        reservation_ttl=timedelta(minutes=30),
        answer_timeout=timedelta(seconds=10),
        limits=CartLimits(max_quantity=10, max_lines=50, max_property_keys=10, max_property_bytes=1024),
        default_gateway="gw",
    )


def context(now: datetime = NOW) -> saga.Context:
    return saga.Context(now, {"cap": CAP}, {"cap|": 5}, {})


def add(quantity: int = 2, message_id: str = "add-1") -> cart_contract.AddItem:
    return cart_contract.AddItem(message_id=message_id, occurred_at=NOW, user_id="ada", product_id="cap", quantity=quantity)


def answer_to(cart: Cart, reserve: Reserve, quantity: int) -> stock_contract.StockReserved:
    """The stock worker's confirmation of the cart's first step."""
    return stock_contract.StockReserved(
        message_id="answer-1", occurred_at=NOW, causation_id=cart.pending.stock_command_id,
        reservation_id=reserve.reservation_id, product_id="cap", holder=f"cart:ada:{reserve.item_id}",
        quantity=quantity, available_after=5 - quantity,
    )


def only(effects, kind):
    found = [effect for effect in effects if isinstance(effect, kind)]
    assert len(found) == 1, effects
    return found[0]


def test_an_add_with_reservation_on_asks_for_a_reservation_and_answers_nothing_yet():
    step = saga.on_command(Cart("ada"), add(), context(), rules())

    reserve = only(step.effects, Reserve)
    assert (reserve.product_id, reserve.quantity) == ("cap", 2)
    assert not [effect for effect in step.effects if isinstance(effect, Reply)], "confirmed only once stock answered"
    assert step.cart.pending is not None and step.cart.pending.command == add()


def test_a_reservation_is_compensated_by_releasing_that_very_reservation():
    reserve = only(saga.on_command(Cart("ada"), add(), context(), rules()).effects, Reserve)

    undo = reserve.undo(reserve.cause)

    assert isinstance(undo, Release)
    assert (undo.reservation_id, undo.user_id, undo.item_id) == (reserve.reservation_id, "ada", reserve.item_id)


def test_the_stock_workers_answer_confirms_the_add_with_the_line_and_its_event():
    started = saga.on_command(Cart("ada"), add(), context(), rules())
    reserve = only(started.effects, Reserve)

    step = saga.on_stock_answer(started.cart, answer_to(started.cart, reserve, 2), context(), rules())

    reply = only(step.effects, Reply)
    assert isinstance(reply.outcome, Accepted) and reply.command == add()
    assert [type(event) for event in step.events] == [ItemAdded]
    assert step.cart.pending is None
    assert [(line.product_id, line.quantity, line.reserved_quantity) for line in step.cart.lines] == [("cap", 2, 2)]


def test_an_answer_that_does_not_come_in_time_refuses_the_add_and_undoes_the_reservation():
    started = saga.on_command(Cart("ada"), add(), context(), rules())
    reserve = only(started.effects, Reserve)
    overdue = StockAnswerOverdue.of("ada", started.cart.pending)

    step = saga.on_overdue(started.cart, overdue, context(NOW + timedelta(seconds=11)), rules())

    reply = only(step.effects, Reply)
    assert isinstance(reply.outcome, Rejected) and reply.outcome.code == ErrorCode.RESERVATION_FAILED
    release = only(step.effects, Release)
    assert release.reservation_id == reserve.reservation_id
    assert step.cart.lines == () and step.cart.pending is None


def test_a_late_answer_after_the_timeout_changes_nothing():
    started = saga.on_command(Cart("ada"), add(), context(), rules())
    reserve = only(started.effects, Reserve)
    timed_out = saga.on_overdue(started.cart, StockAnswerOverdue.of("ada", started.cart.pending), context(), rules())

    late = saga.on_stock_answer(timed_out.cart, answer_to(started.cart, reserve, 2), context(), rules())

    assert late.cart == timed_out.cart and late.effects == ()


def test_an_increase_of_a_reserved_line_adjusts_it_and_is_compensated_back_to_what_it_held():
    started = saga.on_command(Cart("ada"), add(2), context(), rules())
    held = saga.on_stock_answer(started.cart, answer_to(started.cart, only(started.effects, Reserve), 2), context(), rules()).cart
    item_id = held.lines[0].item_id
    more = cart_contract.UpdateItemQuantity(message_id="more-1", occurred_at=NOW, user_id="ada", item_id=item_id, quantity=4)

    adjust = only(saga.on_command(held, more, context(), rules()).effects, Adjust)

    assert (adjust.quantity, adjust.held) == (4, 2)
    undo = adjust.undo(adjust.cause)
    assert isinstance(undo, Adjust) and undo.quantity == 2, "back to the units it held before"


def test_with_reservation_off_an_add_is_answered_at_once_and_asks_nothing_of_stock():
    step = saga.on_command(Cart("ada"), add(), context(), rules(reserving=False))

    reply = only(step.effects, Reply)
    assert isinstance(reply.outcome, Accepted)
    assert not [effect for effect in step.effects if isinstance(effect, Reserve | Adjust | Release)]
    assert [type(event) for event in step.events] == [ItemAdded]


def test_an_answer_delivered_twice_confirms_once_and_its_repeat_changes_nothing():
    started = saga.on_command(Cart("ada"), add(), context(), rules())
    answer = answer_to(started.cart, only(started.effects, Reserve), 2)
    confirmed = saga.on_stock_answer(started.cart, answer, context(), rules())

    repeat = saga.on_stock_answer(confirmed.cart, answer, context(), rules())

    assert repeat.cart == confirmed.cart and repeat.effects == ()
