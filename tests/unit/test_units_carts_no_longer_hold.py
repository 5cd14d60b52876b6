"""Units a cart line no longer holds: a stock recount that leaves too little for
what carts reserved, and a product deleted from the catalog. The cart and stock
workers' ``handle`` run in memory, wired by a small bus that carries the JSON
each sends, with a manual clock."""

from __future__ import annotations

import json
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.cart_worker.domain import RESERVED, Cart, CartLine
from services.cart_worker.handlers import CartLogic
from services.cart_worker.domain import StockAnswerOverdue
from services.cart_worker.unit import CartUnit
from services.runtime.clock import ManualClock
from services.runtime.records import Incoming
from services.runtime.settings import Settings
from services.stock_worker.handlers import StockLogic, StockUnit

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
READERS = {"cart.commands": "cart", "catalog.events": "cart", "stock.events": "cart", "stock.commands": "stock"}


class Shop:
    """The cart and stock workers, each message a batch of its own, delivered in
    the order sent unless a topic is held back."""

    def __init__(self, *, reserving: bool) -> None:
        self.clock = ManualClock(NOW)
        config = Settings(cart_stock_reservation_enabled=reserving, stock_reply_timeout_seconds=10)
        self.logic = {"cart": CartLogic(config, self.clock), "stock": StockLogic(config, self.clock)}
        self.units: dict[str, Any] = {"cart": CartUnit(), "stock": StockUnit()}
        self.queue: deque[tuple[str, bytes]] = deque()
        self.held: set[str] = set()
        self.sent: list[dict] = []
        self.number = 0

    def publish(self, topic: str, **body: Any) -> str:
        self.number += 1
        message_id = f"m{self.number}"
        envelope = {"message_id": message_id, "occurred_at": self.clock.now().isoformat()}
        self.queue.append((topic, json.dumps({**envelope, **body}).encode()))
        return message_id

    def command(self, kind: str, user: str, **fields: Any) -> str:
        return self.publish("cart.commands", type=kind, user_id=user, **fields)

    def handle(self, group: str, message: Any) -> None:
        logic, unit = self.logic[group], self.units[group]
        outputs = [*logic.handle(unit, message), *(logic.finish(unit) if hasattr(logic, "finish") else ())]
        for output in outputs:
            self.sent.append({"topic": output.topic, **json.loads(output.value)})
            if output.topic in READERS:
                self.queue.append((output.topic, output.value))

    def drain(self) -> None:
        later: deque[tuple[str, bytes]] = deque()
        while self.queue:
            topic, value = self.queue.popleft()
            if topic in self.held:
                later.append((topic, value))
                continue
            group = READERS[topic]
            work = self.logic[group].decode(Incoming(topic, 0, 0, b"", value))
            assert work.message is not None, work.outputs
            self.handle(group, work.message)
        self.queue = later

    def ask(self, kind: str, user: str, **fields: Any) -> dict:
        message_id = self.command(kind, user, **fields)
        self.drain()
        (reply,) = [m for m in self.sent if m["type"] == "CommandResult" and m["command_message_id"] == message_id]
        return reply

    def messages(self, kind: str, **fields: Any) -> list[dict]:
        return [m for m in self.sent if m["type"] == kind and all(m.get(k) == v for k, v in fields.items())]

    def level(self, product_id: str):
        return self.units["stock"].levels[f"{product_id}|"]

    def line(self, user: str):
        (line,) = self.units["cart"].carts[user].lines
        return line

    def stock(self, product_id: str, on_hand: int, price: str = "20.00") -> None:
        name = product_id.title()
        self.publish("catalog.events", type="ProductUpserted", product_id=product_id, name=name, price=price)
        self.publish("stock.commands", type="SetStock", product_id=product_id, on_hand=on_hand)
        self.drain()


PAYMENT = {"payment_method": "card", "gateway_name": "gw", "shipping_address": {}}


# --- a recount below what carts hold --------------------------------------------------------


