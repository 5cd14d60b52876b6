"""The cart gives nothing up until the checkout worker has accepted the hand-over:
while it waits, the lines stay in the cart and the buyer's later commands wait;
accepted, the lines go; refused (or set aside by the checkout worker), the cart
and its stock stay as they were and the buyer's checkout gets the refusal. The
cart and checkout workers' ``handle`` run in memory with a manual clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from contracts import cart as cart_contract
from contracts.checkout import CheckoutAccepted, CheckoutRefused
from services.cart_worker.domain import Product
from services.cart_worker.handlers import CartLogic
from services.cart_worker.unit import CartUnit
from services.checkout_worker.handlers import CheckoutLogic, CheckoutUnit
from services.runtime.clock import ManualClock
from services.runtime.processing import Work
from services.runtime.records import Incoming
from services.runtime.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SETTINGS = Settings(cart_stock_reservation_enabled=False)


def sent(outputs, kind: str) -> list[dict]:
    return [body for output in outputs if (body := json.loads(output.value)).get("type") == kind]


def cart_with_two_lines() -> tuple[CartLogic, CartUnit]:
    logic = CartLogic(SETTINGS, ManualClock(NOW))
    unit = CartUnit(products={pid: Product(pid, pid.title(), Decimal("4.00")) for pid in ("cap", "mug")})
    for pid in ("cap", "mug"):
        logic.handle(unit, cart_contract.AddItem(message_id=f"add-{pid}", occurred_at=NOW, user_id="ada", product_id=pid))
    return logic, unit


def hand_over(logic: CartLogic, unit: CartUnit) -> dict:
    """Check the whole cart out until the cart hands it over (its lines reserved first)."""
    outputs = logic.handle(unit, cart_contract.CheckoutCart(message_id="checkout", occurred_at=NOW, user_id="ada"))
    while requests := sent(outputs, "ReserveStock"):
        request = requests[0]
        from contracts.stock import StockReserved

        outputs = logic.handle(unit, StockReserved(
            message_id=f"answer-{request['message_id']}", occurred_at=NOW, causation_id=request["message_id"],
            reservation_id=request["reservation_id"], product_id=request["product_id"], holder=request["holder"],
            quantity=request["quantity"], available_after=10,
        ))
    (start,) = sent(outputs, "StartCheckout")
    return start


def answer(kind, start: dict, **fields):
    return kind(
        message_id=f"{kind.__name__}-{start['message_id']}", occurred_at=NOW, causation_id=start["message_id"],
        payment_id=start["payment_id"], user_id="ada", item_ids=[line["item_id"] for line in start["lines"]], **fields,
    )


def test_handed_over_lines_stay_in_the_cart_and_later_commands_wait_until_the_checkout_worker_accepts():
    logic, unit = cart_with_two_lines()
    start = hand_over(logic, unit)

    waiting = logic.handle(unit, cart_contract.GetCart(message_id="look", occurred_at=NOW, user_id="ada"))
    assert len(unit.carts["ada"].lines) == 2, "nothing is given up before the checkout worker accepted"
    assert sent(waiting, "CommandResult") == [], "a look at the cart waits for the answer"

    accepted = logic.handle(unit, answer(CheckoutAccepted, start))
    assert unit.carts["ada"].lines == () and unit.carts["ada"].handover is None
    (checked_out,) = sent(accepted, "CartCheckedOut")
    assert checked_out["payment_id"] == start["payment_id"]
    assert checked_out["causation_id"] == f"CheckoutAccepted-{start['message_id']}", "caused by the acceptance"
    (look,) = sent(accepted, "CommandResult")
    assert look["command_message_id"] == "look" and look["data"]["items"] == []


def test_a_refused_hand_over_leaves_the_cart_and_its_stock_as_they_were_and_answers_the_buyer():
    logic, unit = cart_with_two_lines()
    start = hand_over(logic, unit)
    held = unit.carts["ada"].lines

    refused = logic.handle(unit, answer(CheckoutRefused, start, error_code="INVALID_MESSAGE", message="bad address"))

    assert unit.carts["ada"].lines == held and all(line.is_reserved for line in held)
    (reply,) = sent(refused, "CommandResult")
    assert reply["command_message_id"] == "checkout" and reply["success"] is False
    assert reply["error_code"] == "INVALID_MESSAGE" and "bad address" in reply["error_message"]
    assert sent(refused, "ReleaseReservation") == [] and sent(refused, "CartCheckedOut") == []


def test_a_refusal_without_words_of_its_own_is_still_answered_to_the_buyer():
    logic, unit = cart_with_two_lines()
    start = hand_over(logic, unit)

    refused = logic.handle(unit, answer(CheckoutRefused, start, error_code="CART_LIMIT_REACHED"))

    (reply,) = sent(refused, "CommandResult")
    assert reply["error_code"] == "CART_LIMIT_REACHED" and reply["error_message"] == "The checkout could not be started"
    assert unit.carts["ada"].handover is None, "the cart is free for the buyer's next command"


def test_an_answer_to_a_hand_over_the_cart_does_not_wait_for_changes_nothing():
    logic, unit = cart_with_two_lines()
    start = hand_over(logic, unit)
    forged = dict(start, message_id="someone-else")

    assert logic.handle(unit, answer(CheckoutAccepted, forged)) == []
    assert len(unit.carts["ada"].lines) == 2 and unit.carts["ada"].handover is not None
    logic.handle(unit, answer(CheckoutAccepted, start))
    assert logic.handle(unit, answer(CheckoutRefused, start, error_code="INTERNAL_ERROR")) == [], "answered already"


def record(topic: str, body: dict) -> Incoming:
    return Incoming(topic, 0, 0, body["payment_id"].encode(), json.dumps(body).encode())


def test_the_checkout_worker_accepts_a_hand_over_and_refuses_one_it_cannot_read_or_keep():
    cart_logic, cart_unit = cart_with_two_lines()
    start = hand_over(cart_logic, cart_unit)
    logic = CheckoutLogic(SETTINGS, ManualClock(NOW))

    work = logic.decode(record("checkout.commands", start))
    outputs = logic.handle(CheckoutUnit(), work.message)
    assert [a["payment_id"] for a in sent(outputs, "CheckoutAccepted")] == [start["payment_id"]]

    unreadable = dict(start, shipping_address={"stre\u0000et": "1 Main St"})
    decoded = logic.decode(record("checkout.commands", unreadable))
    (refusal,) = sent(decoded.outputs, "CheckoutRefused")
    assert refusal["causation_id"] == start["message_id"] and refusal["error_code"] == "INVALID_MESSAGE"
    assert sent(decoded.outputs, "CommandResult") == [], "the cart answers the buyer, not the checkout worker"

    (failed,) = sent(logic.failed(Work(None, "k", work.message), RuntimeError("write failed")), "CheckoutRefused")
    assert failed["user_id"] == "ada" and failed["item_ids"] == [line["item_id"] for line in start["lines"]]


def started_checkout() -> tuple[dict, CheckoutLogic, CheckoutUnit]:
    """A cart's hand-over, and the checkout worker that took it on."""
    start = hand_over(*cart_with_two_lines())
    logic, unit = CheckoutLogic(SETTINGS, ManualClock(NOW)), CheckoutUnit()
    logic.handle(unit, logic.decode(record("checkout.commands", start)).message)
    return start, logic, unit


