"""The contract's rule (docs/contract.md), checked: within contract v1, fields
may be added, never renamed or removed, and the same for paths and statuses.
This release's Kafka messages and OpenAPI document against the committed v1
baseline."""

from __future__ import annotations

import copy

import pytest

from services.ops.compatibility import MESSAGES, OPENAPI, baseline, breaking_changes, current


def test_this_release_breaks_no_client_of_contract_v1():
    assert breaking_changes(baseline(), current()) == []


def test_a_renamed_message_field_is_a_breaking_change():
    old = current()
    new = copy.deepcopy(old)
    fields = new[MESSAGES]["OrderPaid"]["properties"]
    fields["paid_order_id"] = fields.pop("order_id")

    assert "message OrderPaid: field order_id removed or renamed" in breaking_changes(old, new)


def test_a_removed_path_or_status_is_a_breaking_change():
    old = current()
    new = copy.deepcopy(old)
    del new[OPENAPI]["paths"]["/api/carts/count/"]
    del new[OPENAPI]["paths"]["/api/carts/add/"]["post"]["responses"]["413"]

    problems = breaking_changes(old, new)
    assert "path /api/carts/count/: removed" in problems
    assert "POST /api/carts/add/: status 413 removed" in problems


def test_a_narrowed_type_and_a_new_required_request_field_are_breaking_changes():
    old = current()
    new = copy.deepcopy(old)
    new[MESSAGES]["AddItem"]["properties"]["quantity"] = {"type": "string"}
    new[MESSAGES]["AddItem"]["required"].append("size")
    body = new[OPENAPI]["components"]["schemas"]["UpdateQuantity"]
    body["properties"]["note"] = {"type": "string"}
    body["required"].append("note")

    problems = breaking_changes(old, new)
    assert any(p.startswith("message AddItem.quantity: type narrowed") for p in problems), problems
    assert "message AddItem: required field size added" in problems
    assert any("required field note added" in p for p in problems), problems


def test_additions_are_not_breaking_changes():
    old = current()
    new = copy.deepcopy(old)
    new[MESSAGES]["OrderPaid"]["properties"]["paid_at"] = {"type": "string", "format": "date-time"}
    new[OPENAPI]["paths"]["/api/carts/gift/"] = copy.deepcopy(old[OPENAPI]["paths"]["/api/carts/count/"])
    new[OPENAPI]["paths"]["/api/carts/add/"]["post"]["responses"]["429"] = {"description": "Slow down"}
    new[OPENAPI]["components"]["schemas"]["ItemAdded"]["properties"]["note"] = {"type": "string"}

    assert breaking_changes(old, new) == []


def schemas(doc):
    return doc[OPENAPI]["components"]["schemas"]


def operation(doc, path, method):
    return doc[OPENAPI]["paths"][path][method]


def _nullable(field):
    return {"anyOf": [field, {"type": "null"}]}


BREAKING = {
    "a request string's maxLength lowered": lambda d: schemas(d)["Checkout"]["properties"]["payment_method"].update(
        maxLength=10),
    "a request quantity's maximum lowered": lambda d: schemas(d)["AddToCart"]["properties"]["quantity"]["anyOf"][0].update(
        maximum=5),
    "a message field's maxLength lowered": lambda d: d[MESSAGES]["AddItem"]["properties"]["product_id"].update(maxLength=5),
    "other request fields refused": lambda d: schemas(d)["UpdateQuantity"].update(additionalProperties=False),
    "a parameter removed": lambda d: operation(d, "/api/products/", "get")["parameters"].pop(0),
    "an optional parameter made required": lambda d: operation(d, "/api/products/", "get")["parameters"][1].update(
        required=True),
    "a request body made required": lambda d: operation(d, "/api/carts/checkout/full/", "post").setdefault(
        "requestBody", {}).update(required=True),
    "a response no longer JSON": lambda d: operation(d, "/api/carts/count/", "get")["responses"]["200"].update(
        content={"text/plain": {"schema": {"type": "string"}}}),
    "a response field made nullable": lambda d: schemas(d)["ItemAdded"]["properties"].update(
        cart_item_id=_nullable(schemas(d)["ItemAdded"]["properties"]["cart_item_id"])),
    "a response integer widened to number": lambda d: schemas(d)["CartCount"]["properties"]["count"].update(type="number"),
    "a response enum value added": lambda d: schemas(d)["CheckoutStatus"]["properties"]["state"]["enum"].append("refunded"),
    "a request union loses a choice": lambda d: schemas(d)["AddToCart"]["properties"]["size"]["anyOf"].pop(1),
    "the items of an optional request list narrowed": lambda d: schemas(d)["SelectItems"]["properties"]["cart_item_ids"][
        "anyOf"][0].update(items={"type": "string", "maxLength": 3}),
    "a public operation made to need a token": lambda d: operation(d, "/api/payments/webhook/", "post").update(
        security=[{"bearerAuth": []}]),
}


@pytest.mark.parametrize("change", sorted(BREAKING))
def test_a_change_that_breaks_a_client_is_caught(change):
    old = current()
    new = copy.deepcopy(old)
    BREAKING[change](new)

    assert breaking_changes(old, new), change


HARMLESS = {
    "a request enum widened to any string": (
        lambda d: schemas(d)["Checkout"]["properties"]["payment_method"].update(enum=["credit_card", "paypal"]),
        lambda d: schemas(d)["Checkout"]["properties"]["payment_method"].pop("enum"),
    ),
    "a response number narrowed to integer": (
        lambda d: schemas(d)["CartCount"]["properties"]["count"].update(type="number"),
        lambda d: schemas(d)["CartCount"]["properties"]["count"].update(type="integer"),
    ),
    "a request maxLength raised": (
        lambda d: None,
        lambda d: schemas(d)["Checkout"]["properties"]["payment_method"].update(maxLength=500),
    ),
}


@pytest.mark.parametrize("change", sorted(HARMLESS))
def test_a_change_no_client_notices_is_not_flagged(change):
    before, after = HARMLESS[change]
    old = current()
    before(old)
    new = copy.deepcopy(old)
    after(new)

    assert breaking_changes(old, new) == []
