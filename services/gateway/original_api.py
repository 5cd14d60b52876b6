"""The original carts app's REST shapes: its request bodies, and its responses
made from cartflow's typed replies (``contracts.replies``). Pure: no I/O.

Responses are flat as the original's (``message``, ``cart_item_id``,
``cart_summary``, the checkout fields at the top level); refusals are its error
format (``success: false``, ``error_code``, ``error_message``,
``suggested_action``, ``cart_item_id``, ``available_quantity``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from contracts.cart import Address, Properties, Text
from contracts.envelope import IDENTIFIER_MAX_LENGTH, IDENTIFIER_PATTERN, BoundedInt, Identifier

#: An identifier as the contract has it (``contracts.envelope.Identifier``).
IDENTIFIER_SCHEMA = {"type": "string", "minLength": 1, "maxLength": IDENTIFIER_MAX_LENGTH, "pattern": IDENTIFIER_PATTERN}
#: Numeric ids: the integers every JSON reader holds exactly (JavaScript's safe range).
INT_ID = {"minimum": -(2**53 - 1), "maximum": 2**53 - 1}
_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)


def _id_as_text(value: Any) -> Any:
    """The original app's clients send numeric ids (``"product_id": 123``): read as ``"123"``
    (within JavaScript's safe integers, as the schema says)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema's integers include 46851.0
    if isinstance(value, int) and not isinstance(value, bool) and INT_ID["minimum"] <= value <= INT_ID["maximum"]:
        return str(value)
    return value


def _whole_number(value: Any) -> Any:
    """A count as the original's clients send it: an integer, a float with nothing
    after the point (JSON Schema's integers include ``2.0``), or a string of digits
    (what a form field gives)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    return value


#: An id in a request: a string by the identifier rule, or a 64-bit integer.
ClientId = Annotated[
    Identifier,
    BeforeValidator(_id_as_text),
    WithJsonSchema({"anyOf": [IDENTIFIER_SCHEMA, {"type": "integer", **INT_ID}]}),
]
#: The schema of a quantity in a request, before the document gives it the
#: deployment's bounds (``CARTFLOW_CART_ITEM_MAX_QUANTITY``; see ``openapi``).
QUANTITY_SCHEMA = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[0-9]{1,19}$"}]}
#: A quantity in a request.
Quantity = Annotated[BoundedInt, BeforeValidator(_whole_number), WithJsonSchema(QUANTITY_SCHEMA)]
#: A size; an empty string (what a form without a size sends) means none.
SizeField = Annotated[
    Identifier | None,
    BeforeValidator(lambda value: None if value == "" else value),
    WithJsonSchema({"anyOf": [IDENTIFIER_SCHEMA, {"type": "string", "maxLength": 0}, {"type": "null"}]}),
]

#: Refusals answered 404 (the thing named does not exist for this user); the rest are 400.
NOT_FOUND = frozenset({"ITEM_NOT_FOUND", "PRODUCT_INACTIVE", "CHECKOUT_NOT_FOUND"})


class Body(BaseModel):
    # Unknown fields are ignored, as the original ignores them; a user_id sent here is one of them.
    model_config = ConfigDict(extra="ignore")


class AddToCart(Body):
    product_id: ClientId
    quantity: Quantity = 1
    size: SizeField = None
    product_properties: Properties | None = None


class UpdateQuantity(Body):
    quantity: Quantity


class UpdateItem(Body):
    cart_item_id: ClientId
    quantity: Quantity


class NameItem(Body):
    cart_item_id: ClientId


class SelectItems(Body):
    cart_item_ids: list[ClientId] | None = Field(default=None, min_length=1, max_length=500)


class Checkout(Body):
    payment_method: Text = "credit_card"
    gateway_name: Text | None = None
    shipping_address: Address | None = None


class CheckoutSingle(Checkout):
    cart_item_id: ClientId


class SimulatePayment(Body):
    outcome: Literal["succeeded", "failed"]


class DevelopmentLogin(Body):
    user_id: ClientId


def status_of(reply: dict[str, Any], *, created: bool = False) -> int:
    if reply.get("success"):
        return 201 if created else 200
    code = reply.get("error_code")
    if code in NOT_FOUND:
        return 404
    return 500 if code == "INTERNAL_ERROR" else 400


def error_body(reply: dict[str, Any]) -> dict[str, Any]:
    """A worker's refusal in the original's error format."""
    body = problem(
        reply.get("error_code"),
        reply.get("error_message"),
        reply.get("suggested_action"),
        cart_item_id=reply.get("cart_item_id"),
        available_quantity=reply.get("available_quantity"),
    )
    if isinstance(reply.get("data"), dict):
        body.update(reply["data"])  # a failed checkout's validation details
    return body


def problem(code: str | None, message: str | None, action: str | None, **extra: Any) -> dict[str, Any]:
    """An error in the original's format (``error`` too, as its views answer)."""
    return {
        "success": False,
        "error_code": code,
        "error_message": message,
        "error": message,
        "suggested_action": action,
        **extra,
    }


def item_view(line: dict[str, Any]) -> dict[str, Any]:
    """A cart line as the original lists it, with cartflow's own fields beside."""
    return {
        "id": line["item_id"],
        "product": {
            "id": line["product_id"],
            "name": line["product_name"],
            "current_price": line["current_price"],
            "image": line["image_url"],
        },
        "quantity": line["quantity"],
        "size": line["size"],
        "line_total": line["line_total"],
        "is_available": line["is_available"],
        "has_changed": line["has_changed"],
        "changes": line["change_details"],
        "product_last_checked": line["product_last_checked"],
        "product_properties": line["properties"],
        "price_snapshot": line["unit_price"],
        "added_at": line["added_at"],
    }


def cart_view(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "items": [item_view(line) for line in data["items"]],
        "total_items": data["total_items"],
        "total_amount": data["total_amount"],
        "has_changes": data["has_changes"],
        "unavailable_items": [item_view(line) for line in data["unavailable_items"]],
    }


def added(data: dict[str, Any]) -> dict[str, Any]:
    return {"message": data["message"], "cart_item_id": data["cart_item_id"], "cart_summary": data["cart_summary"]}


def created_item(data: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/cart/``: the created (or grown) line, as the original's serializer gives it."""
    return {**item_view(data), "cart_summary": data["cart_summary"]}


def updated(data: dict[str, Any]) -> dict[str, Any]:
    return {"message": data["message"], "new_quantity": data["new_quantity"], "new_subtotal": data["new_subtotal"]}


def removed(data: dict[str, Any]) -> dict[str, Any]:
    return {"message": data["message"], "cart_item_id": data["cart_item_id"], "cart_summary": data["cart_summary"]}


def cleared(data: dict[str, Any]) -> dict[str, Any]:
    return {"message": data["message"], "removed_item_ids": data["removed_item_ids"]}


def count(data: dict[str, Any]) -> dict[str, Any]:
    return {"count": data["count"], "total_items": data["total_items"], "total_amount": data["total_amount"]}


def changes_checked(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "has_changes": data["has_changes"],
        "items_checked": data["items_checked"],
        "changed_items": [
            {"cart_item_id": item["cart_item_id"], "changes": item["change_details"]} for item in data["changed_items"]
        ],
    }


def changes_accepted(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "message": "Changes accepted",
        "accepted_item_ids": data["accepted_item_ids"],
        **cart_view(data["cart"]),
    }


def as_is(data: dict[str, Any]) -> dict[str, Any]:
    """Replies whose fields already are the original's (validation, checkout, payment status, products)."""
    return data
