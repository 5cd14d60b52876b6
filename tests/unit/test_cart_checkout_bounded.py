"""A checkout from the cart ends in bounded time whatever the reservations' TTL:
each line is reserved at most once per checkout, and a line whose reservation
lapsed while later ones were reserved is handed over without one (the checkout
worker reserves it afresh). The cart worker's ``handle`` runs in memory with a
manual clock, with versions written as the repository writes them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts import cart as cart_contract
from contracts import stock as stock_contract
from services.cart_worker.domain import Product
from services.cart_worker.handlers import CartLogic
from services.cart_worker.unit import CartUnit
from services.runtime.clock import ManualClock
from services.runtime.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LINES = 30
TTL = 60
ROUND_TRIP = 2.5


def sent(outputs, kind: str) -> list[dict]:
    return [body for output in outputs if (body := json.loads(output.value)).get("type") == kind]


def test_a_full_cart_checkout_whose_lines_lapse_faster_than_they_are_reserved_is_handed_over_after_one_reservation_per_line():
    clock = ManualClock(NOW)
    logic = CartLogic(Settings(cart_stock_reservation_enabled=False, cart_reservation_ttl=TTL), clock)
    products = {f"p{n}": Product(f"p{n}", f"Thing {n}", Decimal("2.50")) for n in range(LINES)}
    unit = CartUnit(products=products)

    def handle(message) -> list:
        outputs = logic.handle(unit, message)
        for user_id in unit.dirty_carts:  # as the repository writes them: a new version each time
            unit.carts[user_id] = replace(unit.carts[user_id], version=unit.carts[user_id].version + 1)
        unit.dirty_carts.clear()
        return outputs

    for n in range(LINES):
        handle(cart_contract.AddItem(message_id=f"add-{n}", occurred_at=clock.now(), user_id="ada", product_id=f"p{n}"))
    outputs = handle(
        cart_contract.CheckoutCart(message_id="checkout", occurred_at=clock.now(), user_id="ada", payment_method="card")
    )
    granted: list[tuple[datetime, dict]] = []
    reservations = 0
    while (requests := sent(outputs, "ReserveStock")) and reservations <= 2 * LINES:
        reservations += len(requests)
        clock.advance(ROUND_TRIP)
        outputs = []
        for request, at in [(r, clock.now()) for r in requests]:
            granted.append((at, request))
            answer = stock_contract.StockReserved(
                message_id=f"answer-{request['message_id']}", occurred_at=at, causation_id=request["message_id"],
                reservation_id=request["reservation_id"], product_id=request["product_id"], holder=request["holder"],
                quantity=request["quantity"], available_after=10,
            )
            # Reservations older than the TTL lapse first, as the stock worker's expiry would announce.
            for when, held in [g for g in granted if g[0] + timedelta(seconds=TTL) <= clock.now()]:
                granted.remove((when, held))
                outputs += handle(stock_contract.StockReleased(
                    message_id=f"expired-{held['reservation_id']}", occurred_at=clock.now(),
                    reservation_id=held["reservation_id"], product_id=held["product_id"], holder=held["holder"],
                    quantity=held["quantity"], reason="expired",
                ))
            outputs += handle(answer)

    handover = sent(outputs, "StartCheckout")
    assert reservations == LINES, "each line is reserved once by the checkout"
    assert len(handover) == 1 and len(handover[0]["lines"]) == LINES
    lapsed = [line for line in handover[0]["lines"] if not line.get("reservation_id")]
    assert lapsed, "the first lines lapsed while the last were reserved: handed over for the checkout worker to reserve"
