"""With reservation at add-to-cart on, adds of different lines reserve at the same
time, and every buyer still gets the replies in the order the commands were
sent, each showing the cart as the commands before it left it. The cart
worker's ``handle`` runs in memory with a manual clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from contracts.catalog import ProductDeleted
from services.cart_worker.domain import Product
from services.cart_worker.handlers import CartLogic
from services.cart_worker.repository import cart_from_doc, cart_to_doc
from services.cart_worker.domain import StockAnswerOverdue
from services.cart_worker.unit import CartUnit
from services.runtime.clock import ManualClock
from services.runtime.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CATALOG = {pid: Product(pid, pid.title(), Decimal(price)) for pid, price in (("cap", "10.00"), ("mug", "4.50"), ("tee", "20.00"))}


def shop() -> tuple[CartLogic, CartUnit, ManualClock]:
    clock = ManualClock(NOW)
    return CartLogic(Settings(cart_stock_reservation_enabled=True), clock), CartUnit(products=dict(CATALOG)), clock


def add(product_id: str, message_id: str, quantity: int = 1) -> cart_contract.AddItem:
    return cart_contract.AddItem(
        message_id=message_id, occurred_at=NOW, user_id="ada", product_id=product_id, quantity=quantity
    )


def look(message_id: str) -> cart_contract.GetCart:
    return cart_contract.GetCart(message_id=message_id, occurred_at=NOW, user_id="ada")


def sent(outputs, kind: str) -> list[dict]:
    return [body for output in outputs if (body := json.loads(output.value)).get("type") == kind]


def replies(outputs) -> list[str]:
    return [reply["command_message_id"] for reply in sent(outputs, "CommandResult")]


def reserved(request: dict) -> stock_contract.StockReserved:
    return stock_contract.StockReserved(
        message_id=f"answer-{request['message_id']}", occurred_at=NOW, causation_id=request["message_id"],
        reservation_id=request["reservation_id"], product_id=request["product_id"], holder=request["holder"],
        quantity=request["quantity"], available_after=10,
    )


def refused(request: dict) -> stock_contract.StockReservationRejected:
    return stock_contract.StockReservationRejected(
        message_id=f"answer-{request['message_id']}", occurred_at=NOW, causation_id=request["message_id"],
        reservation_id=request["reservation_id"], product_id=request["product_id"], holder=request["holder"],
        operation="reserve", requested=request["quantity"], available=0, error_code="INSUFFICIENT_STOCK",
    )


def test_adds_of_different_products_ask_the_stock_worker_at_once_without_waiting_for_each_other():
    logic, unit, _ = shop()

    outputs = [output for n, pid in enumerate(("cap", "mug", "tee")) for output in logic.handle(unit, add(pid, f"add-{n}"))]

    assert [request["product_id"] for request in sent(outputs, "ReserveStock")] == ["cap", "mug", "tee"]
    assert replies(outputs) == [], "nothing is confirmed before the stock worker answered"
    assert len(unit.carts["ada"].steps) == 3 and unit.carts["ada"].queue == ()


def test_answers_that_come_out_of_order_are_replied_to_in_the_order_the_commands_came():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    second = sent(logic.handle(unit, add("mug", "add-mug")), "ReserveStock")[0]

    early = logic.handle(unit, reserved(second))
    both = logic.handle(unit, reserved(first))

    assert replies(early) == [], "the second answer waits for the first"
    assert replies(both) == ["add-cap", "add-mug"]
    cap_reply, mug_reply = sent(both, "CommandResult")
    assert cap_reply["data"]["cart_summary"]["total_items"] == 1, "the first reply does not count the later add"
    assert mug_reply["data"]["cart_summary"]["total_items"] == 2
    assert all(line.is_reserved for line in unit.carts["ada"].lines) and unit.carts["ada"].steps == ()


def test_a_refused_first_add_leaves_the_second_confirmed_and_each_reply_says_so():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap", quantity=5)), "ReserveStock")[0]
    second = sent(logic.handle(unit, add("mug", "add-mug")), "ReserveStock")[0]

    outputs = [*logic.handle(unit, reserved(second)), *logic.handle(unit, refused(first))]

    cap_reply, mug_reply = sent(outputs, "CommandResult")
    assert (cap_reply["command_message_id"], cap_reply["success"], cap_reply["error_code"]) == (
        "add-cap", False, "INSUFFICIENT_STOCK"
    )
    assert (mug_reply["command_message_id"], mug_reply["success"]) == ("add-mug", True)
    assert mug_reply["data"]["cart_summary"]["total_items"] == 1
    assert [line.product_id for line in unit.carts["ada"].lines] == ["mug"]


def test_a_look_at_the_cart_waits_for_the_adds_before_it_and_the_adds_after_it_wait_for_the_look():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    looked = logic.handle(unit, look("look"))
    later = logic.handle(unit, add("mug", "add-mug"))

    assert replies(looked) == [] and sent(later, "ReserveStock") == [], "both wait in the queue"
    outputs = logic.handle(unit, reserved(first))

    assert replies(outputs) == ["add-cap", "look"]
    assert sent(outputs, "CommandResult")[1]["data"]["total_items"] == 1
    (request,) = sent(outputs, "ReserveStock")
    assert request["product_id"] == "mug", "the add after the look starts once the look is answered"


def test_a_second_add_of_a_product_in_flight_waits_for_the_first_answer():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    again = logic.handle(unit, add("cap", "add-cap-again"))

    assert sent(again, "ReserveStock") == [] and sent(again, "AdjustReservation") == []
    outputs = logic.handle(unit, reserved(first))

    assert replies(outputs) == ["add-cap"]
    (grow,) = sent(outputs, "AdjustReservation")
    assert grow["quantity"] == 2


def test_a_later_add_whose_answer_never_comes_times_out_in_its_turn_and_is_released():
    logic, unit, clock = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    second = sent(logic.handle(unit, add("mug", "add-mug")), "ReserveStock")[0]
    clock.advance(11)

    timed_out = logic.handle(unit, StockAnswerOverdue("ada", second["reservation_id"], "add-mug"))
    assert replies(timed_out) == [], "the timeout of the second waits for the first answer"
    outputs = logic.handle(unit, reserved(first))

    assert replies(outputs) == ["add-cap", "add-mug"]
    assert sent(outputs, "CommandResult")[1]["error_code"] == "RESERVATION_FAILED"
    (release,) = sent(outputs, "ReleaseReservation")
    assert release["reservation_id"] == second["reservation_id"]
    assert [line.product_id for line in unit.carts["ada"].lines] == ["cap"]


def test_steps_in_flight_and_held_answers_survive_a_round_trip_through_storage():
    logic, unit, _ = shop()
    logic.handle(unit, add("cap", "add-cap"))
    second = sent(logic.handle(unit, add("mug", "add-mug")), "ReserveStock")[0]
    logic.handle(unit, reserved(second))

    stored = cart_from_doc(cart_to_doc(unit.carts["ada"]))

    assert stored.steps == unit.carts["ada"].steps
    assert stored.steps[1].answer is not None and stored.steps[0].answer is None


def update(item_id: str, message_id: str, quantity: int) -> cart_contract.UpdateItemQuantity:
    return cart_contract.UpdateItemQuantity(
        message_id=message_id, occurred_at=NOW, user_id="ada", item_id=item_id, quantity=quantity
    )


def released(request: dict) -> stock_contract.StockReleased:
    return stock_contract.StockReleased(
        message_id=f"release-{request['message_id']}", occurred_at=NOW, reservation_id=request["reservation_id"],
        product_id=request["product_id"], holder=request["holder"], quantity=request["quantity"], reason="expired",
    )


def test_a_later_increase_whose_reservation_lapsed_asks_again_in_its_turn_and_waits_for_that_answer():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    logic.handle(unit, reserved(first))
    cap = unit.carts["ada"].lines[0]
    mug = sent(logic.handle(unit, add("mug", "add-mug")), "ReserveStock")[0]
    (grow,) = sent(logic.handle(unit, update(cap.item_id, "grow-cap", 2)), "AdjustReservation")
    lapsed = stock_contract.StockCommandRejected(
        message_id="lapsed", occurred_at=NOW, causation_id=grow["message_id"], reservation_id=grow["reservation_id"],
        product_id="cap", holder=grow["holder"], command_type="AdjustReservation",
        error_code="RESERVATION_NOT_ACTIVE", error_message="not active",
    )
    assert logic.handle(unit, lapsed) == []

    outputs = logic.handle(unit, reserved(mug))

    assert replies(outputs) == ["add-mug"], "the increase waits for the answer to its new reservation"
    (again,) = sent(outputs, "ReserveStock")
    assert again["quantity"] == 2
    answered = logic.handle(unit, reserved(again))
    assert replies(answered) == ["grow-cap"] and sent(answered, "CommandResult")[0]["success"]
    line = unit.carts["ada"].line(cap.item_id)
    assert (line.quantity, line.reserved_quantity, line.reservation_id) == (2, 2, again["reservation_id"])


def test_a_reservation_released_while_its_answer_waited_its_turn_leaves_the_line_unreserved():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    second = sent(logic.handle(unit, add("mug", "add-mug")), "ReserveStock")[0]
    logic.handle(unit, reserved(second))
    logic.handle(unit, released(second))  # it expired before the cart got to it

    outputs = logic.handle(unit, reserved(first))

    assert replies(outputs) == ["add-cap", "add-mug"]
    mug = next(line for line in unit.carts["ada"].lines if line.product_id == "mug")
    assert not mug.is_reserved and mug.reserved_quantity == 0, "the cart promises nothing the stock worker let go"


def test_a_held_answer_that_no_longer_reads_counts_as_a_timeout_and_the_cart_moves_on():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    second = sent(logic.handle(unit, add("mug", "add-mug")), "ReserveStock")[0]
    logic.handle(unit, reserved(second))
    doc = cart_to_doc(unit.carts["ada"])
    del doc["pending"][1]["answer"]["quantity"]  # as another release might have stored it
    unit.carts["ada"] = cart_from_doc(doc)

    outputs = logic.handle(unit, reserved(first))

    assert replies(outputs) == ["add-cap", "add-mug"]
    assert sent(outputs, "CommandResult")[1]["error_code"] == "RESERVATION_FAILED"
    (release,) = sent(outputs, "ReleaseReservation")
    assert release["reservation_id"] == second["reservation_id"]
    assert unit.carts["ada"].steps == ()


def test_a_release_announced_again_leaves_the_cart_as_it_is_with_no_new_version():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    second = sent(logic.handle(unit, add("mug", "add-mug")), "ReserveStock")[0]
    logic.handle(unit, reserved(second))
    logic.handle(unit, released(second))
    logic.handle(unit, reserved(first))
    settled = unit.carts["ada"]
    unit.dirty_carts.clear()

    logic.handle(unit, released(second))  # as a replayed stock command answers again

    assert unit.carts["ada"] is settled and unit.dirty_carts == set()


def test_units_reserved_for_a_product_deleted_while_its_add_was_in_flight_are_given_back():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    second = sent(logic.handle(unit, add("mug", "add-mug")), "ReserveStock")[0]
    logic.handle(unit, reserved(second))  # held: the add of the cap is answered first
    deleted = logic.handle(unit, ProductDeleted(message_id="delete-mug", occurred_at=NOW, product_id="mug"))

    outputs = logic.handle(unit, reserved(first))

    assert sent(deleted, "ReleaseReservation") == [], "the mug's line held nothing yet when the product went"
    (release,) = sent(outputs, "ReleaseReservation")
    assert (release["reservation_id"], release["reason"]) == (second["reservation_id"], "product_deleted")
    mug = next(line for line in unit.carts["ada"].lines if line.product_id == "mug")
    assert not mug.is_reserved, "the cart promises nothing it gave back"


def test_an_oversized_answer_waiting_its_turn_counts_as_a_timeout_and_the_cart_stays_small():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    second = sent(logic.handle(unit, add("mug", "add-mug")), "ReserveStock")[0]
    bloated = stock_contract.StockCommandRejected(
        message_id="bloated", occurred_at=NOW, causation_id=second["message_id"],
        reservation_id=second["reservation_id"], product_id="mug", holder=second["holder"],
        command_type="ReserveStock", error_code="INVALID_QUANTITY", error_message="x" * 200_000,
    )
    logic.handle(unit, bloated)
    assert len(json.dumps(cart_to_doc(unit.carts["ada"]), default=str)) < 20_000

    outputs = logic.handle(unit, reserved(first))

    assert replies(outputs) == ["add-cap", "add-mug"]
    assert sent(outputs, "CommandResult")[1]["error_code"] == "RESERVATION_FAILED"
    (release,) = sent(outputs, "ReleaseReservation")
    assert release["reservation_id"] == second["reservation_id"]


def stored_by_an_earlier_release(unit: CartUnit, change) -> None:
    """Round-trip ada's cart through storage, with ``change`` made to the stored document."""
    doc = cart_to_doc(unit.carts["ada"])
    change(doc)
    unit.carts["ada"] = cart_from_doc(doc)


