"""The cart's business rules, exercised on the pure domain without any server."""

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contracts import cart as cart_contract
from contracts.errors import ErrorCode
from contracts.holders import cart_line_holder, parse_cart_line_holder
from services.cart_worker import domain
from services.cart_worker.domain import (
    Accepted,
    Cart,
    Product,
    Rejected,
    SizeOption,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SHOE = Product("shoe", "Trail shoe", Decimal("74.99"), image_url="shoe.png")
SHIRT = Product(
    "shirt",
    "Linen shirt",
    Decimal("30.00"),
    sizes=(SizeOption("M", Decimal("30.00")), SizeOption("XL", Decimal("34.50"))),
)


def add(cart, product=SHOE, *, quantity=1, size=None, item_id="item-1", properties=None):
    return domain.add_item(
        cart,
        product,
        product_id=product.product_id if product else "ghost",
        quantity=quantity,
        size=size,
        properties=properties,
        new_item_id=item_id,
        now=NOW,
    )


def accepted(outcome) -> Accepted:
    assert isinstance(outcome, Accepted), outcome
    return outcome


def rejected(outcome, code) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.code == code
    assert outcome.message and outcome.suggested_action
    return outcome


def cart_with_shoe(quantity=2) -> Cart:
    return accepted(add(Cart("alice"), quantity=quantity)).cart


class TestAddItem:
    def test_a_new_product_becomes_a_line_with_a_snapshot_of_name_price_and_image(self):
        outcome = accepted(add(Cart("alice"), quantity=2, properties={"gift": True}))
        (line,) = outcome.cart.lines
        assert (line.product_name, line.unit_price, line.image_url) == ("Trail shoe", Decimal("74.99"), "shoe.png")
        assert line.quantity == 2 and line.properties == {"gift": True}
        assert outcome.data["line_total"] == "149.98"
        assert outcome.events == (
            domain.ItemAdded("alice", "item-1", "shoe", None, 2, 2, Decimal("74.99"), "Trail shoe"),
        )

    def test_adding_the_same_product_again_adds_to_the_existing_line(self):
        outcome = accepted(add(cart_with_shoe(2), quantity=3, item_id="item-2"))
        (line,) = outcome.cart.lines
        assert line.item_id == "item-1" and line.quantity == 5
        assert outcome.events[0].line_quantity == 5

    def test_each_size_of_a_product_is_its_own_line_at_the_sizes_price(self):
        cart = accepted(add(Cart("alice"), SHIRT, size="M", item_id="m")).cart
        cart = accepted(add(cart, SHIRT, size="XL", item_id="xl")).cart
        assert [(line.size, line.unit_price) for line in cart.lines] == [
            ("M", Decimal("30.00")),
            ("XL", Decimal("34.50")),
        ]

    def test_an_unknown_product_is_refused_as_inactive(self):
        rejected(add(Cart("alice"), None), ErrorCode.PRODUCT_INACTIVE)

    def test_a_deleted_product_is_refused_as_inactive(self):
        rejected(add(Cart("alice"), replace(SHOE, is_deleted=True)), ErrorCode.PRODUCT_INACTIVE)

    def test_a_sized_product_needs_a_size(self):
        outcome = rejected(add(Cart("alice"), SHIRT), ErrorCode.SIZE_REQUIRED)
        assert "M, XL" in outcome.suggested_action

    def test_a_size_the_product_does_not_have_is_refused(self):
        rejected(add(Cart("alice"), SHIRT, size="XXS"), ErrorCode.SIZE_NOT_AVAILABLE)

    def test_a_size_on_a_product_without_sizes_is_refused(self):
        rejected(add(Cart("alice"), SHOE, size="M"), ErrorCode.SIZE_NOT_AVAILABLE)

    @pytest.mark.parametrize("quantity", [0, -1, 100, 10**12])
    def test_quantity_must_be_between_one_and_the_maximum(self, quantity):
        rejected(add(Cart("alice"), quantity=quantity), ErrorCode.INVALID_QUANTITY)

    def test_the_maximum_quantity_is_the_worker_s_setting(self):
        from services.cart_worker.handlers import CartLogic
        from services.cart_worker.unit import CartUnit
        from services.runtime.clock import ManualClock
        from services.runtime.settings import Settings

        logic = CartLogic(Settings(cart_item_max_quantity=5, cart_stock_reservation_enabled=False), ManualClock(NOW))
        unit = CartUnit()
        unit.put_product(SHOE)
        unit.stock["shoe|"] = 50

        def reply_to(quantity, message_id):
            command = cart_contract.cart_command_adapter.validate_python(
                {"type": "AddItem", "message_id": message_id, "occurred_at": NOW.isoformat(), "user_id": "alice",
                 "product_id": "shoe", "quantity": quantity}
            )
            (reply,) = [json.loads(o.value) for o in logic.handle(unit, command) if o.is_reply]
            return reply

        six, five = reply_to(6, "m-1"), reply_to(5, "m-2")
        assert (six["success"], six["error_code"]) == (False, "INVALID_QUANTITY")
        assert five["success"] is True and unit.cart("alice").lines[0].quantity == 5

    def test_the_maximum_is_checked_against_the_quantity_already_in_the_cart(self):
        outcome = rejected(add(cart_with_shoe(95), quantity=5), ErrorCode.INVALID_QUANTITY)
        assert outcome.available_quantity == 4
        assert outcome.message == "Invalid quantity specified"
        assert "Add at most 4 more" in outcome.suggested_action

    def test_a_refused_add_leaves_the_cart_as_it_was(self):
        cart = cart_with_shoe(95)
        outcome = rejected(add(cart, quantity=5), ErrorCode.INVALID_QUANTITY)
        assert cart.lines[0].quantity == 95 and len(cart.lines) == 1
        assert outcome.available_quantity == 4


class TestUpdateRemoveClear:
    def test_updating_a_quantity_sets_it_and_says_from_what_to_what(self):
        outcome = accepted(domain.update_item_quantity(cart_with_shoe(2), item_id="item-1", quantity=7, now=NOW))
        assert outcome.cart.lines[0].quantity == 7
        assert outcome.events == (domain.ItemQuantityChanged("alice", "item-1", "shoe", None, 2, 7),)

    def test_updating_to_the_same_quantity_emits_nothing(self):
        outcome = accepted(domain.update_item_quantity(cart_with_shoe(2), item_id="item-1", quantity=2, now=NOW))
        assert outcome.events == ()

    @pytest.mark.parametrize("quantity", [0, -3, 100])
    def test_updating_to_an_out_of_range_quantity_is_refused(self, quantity):
        rejected(
            domain.update_item_quantity(cart_with_shoe(), item_id="item-1", quantity=quantity, now=NOW),
            ErrorCode.INVALID_QUANTITY,
        )

    def test_an_item_that_is_not_in_this_users_cart_is_not_found(self):
        bobs_cart = Cart("bob")  # alice's item-1 exists, but not in bob's cart
        rejected(domain.update_item_quantity(bobs_cart, item_id="item-1", quantity=2, now=NOW), ErrorCode.ITEM_NOT_FOUND)
        rejected(domain.remove_item(bobs_cart, item_id="item-1", now=NOW), ErrorCode.ITEM_NOT_FOUND)

    def test_removing_an_item_drops_its_line(self):
        outcome = accepted(domain.remove_item(cart_with_shoe(3), item_id="item-1", now=NOW))
        assert outcome.cart.is_empty
        assert outcome.events == (domain.ItemRemoved("alice", "item-1", "shoe", None, 3),)

    def test_clearing_empties_the_cart_and_names_what_left(self):
        outcome = accepted(domain.clear_cart(cart_with_shoe(), now=NOW))
        assert outcome.cart.is_empty
        assert outcome.events == (domain.CartCleared("alice", ["item-1"]),)

    def test_clearing_an_empty_cart_succeeds_without_an_event(self):
        outcome = accepted(domain.clear_cart(Cart("alice"), now=NOW))
        assert outcome.events == ()


class TestSummary:
    def test_totals_count_only_available_lines(self):
        cart = accepted(add(cart_with_shoe(2), SHIRT, size="XL", item_id="item-2")).cart
        catalog = {"shoe": SHOE}  # the shirt has vanished from the catalog
        summary = domain.cart_summary(cart, catalog)
        assert summary["total_items"] == 2
        assert summary["total_amount"] == "149.98"
        assert [item["item_id"] for item in summary["items"]] == ["item-1"]
        assert [item["item_id"] for item in summary["unavailable_items"]] == ["item-2"]
        assert summary["unavailable_items"][0]["is_available"] is False

    def test_the_summary_shows_price_changes_but_keeps_the_snapshot_price(self):
        summary = domain.cart_summary(cart_with_shoe(1), {"shoe": replace(SHOE, price=Decimal("79.99"))})
        (item,) = summary["items"]
        assert item["unit_price"] == "74.99" and item["has_changed"] is True
        assert summary["has_changes"] is True


class TestChanges:
    def test_check_changes_reports_name_and_price_changes_with_old_and_new_values(self):
        catalog = {"shoe": replace(SHOE, name="Trail shoe II", price=Decimal("69.99"))}
        outcome = accepted(domain.check_changes(cart_with_shoe(), catalog, now=NOW))
        line = outcome.cart.lines[0]
        assert line.has_product_changed
        fields = {change.field: (change.old, change.new) for change in line.change_details}
        assert fields == {"name": ("Trail shoe", "Trail shoe II"), "price": ("74.99", "69.99")}
        (event,) = outcome.events
        assert isinstance(event, domain.ProductChangesDetected) and event.items[0]["item_id"] == "item-1"

    def test_check_changes_reports_a_deleted_product_and_a_vanished_size_as_unavailable(self):
        cart = accepted(add(cart_with_shoe(), SHIRT, size="XL", item_id="item-2")).cart
        catalog = {"shoe": replace(SHOE, is_deleted=True), "shirt": replace(SHIRT, sizes=SHIRT.sizes[:1])}
        outcome = accepted(domain.check_changes(cart, catalog, now=NOW))
        assert [line.change_details[0].field for line in outcome.cart.lines] == ["availability"] * 2

    def test_check_changes_on_an_unchanged_cart_emits_nothing(self):
        outcome = accepted(domain.check_changes(cart_with_shoe(), {"shoe": SHOE}, now=NOW))
        assert outcome.events == () and outcome.data["has_changes"] is False

    def test_accepting_changes_resnapshots_the_line_and_clears_its_flag(self):
        catalog = {"shoe": replace(SHOE, price=Decimal("69.99"))}
        cart = accepted(domain.check_changes(cart_with_shoe(2), catalog, now=NOW)).cart
        outcome = accepted(domain.accept_changes(cart, catalog, item_ids=None, now=NOW))
        line = outcome.cart.lines[0]
        assert line.unit_price == Decimal("69.99") and not line.has_product_changed
        assert outcome.events == (domain.ChangesAccepted("alice", ["item-1"], Decimal("139.98")),)

    def test_accepting_only_named_lines_leaves_the_others(self):
        cart = accepted(add(cart_with_shoe(), SHIRT, size="M", item_id="item-2")).cart
        catalog = {"shoe": replace(SHOE, price=Decimal("1")), "shirt": replace(SHIRT, name="Shirt")}
        outcome = accepted(domain.accept_changes(cart, catalog, item_ids=["item-2"], now=NOW))
        assert [line.unit_price for line in outcome.cart.lines] == [Decimal("74.99"), Decimal("30.00")]
        assert outcome.cart.lines[1].product_name == "Shirt"

    def test_accepting_changes_of_an_unknown_item_is_refused(self):
        rejected(domain.accept_changes(cart_with_shoe(), {}, item_ids=["nope"], now=NOW), ErrorCode.ITEM_NOT_FOUND)

    def test_accepting_changes_on_an_empty_cart_is_refused(self):
        rejected(domain.accept_changes(Cart("alice"), {}, item_ids=None, now=NOW), ErrorCode.CART_EMPTY)


class TestValidate:
    def test_an_unchanged_cart_is_valid_with_its_full_amount(self):
        outcome = accepted(domain.validate_cart(cart_with_shoe(2), {"shoe": SHOE}, item_ids=None))
        assert outcome.data["is_valid"] is True and outcome.data["total_valid_amount"] == "149.98"

    def test_a_changed_or_unavailable_line_makes_the_cart_invalid_and_leaves_the_total(self):
        cart = accepted(add(cart_with_shoe(2), SHIRT, size="M", item_id="item-2")).cart
        outcome = accepted(
            domain.validate_cart(cart, {"shoe": SHOE, "shirt": replace(SHIRT, sizes=(SizeOption("M", Decimal("1")),))}, item_ids=None)
        )
        assert outcome.data["is_valid"] is False
        assert outcome.data["total_valid_amount"] == "149.98"
        # Newest first: the shirt was added last.
        assert [d["is_valid"] for d in outcome.data["validation_details"]] == [False, True]

    def test_validating_named_items_judges_only_those(self):
        cart = accepted(add(cart_with_shoe(2), SHIRT, size="M", item_id="item-2")).cart
        outcome = accepted(domain.validate_cart(cart, {"shoe": SHOE}, item_ids=["item-1"]))
        assert outcome.data["is_valid"] is True

    def test_validating_an_empty_cart_is_refused(self):
        rejected(domain.validate_cart(Cart("alice"), {}, item_ids=None), ErrorCode.CART_EMPTY)

    def test_validating_an_unknown_item_is_refused(self):
        rejected(domain.validate_cart(cart_with_shoe(), {}, item_ids=["x"]), ErrorCode.ITEM_NOT_FOUND)


class TestStockInTheCart:
    STOCK_OUT = {"shoe|": 0}

    def test_a_line_without_a_reservation_is_unavailable_when_its_stock_is_gone(self):
        cart = cart_with_shoe(2)
        summary = domain.cart_summary(cart, {"shoe": SHOE}, self.STOCK_OUT)
        assert summary["items"] == [] and summary["unavailable_items"][0]["changes"][0]["new"] == "out_of_stock"

    def test_check_changes_reports_a_stock_out_and_a_shortfall(self):
        cart = accepted(add(cart_with_shoe(3), SHIRT, size="M", item_id="item-2")).cart
        outcome = accepted(domain.check_changes(cart, {"shoe": SHOE, "shirt": SHIRT}, now=NOW, stock={"shoe|": 0, "shirt|M": 0}))
        assert [line.change_details[0].field for line in outcome.cart.lines] == ["availability", "availability"]
        short = accepted(domain.check_changes(cart_with_shoe(3), {"shoe": SHOE}, now=NOW, stock={"shoe|": 1}))
        (change,) = short.cart.lines[0].change_details
        assert change.field == "stock" and change.message == "Only 1 items available (requested 3)"

    def test_a_reserved_line_keeps_its_units_whatever_the_stock_level_says(self):
        line = replace(cart_with_shoe(2).lines[0], reservation_state=domain.RESERVED, reserved_quantity=2)
        cart = Cart("alice", (line,))
        assert domain.cart_summary(cart, {"shoe": SHOE}, self.STOCK_OUT)["total_items"] == 2

    def test_holders_name_the_user_and_the_line_and_only_cart_holders_parse(self):
        assert parse_cart_line_holder(cart_line_holder("user:with:colons", "item-1")) == ("user:with:colons", "item-1")
        assert parse_cart_line_holder("order:o1") is None

    def test_a_refused_merge_says_how_many_more_are_left(self):
        previous = cart_with_shoe(2).lines[0]
        pending = domain.PendingStock({}, previous.item_id, "r1", "adjust", previous, NOW)
        refusal = domain.insufficient_stock(pending, "AddItem", requested=4, available=3)
        assert refusal.message == "Cannot add 2 more. Only 1 more available" and refusal.available_quantity == 1

    def test_rolling_back_a_refused_add_removes_the_new_line_and_restores_a_merged_one(self):
        cart = cart_with_shoe(2)
        grown = accepted(add(cart, quantity=3)).cart
        pending = domain.PendingStock({}, "item-1", "r1", "adjust", cart.lines[0], NOW)
        restored = domain.roll_back_stock(domain.await_stock(grown, pending, now=NOW), now=NOW)
        assert restored.lines[0].quantity == 2 and restored.pending is None
        fresh = accepted(add(Cart("bob"))).cart
        pending = domain.PendingStock({}, "item-1", "r2", "reserve", None, NOW)
        assert domain.roll_back_stock(domain.await_stock(fresh, pending, now=NOW), now=NOW).is_empty
