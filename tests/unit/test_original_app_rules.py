"""The cart's rules as the original carts app defines them, on the pure domain
(and, where a rule lives in the contract or the handler, through the contract
models and the cart worker's ``handle`` in memory with a manual clock)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from contracts import cart as cart_contract
from contracts.errors import ERROR_MESSAGES, ErrorCode
from services.cart_worker import domain
from services.cart_worker.domain import Accepted, Cart, Product, Rejected, SizeOption
from services.cart_worker.handlers import CartLogic
from services.cart_worker.unit import CartUnit
from services.checkout_worker import domain as checkout_domain
from services.runtime.clock import ManualClock
from services.runtime.settings import Settings

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SHOE = Product("shoe", "Trail shoe", Decimal("74.99"))
SHIRT = Product(
    "shirt", "Linen shirt", Decimal("30.00"), sizes=(SizeOption("M", Decimal("30.00")), SizeOption("XL", Decimal("34.50")))
)


def add(cart: Cart, product: Product = SHOE, *, quantity: int = 1, size: str | None = None, item_id: str = "item-1",
        now: datetime = NOW, available: int | None = None):
    return domain.add_item(
        cart, product, product_id=product.product_id, quantity=quantity, size=size, properties=None,
        new_item_id=item_id, now=now, available=available,
    )


def accepted(outcome) -> Accepted:
    assert isinstance(outcome, Accepted), outcome
    return outcome


def refused(outcome, code: ErrorCode) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.code == code
    return outcome


def shoe_cart(quantity: int = 2) -> Cart:
    return accepted(add(Cart("ada"), quantity=quantity)).cart


# --- 1. live prices ------------------------------------------------------------------


def test_totals_use_the_current_price_while_the_line_keeps_the_price_it_was_added_at():
    cheaper = replace(SHOE, price=Decimal("69.99"))

    summary = domain.cart_summary(shoe_cart(2), {"shoe": cheaper}, now=NOW)

    (line,) = summary["items"]
    assert (line["unit_price"], line["current_price"], line["line_total"]) == ("74.99", "69.99", "139.98")
    assert summary["total_amount"] == "139.98"


def test_a_sized_line_costs_its_sizes_current_price():
    cart = accepted(add(Cart("ada"), SHIRT, size="XL", quantity=2)).cart
    dearer = replace(SHIRT, sizes=(SizeOption("M", Decimal("30.00")), SizeOption("XL", Decimal("36.00"))))

    (line,) = domain.cart_summary(cart, {"shirt": dearer}, now=NOW)["items"]

    assert (line["current_price"], line["line_total"]) == ("36.00", "72.00")


def test_checkout_still_requires_accepting_a_price_change_then_charges_the_live_price():
    logic, unit = shop(reserving=False)
    unit.put_cart(shoe_cart(2))
    unit.put_product(replace(SHOE, price=Decimal("69.99")))

    refused_reply = reply_of(logic.handle(unit, checkout_cart()))
    logic.handle(unit, cart_contract.AcceptChanges(message_id="accept", occurred_at=NOW, user_id="ada"))
    unit.stock["shoe|"] = 5
    outputs = logic.handle(unit, checkout_cart("checkout-2"))

    assert refused_reply["error_code"] == "CHECKOUT_VALIDATION_FAILED"
    reserve = next(json.loads(o.value) for o in outputs if json.loads(o.value)["type"] == "ReserveStock")
    assert reserve["quantity"] == 2
    handed_over = logic.handle(unit, stock_reserved(reserve))
    start = next(json.loads(o.value) for o in handed_over if json.loads(o.value)["type"] == "StartCheckout")
    assert start["lines"][0]["unit_price"] == "69.99" and start["total_amount"] == "139.98"


# --- 2. partial stock ------------------------------------------------------------------


def test_a_line_the_stock_covers_only_in_part_is_unavailable_and_out_of_the_totals():
    summary = domain.cart_summary(shoe_cart(3), {"shoe": SHOE}, {"shoe|": 2}, now=NOW)

    assert summary["items"] == [] and summary["total_amount"] == "0" and summary["total_items"] == 0
    (line,) = summary["unavailable_items"]
    assert line["is_available"] is False
    assert line["changes"][0]["message"] == "Only 2 items available (requested 3)"


def test_a_line_whose_reservation_covers_it_stays_available_whatever_the_stock_says():
    line = replace(shoe_cart(3).lines[0], reservation_state=domain.RESERVED, reserved_quantity=3)

    summary = domain.cart_summary(Cart("ada", (line,)), {"shoe": SHOE}, {"shoe|": 0}, now=NOW)

    assert summary["total_items"] == 3 and summary["unavailable_items"] == []


# --- 3. change details --------------------------------------------------------------------


def test_changes_are_also_keyed_by_field_with_decimal_strings_and_a_check_time():
    renamed = replace(SHOE, name="Trail shoe II", price=Decimal("79.99"))

    (line,) = domain.cart_summary(shoe_cart(), {"shoe": renamed}, now=NOW)["items"]

    assert line["change_details"] == {
        "name": {"old": "Trail shoe", "new": "Trail shoe II"},
        "price": {"old": "74.99", "new": "79.99"},
    }
    assert line["product_last_checked"] == NOW.isoformat()
    assert [change["field"] for change in line["changes"]] == ["name", "price"]


def test_an_unavailable_line_still_reports_its_name_and_price_changes():
    gone = replace(SHOE, name="Trail shoe II", price=Decimal("79.99"), is_deleted=True)

    (line,) = domain.cart_summary(shoe_cart(), {"shoe": gone}, now=NOW)["unavailable_items"]

    assert line["change_details"] == {
        "availability": {"available": False, "reason": "Out of stock or product deleted"},
        "name": {"old": "Trail shoe", "new": "Trail shoe II"},
        "price": {"old": "74.99", "new": "79.99"},
    }


def test_check_changes_answers_each_changed_line_with_its_details_and_check_time():
    cheaper = replace(SHOE, price=Decimal("69.99"))

    data = accepted(domain.check_changes(shoe_cart(), {"shoe": cheaper}, now=NOW)).data

    (item,) = data["changed_items"]
    assert item["change_details"] == {"price": {"old": "74.99", "new": "69.99"}}
    assert item["cart_item_id"] == "item-1" and item["product_last_checked"] == NOW.isoformat()


# --- 4. error texts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "code", "message"),
    [
        (lambda: domain.remove_item(Cart("ada"), item_id="x", now=NOW), ErrorCode.ITEM_NOT_FOUND, "Cart item not found"),
        (lambda: domain.validate_cart(Cart("ada"), {}, item_ids=None), ErrorCode.CART_EMPTY, "Cart is empty"),
        (lambda: add(Cart("ada"), quantity=0), ErrorCode.INVALID_QUANTITY, "Invalid quantity specified"),
        (lambda: add(Cart("ada"), SHIRT), ErrorCode.SIZE_REQUIRED, "Size selection required for this product"),
        (lambda: add(Cart("ada"), SHIRT, size="XXS"), ErrorCode.SIZE_NOT_AVAILABLE, "Size XXS not available for this product"),
        (lambda: add(Cart("ada"), replace(SHOE, is_deleted=True)), ErrorCode.PRODUCT_INACTIVE, "Product is no longer available"),
        (lambda: add(Cart("ada"), quantity=10, available=5), ErrorCode.INSUFFICIENT_STOCK, "Only 5 items available (requested 10)"),
        (lambda: add(Cart("ada"), SHIRT, size="M", quantity=4, available=2), ErrorCode.INSUFFICIENT_STOCK,
         "Only 2 items available in size M"),
        (lambda: add(shoe_cart(2), quantity=4, available=3), ErrorCode.INSUFFICIENT_STOCK, "Cannot add 4 more. Only 1 more available"),
    ],
)
def test_each_refusal_carries_the_original_apps_text_and_a_suggested_action(outcome, code, message):
    rejection = refused(outcome(), code)

    assert rejection.message == message
    assert rejection.suggested_action


def test_every_original_error_code_has_the_original_text():
    assert ERROR_MESSAGES[ErrorCode.RESERVATION_FAILED] == "Stock reservation failed"
    assert ERROR_MESSAGES[ErrorCode.CHECKOUT_VALIDATION_FAILED] == "Cart validation failed for checkout"
    assert ERROR_MESSAGES[ErrorCode.INSUFFICIENT_STOCK] == "Insufficient stock available"


def test_an_unknown_product_is_not_found():
    outcome = domain.add_item(
        Cart("ada"), None, product_id="ghost", quantity=1, size=None, properties=None, new_item_id="i", now=NOW
    )

    assert refused(outcome, ErrorCode.PRODUCT_INACTIVE).message == "Product not found"


# --- 5. stock checked without reservation at add-to-cart -----------------------------------


def test_without_reservation_at_add_to_cart_add_and_update_are_checked_against_the_stock_read_model():
    logic, unit = shop(reserving=False)
    unit.put_product(SHOE)
    unit.stock["shoe|"] = 3

    too_many = reply_of(logic.handle(unit, add_command("a1", quantity=4)))
    fits = reply_of(logic.handle(unit, add_command("a2", quantity=3)))
    grow = reply_of(logic.handle(unit, update_command("u1", fits["cart_item_id"], 5)))

    assert (too_many["error_code"], too_many["error_message"]) == (
        "INSUFFICIENT_STOCK", "Only 3 items available (requested 4)"
    )
    assert fits["success"] is True
    assert (grow["error_code"], grow["error_message"]) == ("INSUFFICIENT_STOCK", "Only 3 items available (requested 5)")


def test_a_product_whose_stock_is_not_known_yet_can_be_added():
    logic, unit = shop(reserving=False)
    unit.put_product(SHOE)

    assert reply_of(logic.handle(unit, add_command("a1", quantity=40)))["success"] is True


# --- 6 and 7. checkout defaults and the original clients' field names -------------------------


def test_checkout_commands_default_the_payment_method_and_accept_an_address_as_text_or_nothing():
    bare = cart_contract.cart_command_adapter.validate_python(
        {"type": "CheckoutCart", "message_id": "c", "occurred_at": NOW.isoformat(), "user_id": "ada"}
    )
    texted = cart_contract.cart_command_adapter.validate_python(
        {"type": "CheckoutItem", "message_id": "c", "occurred_at": NOW.isoformat(), "user_id": "ada",
         "cart_item_id": 456, "shipping_address": "123 Test St"}
    )

    assert (bare.payment_method, bare.gateway_name, bare.shipping_address) == ("credit_card", None, None)
    assert (texted.item_id, texted.shipping_address) == ("456", "123 Test St")


def test_the_handover_names_the_deployments_default_gateway_when_the_command_names_none():
    logic, unit = shop(reserving=False, CARTFLOW_CHECKOUT_DEFAULT_GATEWAY="paygate")
    line = replace(shoe_cart(1).lines[0], reservation_id="r", reservation_state=domain.RESERVED, reserved_quantity=1)
    unit.put_cart(Cart("ada", (line,)))
    unit.put_product(SHOE)

    (start,) = [json.loads(o.value) for o in logic.handle(unit, checkout_cart()) if b"StartCheckout" in o.value]

    assert (start["payment_method"], start["gateway_name"]) == ("credit_card", "paygate")


def test_the_original_clients_field_names_and_value_shapes_are_read():
    add_item = cart_contract.cart_command_adapter.validate_python(
        {"type": "AddItem", "message_id": "m", "occurred_at": NOW.isoformat(), "user_id": "ada",
         "product_id": 123, "quantity": "2", "size": "", "product_properties": {"color": "red"}, "unknown": 1}
    )
    validate = cart_contract.cart_command_adapter.validate_python(
        {"type": "ValidateCart", "message_id": "m", "occurred_at": NOW.isoformat(), "user_id": "ada",
         "cart_item_ids": [456, "789"]}
    )
    remove = cart_contract.cart_command_adapter.validate_python(
        {"type": "RemoveItem", "message_id": "m", "occurred_at": NOW.isoformat(), "user_id": "ada", "cart_item_id": "i-1"}
    )

    assert (add_item.product_id, add_item.quantity, add_item.size) == ("123", 2, None)
    assert add_item.properties == {"color": "red"}
    assert validate.item_ids == ["456", "789"] and remove.item_id == "i-1"


@pytest.mark.parametrize("quantity", ["2.5", "two", "", True, 2.0, "1e3"])
def test_a_quantity_that_is_not_a_whole_number_is_still_refused(quantity):
    with pytest.raises(ValueError):
        cart_contract.cart_command_adapter.validate_python(
            {"type": "AddItem", "message_id": "m", "occurred_at": NOW.isoformat(), "user_id": "ada",
             "product_id": "p", "quantity": quantity}
        )


# --- 8. newest first ----------------------------------------------------------------------


def test_lines_are_listed_newest_first():
    cart = accepted(add(Cart("ada"), SHOE, item_id="old")).cart
    cart = accepted(add(cart, SHIRT, size="M", item_id="new", now=NOW + timedelta(seconds=1))).cart

    summary = domain.cart_summary(cart, {"shoe": SHOE, "shirt": SHIRT}, now=NOW)

    assert [line["item_id"] for line in summary["items"]] == ["new", "old"]


# --- 9. counts and checkout status -----------------------------------------------------------


def test_the_cart_count_is_the_units_and_total_of_the_available_lines():
    cart = accepted(add(shoe_cart(2), SHIRT, size="M", item_id="item-2", now=NOW)).cart

    count = domain.cart_count(cart, {"shoe": SHOE, "shirt": SHIRT}, {"shirt|M": 0})

    assert (count["count"], count["total_items"], count["total_amount"]) == (2, 2, "149.98")


def test_a_checkouts_status_counts_down_to_its_deadline_and_stops_once_closed():
    order = checkout_domain.Order("o1", "i1", "shoe", "Trail shoe", None, 1, Decimal("74.99"), Decimal("74.99"), "r1")
    checkout = checkout_domain.Checkout(
        "pay-1", "h", "ada", "single_item", (order,), Decimal("74.99"), "credit_card", "stripe", None, NOW,
        NOW + timedelta(minutes=15),
    )

    waiting = checkout_domain.checkout_status(checkout, now=NOW + timedelta(minutes=5))
    paid = checkout_domain.checkout_status(
        replace(checkout, state=checkout_domain.PAID, closed_at=NOW + timedelta(minutes=6)), now=NOW + timedelta(minutes=7)
    )

    assert (waiting["state"], waiting["time_remaining_seconds"], waiting["is_paid"]) == ("awaiting_payment", 600, False)
    assert (paid["state"], paid["time_remaining_seconds"], paid["is_paid"]) == ("paid", 0, True)
    assert waiting["orders"][0]["status"] == "under_paying"


# --- 10. validation details ---------------------------------------------------------------------


def test_validation_details_carry_the_original_apps_fields():
    data = accepted(domain.validate_cart(shoe_cart(2), {"shoe": SHOE}, item_ids=None, stock={"shoe|": 50})).data

    (detail,) = data["validation_details"]
    assert {key: detail[key] for key in ("cart_item_id", "product_name", "requested_quantity", "available_quantity",
                                         "item_total", "is_valid")} == {
        "cart_item_id": "item-1", "product_name": "Trail shoe", "requested_quantity": 2, "available_quantity": 50,
        "item_total": "149.98", "is_valid": True,
    }
    assert data["total_valid_amount"] == "149.98"


# --- helpers: the cart worker's handle in memory -------------------------------------------------

def shop(*, reserving: bool, **env: str) -> tuple[CartLogic, CartUnit]:
    settings = Settings(cart_stock_reservation_enabled=reserving, **{k.removeprefix("CARTFLOW_").lower(): v for k, v in env.items()})
    return CartLogic(settings, ManualClock(NOW)), CartUnit()


def reply_of(outputs) -> dict:
    (reply,) = [json.loads(o.value) for o in outputs if o.is_reply]
    return reply


def add_command(message_id: str, *, quantity: int) -> cart_contract.AddItem:
    return cart_contract.AddItem(message_id=message_id, occurred_at=NOW, user_id="ada", product_id="shoe", quantity=quantity)


def update_command(message_id: str, item_id: str, quantity: int) -> cart_contract.UpdateItemQuantity:
    return cart_contract.UpdateItemQuantity(message_id=message_id, occurred_at=NOW, user_id="ada", item_id=item_id, quantity=quantity)


def checkout_cart(message_id: str = "checkout-1") -> cart_contract.CheckoutCart:
    return cart_contract.CheckoutCart(message_id=message_id, occurred_at=NOW, user_id="ada")


def stock_reserved(reserve: dict):
    from contracts import stock as stock_contract

    return stock_contract.StockReserved(
        message_id="answer-" + reserve["message_id"], occurred_at=NOW, causation_id=reserve["message_id"],
        reservation_id=reserve["reservation_id"], product_id=reserve["product_id"], size=reserve.get("size"),
        holder=reserve["holder"], quantity=reserve["quantity"], expires_at=reserve["expires_at"], available_after=3,
    )


def test_both_names_of_one_field_with_different_values_are_refused():
    with pytest.raises(ValueError, match="send one of them"):
        cart_contract.cart_command_adapter.validate_python(
            {"type": "RemoveItem", "message_id": "m", "occurred_at": NOW.isoformat(), "user_id": "ada",
             "item_id": "a", "cart_item_id": "b"}
        )


def test_accepting_changes_answers_the_same_totals_as_reading_the_cart():
    cheaper, stock = {"shoe": replace(SHOE, price=Decimal("69.99"))}, {"shoe|": 2}
    cart = shoe_cart(3)

    accepted_data = accepted(domain.accept_changes(cart, cheaper, item_ids=None, now=NOW, stock=stock)).data
    summary = domain.cart_summary(accepted(domain.accept_changes(cart, cheaper, item_ids=None, now=NOW)).cart, cheaper, stock)

    assert accepted_data["cart"]["total_amount"] == summary["total_amount"] == "0", "3 wanted, 2 in stock"


def test_a_query_cannot_pass_for_a_repeat_of_a_checkout_command():
    from contracts.envelope import message_id_for
    from services.checkout_worker.handlers import CheckoutLogic
    from services.runtime.records import Incoming

    logic = CheckoutLogic(Settings(), ManualClock(NOW))
    forged_id = message_id_for("checkout-1", "StartCheckout", "pay-x")
    query = {"type": "GetCheckout", "message_id": forged_id, "occurred_at": NOW.isoformat(), "user_id": "ada",
             "payment_id": "pay-x"}

    work = logic.decode(Incoming(logic.topics["checkout.queries"], 0, 0, b"pay-x", json.dumps(query).encode()))

    assert work.key != forged_id and work.key.endswith(forged_id)


def test_a_catalog_page_lists_products_in_id_order_with_their_stock_and_says_whether_more_follow():
    products = [SHIRT, SHOE, replace(SHOE, product_id="sock", name="Sock")]

    page = domain.product_page(products, {"shirt|M": 0, "shirt|XL": 4, "shoe|": 0}, limit=2)

    assert [p["product_id"] for p in page["products"]] == ["shirt", "shoe"] and page["next_after"] == "shoe"
    shirt, shoe = page["products"]
    assert [(s["size"], s["available_quantity"]) for s in shirt["sizes"]] == [("M", 0), ("XL", 4)]
    assert shirt["is_available"] is True and shoe["is_available"] is False
    assert domain.product_page(products[:1], {}, limit=2)["next_after"] is None