def test_a_queued_command_that_no_longer_reads_is_answered_as_not_carried_out_and_the_commands_after_it_run():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    logic.handle(unit, look("look-1"))
    logic.handle(unit, look("look-2"))
    stored_by_an_earlier_release(unit, lambda doc: doc["queue"][0].update(type="GetCartV0"))

    outputs = logic.handle(unit, reserved(first))

    assert replies(outputs) == ["add-cap", "look-1", "look-2"]
    assert (sent(outputs, "CommandResult")[1]["success"], sent(outputs, "CommandResult")[1]["error_code"]) == (
        False, "INTERNAL_ERROR"
    )
    assert unit.carts["ada"].queue == () and unit.carts["ada"].steps == ()


def test_a_step_whose_command_no_longer_reads_is_undone_and_refused_when_its_time_runs_out():
    logic, unit, clock = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    stored_by_an_earlier_release(unit, lambda doc: doc["pending"][0]["command"].update(type="AddItemV0"))
    clock.advance(11)

    outputs = logic.handle(unit, StockAnswerOverdue("ada", first["reservation_id"], "add-cap"))

    assert replies(outputs) == ["add-cap"] and sent(outputs, "CommandResult")[0]["error_code"] == "RESERVATION_FAILED"
    (release,) = sent(outputs, "ReleaseReservation")
    assert release["reservation_id"] == first["reservation_id"]
    assert unit.carts["ada"].steps == () and unit.carts["ada"].lines == ()


