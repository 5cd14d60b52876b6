"""Every command's reply ``data`` has a model in ``contracts.replies``: real
replies, produced by the workers' ``handle`` in memory, fit their model and
carry no field the model does not document; each documented example fits too."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from contracts.checkout import CheckoutLine, GetCheckout, GetPayment, StartCheckout
from contracts.replies import REJECTION_DATA, REPLY_DATA
from contracts.reply_examples import REPLY_EXAMPLES
from services.cart_worker.domain import Product, SizeOption
from services.cart_worker.handlers import CartLogic
from services.cart_worker.unit import CartUnit
from services.checkout_worker.handlers import CheckoutLogic, CheckoutUnit
from services.runtime.clock import ManualClock
from services.runtime.settings import Settings

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SHOE = Product("shoe", "Trail shoe", Decimal("74.99"), "https://img/shoe.png")
SHIRT = Product("shirt", "Linen shirt", Decimal("30.00"), sizes=(SizeOption("M", Decimal("30.00")),))


def undocumented(data: Any, instance: Any, path: str = "data") -> list[str]:
    """Fields of ``data`` that the validated model ``instance`` does not document."""
    if isinstance(instance, BaseModel):
        assert isinstance(data, dict), path
        missing = [f"{path}.{key}" for key in data if key not in type(instance).model_fields]
        for key in type(instance).model_fields:
            if key in data:
                missing += undocumented(data[key], getattr(instance, key), f"{path}.{key}")
        return missing
    if isinstance(instance, list):
        return [m for i, (d, v) in enumerate(zip(data, instance, strict=True)) for m in undocumented(d, v, f"{path}[{i}]")]
    return []


def assert_typed(reply: dict) -> None:
    kind = reply["command_type"]
    model = REPLY_DATA[kind] if reply["success"] else REJECTION_DATA.get(reply["error_code"])
    if model is None:
        assert reply.get("data") is None, reply
        return
    instance = model.model_validate(reply["data"])
    assert undocumented(reply["data"], instance) == [], kind


def replies(outputs) -> list[dict]:
    return [json.loads(o.value) for o in outputs if o.is_reply and b'"CommandResult"' in o.value]


def command(kind: str, message_id: str, **fields: Any):
    return cart_contract.cart_command_adapter.validate_python(
        {"type": kind, "message_id": message_id, "occurred_at": NOW.isoformat(), "user_id": "ada", **fields}
    )


def test_the_reply_of_every_cart_command_fits_its_model():
    logic, unit = CartLogic(Settings(cart_stock_reservation_enabled=False), ManualClock(NOW)), CartUnit()
    unit.put_product(SHOE)
    unit.put_product(SHIRT)
    unit.stock.update({"shoe|": 10, "shirt|M": 1})
    seen: list[dict] = []

    def run(kind: str, message_id: str, **fields: Any) -> dict:
        (reply,) = replies(logic.handle(unit, command(kind, message_id, **fields)))
        seen.append(reply)
        return reply

    item = run("AddItem", "a1", product_id="shoe", quantity=2)["cart_item_id"]
    run("AddItem", "a2", product_id="shirt", size="M", quantity=1)
    run("UpdateItemQuantity", "u1", item_id=item, quantity=3)
    run("GetCart", "g1")
    run("GetCartCount", "n1")
    run("ListProducts", "l1", limit=1)
    unit.put_product(Product("shoe", "Trail shoe", Decimal("69.99")))
    run("CheckChanges", "c1")
    run("ValidateCart", "v1")
    refused = run("CheckoutCart", "k1")
    run("AcceptChanges", "x1")
    run("RemoveItem", "r1", item_id=item)
    run("ClearCart", "z1")

    assert refused["error_code"] == "CHECKOUT_VALIDATION_FAILED"
    for reply in seen:
        assert_typed(reply)
    assert {reply["command_type"] for reply in seen} | {"CheckoutItem", "GetCheckout", "GetPayment"} == set(REPLY_DATA)


@pytest.mark.parametrize("reserving", [False, True])
def test_add_and_update_answer_the_line_and_summary_and_the_whole_cart_only_when_asked(reserving):
    logic, unit = CartLogic(Settings(cart_stock_reservation_enabled=reserving), ManualClock(NOW)), CartUnit()
    unit.put_product(SHOE)
    unit.stock.update({"shoe|": 10})

    def answer(kind: str, message_id: str, **fields: Any) -> dict:
        outputs = logic.handle(unit, command(kind, message_id, **fields))
        for asked in [json.loads(o.value) for o in outputs if o.topic == "stock.commands"]:
            # The stock worker says yes (only an add or a growth waits for it).
            answer = {
                "message_id": f"s-{message_id}", "occurred_at": NOW.isoformat(), "causation_id": asked["message_id"],
                "reservation_id": asked["reservation_id"], "product_id": "shoe", "holder": asked["holder"],
                "quantity": asked["quantity"], "available_after": 5,
            }
            if asked["type"] == "ReserveStock":
                outputs = logic.handle(unit, stock_contract.StockReserved(**answer))
            elif asked["type"] == "AdjustReservation" and asked["quantity"] == 3:
                outputs = logic.handle(unit, stock_contract.ReservationAdjusted(**answer, old_quantity=2))
        (reply,) = replies(outputs)
        assert_typed(reply)
        return reply["data"]

    lean = answer("AddItem", "a1", product_id="shoe", quantity=2)
    full = answer("AddItem", "a2", product_id="shoe", quantity=1, include_cart=True)
    updated = answer("UpdateItemQuantity", "u1", item_id=lean["cart_item_id"], quantity=2, include_cart="true")

    assert "cart" not in lean and lean["cart_summary"] == {"total_items": 2, "total_price": "149.98"}
    assert full["cart"]["total_items"] == 3 and full["cart"]["items"][0]["quantity"] == 3
    assert updated["cart"]["total_items"] == 2 and updated["cart_summary"]["total_items"] == 2


def test_the_replies_of_the_checkout_worker_fit_their_models():
    clock = ManualClock(NOW)
    logic, unit = CheckoutLogic(Settings(), clock), CheckoutUnit()
    line = CheckoutLine(
        order_id="o1", item_id="i1", product_id="shoe", product_name="Trail shoe", quantity=2,
        unit_price=Decimal("74.99"), total_price=Decimal("149.98"), reservation_id="r1",
    )
    start = StartCheckout(
        message_id="s1", occurred_at=NOW, payment_id="pay-1", payment_hash="h", user_id="ada", checkout_type="single_item",
        lines=[line], total_amount=Decimal("149.98"), payment_method="credit_card", gateway_name="stripe",
        shipping_address="1 Main St", command_type="CheckoutItem", command_message_id="k1",
    )
    (started,) = replies(logic.handle(unit, start))
    clock.advance(60)
    (status,) = replies(logic.handle(unit, GetCheckout(message_id="q1", occurred_at=NOW, user_id="ada", payment_id="pay-1")))
    (stranger,) = replies(logic.handle(unit, GetCheckout(message_id="q2", occurred_at=NOW, user_id="eve", payment_id="pay-1")))
    (payment,) = replies(logic.handle(unit, GetPayment(message_id="q3", occurred_at=NOW, payment_id="pay-1")))
    (unknown,) = replies(logic.handle(unit, GetPayment(message_id="q4", occurred_at=NOW, payment_id="pay-2")))

    assert_typed(started)
    assert_typed(status)
    assert_typed(payment)
    assert status["data"]["time_remaining_seconds"] == 14 * 60 and status["data"]["order_count"] == 1
    assert (stranger["success"], stranger["error_code"], stranger.get("data")) == (False, "CHECKOUT_NOT_FOUND", None)
    assert payment["data"] == {"payment_id": "pay-1", "state": "awaiting_payment", "total_amount": "149.98",
                               "payment_expires_at": (NOW + timedelta(minutes=15)).isoformat()}
    assert "user_id" not in payment, "the payment webhook learns no user"
    assert (unknown["success"], unknown["error_code"]) == (False, "CHECKOUT_NOT_FOUND")


@pytest.mark.parametrize("kind", sorted(REPLY_EXAMPLES))
def test_each_documented_reply_example_fits_its_model(kind):
    example = REPLY_EXAMPLES[kind]

    assert undocumented(example, REPLY_DATA[kind].model_validate(example)) == []