def test_a_cart_line_whose_units_a_recount_took_back_shows_out_of_stock_and_cannot_be_checked_out():
    shop = Shop(reserving=True)
    shop.stock("tee", 2)
    assert shop.ask("AddItem", "ada", product_id="tee")["success"]
    shop.clock.advance(1)
    assert shop.ask("AddItem", "bob", product_id="tee")["success"]

    recount = shop.publish("stock.commands", type="SetStock", product_id="tee", on_hand=1)
    shop.drain()

    (released,) = shop.messages("StockReleased", reason="stock_reduced")
    assert (released["holder"], released["causation_id"]) == (f"cart:bob:{shop.line('bob').item_id}", recount)
    level = shop.level("tee")
    assert (level.on_hand, level.reserved, level.available) == (1, 1, 0)
    bob = shop.ask("GetCart", "bob")["data"]
    assert bob["items"] == [] and bob["total_amount"] == "0"
    (line,) = bob["unavailable_items"]
    assert (line["reservation_state"], line["is_available"]) == ("unreserved", False)
    assert [(c["field"], c["new"]) for c in line["changes"]] == [("availability", "out_of_stock")]
    assert line["change_details"] == {"availability": {"available": False, "reason": "Out of stock or product deleted"}}
    validation = shop.ask("ValidateCart", "bob")["data"]
    assert validation["is_valid"] is False and validation["validation_details"][0]["available_quantity"] == 0
    checkout = shop.ask("CheckoutItem", "bob", item_id=line["item_id"], **PAYMENT)
    assert checkout["error_code"] == "CHECKOUT_VALIDATION_FAILED"
    assert shop.messages("StartCheckout") == [], "nothing is handed over for units the line no longer holds"
    ada = shop.ask("GetCart", "ada")["data"]
    assert [item["reservation_state"] for item in ada["items"]] == ["reserved"], "the oldest reservation stays"


def test_a_line_released_by_a_recount_can_be_bought_again_once_stock_comes_back():
    shop = Shop(reserving=True)
    shop.stock("tee", 1)
    shop.ask("AddItem", "bob", product_id="tee")
    shop.publish("stock.commands", type="SetStock", product_id="tee", on_hand=0)
    shop.drain()
    assert shop.ask("GetCart", "bob")["data"]["items"] == []

    shop.publish("stock.commands", type="SetStock", product_id="tee", on_hand=3)
    shop.drain()

    (item,) = shop.ask("GetCart", "bob")["data"]["items"]
    assert (item["is_available"], item["reservation_state"]) == (True, "unreserved")


# --- a product deleted while carts hold its units ----------------------------------------


def cart_holding(shop: Shop, product_id: str, quantity: int) -> None:
    """Ada's cart with a line of ``product_id`` holding ``quantity`` units."""
    shop.publish(
        "stock.commands", type="ReserveStock", reservation_id="R", product_id=product_id, quantity=quantity,
        holder="cart:ada:item-1", expires_at=(NOW + timedelta(hours=1)).isoformat(),
    )
    shop.drain()
    product = shop.units["cart"].products[product_id]
    line = CartLine(
        item_id="item-1", product_id=product_id, size=None, quantity=quantity, product_name=product.name,
        unit_price=product.price, image_url=None, added_at=NOW, updated_at=NOW, reservation_id="R",
        reserved_quantity=quantity, reservation_state=RESERVED,
    )
    shop.units["cart"].carts["ada"] = Cart("ada", (line,), 1, NOW)


def test_deleting_a_product_gives_back_a_line_a_refused_checkout_left_reserved_with_reservation_at_add_off():
    shop = Shop(reserving=False)
    shop.stock("tee", 5)
    cart_holding(shop, "tee", 2)  # a checkout reserved it, then was refused for another line

    shop.publish("catalog.events", type="ProductDeleted", product_id="tee")
    shop.drain()

    (release,) = shop.messages("ReleaseReservation")
    assert (release["reservation_id"], release["reason"]) == ("R", "product_deleted")
    assert (shop.level("tee").reserved, shop.level("tee").available) == (0, 5)
    assert shop.line("ada").reservation_state == "unreserved"


@pytest.mark.parametrize("answer", ["refused", "timed out", "confirmed"])
def test_deleting_a_product_while_an_increase_of_its_line_is_in_flight_gives_back_every_unit(answer):
    shop = Shop(reserving=True)
    shop.stock("tee", 4)
    cart_holding(shop, "tee", 1)
    shop.held.add("stock.commands")
    increase = shop.command("UpdateItemQuantity", "ada", item_id="item-1", quantity=5 if answer == "refused" else 3)
    shop.drain()

    shop.publish("catalog.events", type="ProductDeleted", product_id="tee")
    shop.drain()
    if answer == "timed out":
        shop.clock.advance(11)
        (step,) = shop.units["cart"].carts["ada"].steps
        shop.handle("cart", StockAnswerOverdue.of("ada", step))
    shop.held.clear()
    shop.drain()

    (reply,) = shop.messages("CommandResult", command_message_id=increase)
    expected = {"refused": "INSUFFICIENT_STOCK", "timed out": "RESERVATION_FAILED", "confirmed": None}[answer]
    assert reply.get("error_code") == expected
    assert (shop.level("tee").reserved, shop.level("tee").available) == (0, 4), "nothing held for a deleted product"
    line = shop.line("ada")
    assert (line.quantity, line.reservation_state, line.reserved_quantity) == (
        3 if answer == "confirmed" else 1, "unreserved", 0
    )