def test_a_held_answer_that_cannot_be_taken_times_out_its_step_and_the_cart_moves_on():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    second = sent(logic.handle(unit, add("mug", "add-mug")), "ReserveStock")[0]
    logic.handle(unit, look("look"))
    logic.handle(unit, reserved(second))
    stored_by_an_earlier_release(unit, lambda doc: doc["pending"][1]["command"].update(type="AddItemV0"))

    outputs = logic.handle(unit, reserved(first))

    assert replies(outputs) == ["add-cap", "add-mug", "look"]
    assert sent(outputs, "CommandResult")[1]["error_code"] == "RESERVATION_FAILED"
    (release,) = sent(outputs, "ReleaseReservation")
    assert release["reservation_id"] == second["reservation_id"]
    assert [line.product_id for line in unit.carts["ada"].lines] == ["cap"] and unit.carts["ada"].steps == ()


def test_an_answer_that_is_neither_a_reservation_nor_a_refusal_for_stock_fails_the_add_and_undoes_the_step():
    logic, unit, _ = shop()
    first = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    refused_otherwise = stock_contract.StockCommandRejected(
        message_id="other", occurred_at=NOW, causation_id=first["message_id"], reservation_id=first["reservation_id"],
        product_id="cap", holder=first["holder"], command_type="ReserveStock",
        error_code="PRODUCT_NOT_FOUND", error_message="no stock level",
    )

    outputs = logic.handle(unit, refused_otherwise)

    assert sent(outputs, "CommandResult")[0]["error_code"] == "RESERVATION_FAILED"
    (release,) = sent(outputs, "ReleaseReservation")
    assert release["reservation_id"] == first["reservation_id"], "a reservation made anyway (a repeat) is given back"
    assert unit.carts["ada"].lines == () and unit.carts["ada"].steps == ()


