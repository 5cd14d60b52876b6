"""Ids one message derives from the id of the message that caused it: handling
a message again derives the same ids, so a retry repeats its effects exactly.
A protocol between the workers (a checkout's payment id is derived by the cart
and read by the checkout worker): every worker derives them through these
functions only."""

from __future__ import annotations

from contracts.envelope import message_id_for


def new_item_id(command_id: str) -> str:
    """The id of the cart line an add creates."""
    return message_id_for(command_id, "CartLine")


def reservation_id_for(command_id: str, item_id: str, attempt: str = "") -> str:
    """The id of the reservation a cart command asks for a line (``attempt``
    tells a second request of the same command apart)."""
    return message_id_for(command_id, f"Reservation{attempt}", item_id)


def stock_command_id(cause_id: str, kind: str, reservation_id: str) -> str:
    """The message_id of the stock command of ``kind`` that ``cause_id`` sends about a reservation."""
    return message_id_for(cause_id, kind, reservation_id)


def payment_id_for(command_id: str) -> str:
    """The payment id (and checkout id) a checkout command creates."""
    return "pay-" + message_id_for(command_id, "Payment")


def order_id_for(command_id: str, item_id: str) -> str:
    """The id of the order a checkout command creates for a line."""
    return message_id_for(command_id, "Order", item_id)


def start_checkout_id(command_id: str, payment_id: str) -> str:
    """The message_id of the ``StartCheckout`` a checkout command sends the checkout worker."""
    return message_id_for(command_id, "StartCheckout", payment_id)
