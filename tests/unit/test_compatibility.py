"""The README's rule, checked: within contract v1, fields may be added, never
renamed or removed, and the same for paths and statuses. This release's Kafka
messages and OpenAPI document against the committed v1 baseline."""

from __future__ import annotations

import copy

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