def test_an_add_with_the_longest_allowed_message_id_is_still_undone_when_its_answer_does_not_come():
    logic, unit, clock = shop()
    long_id = "a" * 200
    first = sent(logic.handle(unit, add("cap", long_id)), "ReserveStock")[0]
    clock.advance(11)

    outputs = logic.handle(unit, StockAnswerOverdue("ada", first["reservation_id"], long_id))

    assert replies(outputs) == [long_id] and sent(outputs, "CommandResult")[0]["error_code"] == "RESERVATION_FAILED"
    (release,) = sent(outputs, "ReleaseReservation")
    assert release["reservation_id"] == first["reservation_id"] and len(release["causation_id"]) <= 200
    assert unit.carts["ada"].steps == () and unit.carts["ada"].lines == ()


def test_a_step_stored_before_steps_kept_their_stock_command_id_is_answered_only_by_the_answer_to_its_command():
    logic, unit, _ = shop()
    request = sent(logic.handle(unit, add("cap", "add-cap")), "ReserveStock")[0]
    doc = cart_to_doc(unit.carts["ada"])
    for step in doc["pending"]:
        del step["stock_command_id"]  # as an earlier release stored it

    unit.carts["ada"] = cart_from_doc(doc)

    (step,) = unit.carts["ada"].steps
    assert step.stock_command_id == request["message_id"]
    assert not step.is_answered_by("an-earlier-command-about-the-same-reservation", request["reservation_id"])