def test_a_hand_over_naming_another_buyers_checkout_is_refused_and_shows_nothing_of_it():
    start, logic, unit = started_checkout()

    other = dict(start, message_id="other-start", user_id="bob")
    outputs = logic.handle(unit, logic.decode(record("checkout.commands", other)).message)

    assert [a["user_id"] for a in sent(outputs, "CheckoutRefused")] == ["bob"]
    assert sent(outputs, "CommandResult") == [] and sent(outputs, "CheckoutAccepted") == []


def test_a_hand_over_sent_back_from_the_dead_letters_starts_nothing_the_cart_already_answered_for():
    cart_logic, cart_unit = cart_with_two_lines()
    start = hand_over(cart_logic, cart_unit)
    logic = CheckoutLogic(SETTINGS, ManualClock(NOW))
    redriven = Incoming(
        "checkout.commands", 0, 0, b"k", json.dumps(start).encode(), (("cartflow-redrive-token", b"t-1"),)
    )

    work = logic.decode(redriven)

    assert work.message is None, "no checkout is created"
    assert [a["error_code"] for a in sent(work.outputs, "CheckoutRefused")] == ["CHECKOUT_NOT_AVAILABLE"]


def test_a_checkout_command_id_used_again_for_other_lines_is_refused_not_answered_with_the_old_checkout():
    start, logic, unit = started_checkout()

    other_lines = dict(start, message_id="later-start", payment_hash="another")
    outputs = logic.handle(unit, logic.decode(record("checkout.commands", other_lines)).message)

    assert sent(outputs, "CheckoutRefused") and sent(outputs, "CommandResult") == []


def test_a_charge_remembered_as_answered_is_not_answered_again_on_a_checkout_that_still_exists():
    from contracts.payment import PaymentSucceeded
    from services.checkout_worker import domain

    logic = CheckoutLogic(SETTINGS, ManualClock(NOW))
    order = domain.Order("o1", "i1", "p1", "Thing", None, 1, Decimal("5.00"), Decimal("5.00"), "r1")
    saga = domain.Checkout("pay1", "h", "ada", "single_item", (order,), Decimal("5.00"), "card", "gw", None, NOW, NOW)
    cancelled = domain.deadline_reached(saga, now=NOW).checkout
    unit = CheckoutUnit({"pay1": cancelled}, charges={"ch_old": "pay1"})  # beyond what the checkout itself keeps
    again = PaymentSucceeded(message_id="again", occurred_at=NOW, payment_id="pay1", amount=Decimal("5.00"), gateway_reference="ch_old")

    assert logic.handle(unit, again) == []
