"""The cart matches every stock answer to the command that caused it, not to the
reservation it is about: two commands about one reservation can be in flight.
The cart worker's ``handle`` runs in memory with a manual clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from services.cart_worker.domain import RESERVED, Cart, CartLine, Product
from services.cart_worker.handlers import CartLogic
from services.cart_worker.unit import CartUnit
from services.runtime.clock import ManualClock
from services.runtime.records import Incoming
from services.runtime.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SHOE = Product("shoe", "Trail shoe", Decimal("74.99"))


def shop_with_a_reserved_line(quantity: int) -> tuple[CartLogic, CartUnit]:
    line = CartLine(
        item_id="item-1", product_id="shoe", size=None, quantity=quantity, product_name=SHOE.name,
        unit_price=SHOE.price, image_url=None, added_at=NOW, updated_at=NOW, reservation_id="R",
        reserved_quantity=quantity, reservation_state=RESERVED,
    )
    unit = CartUnit(carts={"ada": Cart("ada", (line,), 1, NOW)}, products={"shoe": SHOE})
    return CartLogic(Settings(), ManualClock(NOW)), unit


def update(quantity: int, message_id: str) -> cart_contract.UpdateItemQuantity:
    return cart_contract.UpdateItemQuantity(
        message_id=message_id, occurred_at=NOW, user_id="ada", item_id="item-1", quantity=quantity
    )


def sent(outputs, kind: str) -> list[dict]:
    return [body for output in outputs if (body := json.loads(output.value)).get("type") == kind]


def test_the_answer_to_a_decrease_does_not_confirm_a_later_increase_of_the_same_line():
    logic, unit = shop_with_a_reserved_line(5)
    decrease = logic.handle(unit, update(2, "decrease"))
    increase = logic.handle(unit, update(4, "increase"))
    (shrink,) = sent(decrease, "AdjustReservation")
    (grow,) = sent(increase, "AdjustReservation")

    answer_to_decrease = stock_contract.ReservationAdjusted(
        message_id="a1", occurred_at=NOW, causation_id=shrink["message_id"], reservation_id="R",
        product_id="shoe", holder="cart:ada:item-1", old_quantity=5, quantity=2, available_after=1,
    )
    early = logic.handle(unit, answer_to_decrease)
    refusal = stock_contract.StockReservationRejected(
        message_id="a2", occurred_at=NOW, causation_id=grow["message_id"], reservation_id="R", product_id="shoe",
        holder="cart:ada:item-1", operation="adjust", requested=4, available=3, error_code="INSUFFICIENT_STOCK",
    )
    answered = logic.handle(unit, refusal)

    assert sent(decrease, "CommandResult")[0]["success"], "a decrease is confirmed at once"
    assert sent(early, "CommandResult") == [], "the increase still waits for its own answer"
    (reply,) = sent(answered, "CommandResult")
    assert reply["command_message_id"] == "increase" and reply["error_code"] == "INSUFFICIENT_STOCK"
    line = unit.carts["ada"].lines[0]
    assert (line.quantity, line.reserved_quantity) == (2, 2), "the cart promises what the stock worker holds"


def test_the_cart_keeps_no_dedup_entry_for_answers_to_its_steps_but_does_for_other_stock_events():
    logic, _ = shop_with_a_reserved_line(1)

    def decoded(kind: str, **fields):
        body = {"message_id": f"m-{kind}", "type": kind, "occurred_at": "2026-11-26T12:00:00Z", **fields}
        return logic.decode(Incoming(logic.stock_events_topic, 0, 0, b"shoe", json.dumps(body).encode()))

    answer = decoded("StockReserved", causation_id="c-1", reservation_id="R", product_id="shoe",
                     holder="cart:ada:item-1", quantity=1, available_after=3)
    level = decoded("StockLevelChanged", product_id="shoe", on_hand=4, reserved=1, sold=0, available=3)

    assert answer.idempotent, "its repeat finds no step waiting and changes nothing"
    assert not level.idempotent
