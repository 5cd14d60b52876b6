"""Every message id comes from what the message means, so that no two messages
produced by one cause share an id however large the cart. The cart worker's
``handle`` runs in memory here, with a manual clock and no servers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts import cart as cart_contract
from services.cart_worker.domain import RESERVED, Cart, CartLine, Product
from services.cart_worker.handlers import CartLogic
from services.cart_worker.housekeeping import CHECK, HousekeepingDue
from services.cart_worker.unit import CartUnit
from services.runtime.clock import ManualClock
from services.runtime.settings import Settings

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def logic(**settings) -> CartLogic:
    return CartLogic(Settings(cart_max_lines=200, **settings), ManualClock(START))


def reserved_cart(user: str, lines: int, products: dict[str, Product]) -> Cart:
    cart_lines = []
    for number in range(lines):
        product = Product(f"p{number}", f"Thing {number}", Decimal("2.50"))
        products[product.product_id] = product
        cart_lines.append(
            CartLine(
                item_id=f"item-{number}", product_id=product.product_id, size=None, quantity=1,
                product_name=product.name, unit_price=product.price, image_url=None, added_at=START,
                updated_at=START, reservation_id=f"res-{number}", reserved_quantity=1, reservation_state=RESERVED,
            )
        )
    return Cart(user, tuple(cart_lines), version=1, updated_at=START)


def ids_of(outputs) -> list[str]:
    return [json.loads(output.value)["message_id"] for output in outputs]


def and_the_checkout_saga(outputs) -> list:
    """The cart's outputs and what the checkout worker publishes on its hand-over."""
    from contracts.checkout import start_checkout_adapter
    from services.checkout_worker.handlers import CheckoutLogic, CheckoutUnit

    (handover,) = [o for o in outputs if json.loads(o.value)["type"] == "StartCheckout"]
    start = start_checkout_adapter.validate_json(handover.value)
    saga = CheckoutLogic(Settings(), ManualClock(START)).handle(CheckoutUnit(), start)
    return [*outputs, *saga]


def test_a_checkout_of_150_lines_publishes_no_two_messages_with_one_id():
    products: dict[str, Product] = {}
    unit = CartUnit(carts={"ada": reserved_cart("ada", 150, products)}, products=products)
    checkout = cart_contract.CheckoutCart(
        message_id="checkout-1", occurred_at=START, user_id="ada",
        payment_method="card", gateway_name="gw", shipping_address={},
    )

    outputs = and_the_checkout_saga(logic().handle(unit, checkout))

    ids = ids_of(outputs)
    assert len(outputs) > 300, "a take-over and an order per line"
    assert len(ids) == len(set(ids))


def test_a_housekeeping_pass_over_a_100_line_cart_publishes_no_two_messages_with_one_id():
    products: dict[str, Product] = {}
    cart = reserved_cart("ada", 100, products)
    for product_id, product in products.items():
        products[product_id] = Product(product_id, product.name, product.price, is_deleted=True)
    due_at = START - timedelta(minutes=1)
    unit = CartUnit(carts={"ada": Cart("ada", cart.lines, 1, START, check_at=due_at)}, products=products)

    outputs = logic(cart_auto_remove_unavailable=True).handle(unit, HousekeepingDue("ada", CHECK, due_at))

    ids = ids_of(outputs)
    assert len(outputs) >= 200, "a removal and a release per line, and the alerts"
    assert len(ids) == len(set(ids))


def answer_reservations(outputs, clock_now) -> list:
    """The stock worker's answers to every ReserveStock among ``outputs``: all granted."""
    from contracts import stock as stock_contract

    answers = []
    for output in outputs:
        body = json.loads(output.value)
        if body.get("type") == "ReserveStock":
            answers.append(
                stock_contract.StockReserved(
                    message_id=f"answer-{body['message_id']}", occurred_at=clock_now, causation_id=body["message_id"],
                    reservation_id=body["reservation_id"], product_id=body["product_id"], holder=body["holder"],
                    quantity=body["quantity"], available_after=10,
                )
            )
    return answers


def test_a_checkout_that_reserves_12_lines_one_by_one_publishes_no_two_messages_with_one_id():
    products: dict[str, Product] = {}
    cart = reserved_cart("ada", 12, products)
    unreserved = tuple(
        CartLine(**{**line.__dict__, "reservation_id": None, "reserved_quantity": 0, "reservation_state": "untracked"})
        for line in cart.lines
    )
    unit = CartUnit(carts={"ada": Cart("ada", unreserved, 1, START)}, products=products)
    cart_logic = logic(cart_stock_reservation_enabled=False)
    checkout = cart_contract.CheckoutCart(
        message_id="checkout-2", occurred_at=START, user_id="ada",
        payment_method="card", gateway_name="gw", shipping_address={},
    )

    published = cart_logic.handle(unit, checkout)
    pending = answer_reservations(published, START)
    while pending:
        answer = pending.pop()
        produced = cart_logic.handle(unit, answer)
        published += produced
        pending += answer_reservations(produced, START)

    published = and_the_checkout_saga(published)
    kinds = [json.loads(output.value)["type"] for output in published]
    assert kinds.count("ReserveStock") == 12 and kinds.count("TransferReservation") == 12
    ids = ids_of(published)
    assert len(ids) == len(set(ids))
