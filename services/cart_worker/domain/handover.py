"""A checkout's hand-over from the cart's side: the lines stay the buyer's until
the checkout worker accepted them, and stay as they were when it refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from services.cart_worker.domain.model import Cart, Handover


def hand_over(cart: Cart, handover: Handover) -> Cart:
    """The cart waiting for the checkout worker's answer to ``handover``."""
    return replace(cart, handover=handover)


def handover_answered(
    cart: Cart, payment_id: str, start_message_id: str | None, *, accepted: bool, now: datetime
) -> tuple[Cart, Handover] | None:
    """The cart once the checkout worker answered the hand-over it waits for:
    without the handed-over lines when accepted, as it was when refused; None
    when it waits for no such answer (a repeat, a late or a forged one)."""
    handover = cart.handover
    if handover is None or handover.payment_id != payment_id or handover.start_message_id != start_message_id:
        return None
    answered = replace(cart, handover=None)
    if accepted:
        answered = answered.without(handover.item_ids, now)
    return answered, handover
