"""The gateway's OpenAPI document: committed as docs/openapi.json and current,
typed for every path and status, in the original app's error format."""

from __future__ import annotations

import json
import re
from pathlib import Path

from services.gateway.openapi import ASKING, operations, published_document

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_committed_openapi_document_is_the_one_the_gateway_serves():
    assert DOCUMENT.read_text() == published_document(), "docs/openapi.json is stale: run `cartflow openapi`"


def test_every_operation_has_a_readable_id_a_typed_answer_an_example_and_every_error_it_can_send():
    doc = json.loads(published_document())
    seen = set()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            spec = operations()[operation["operationId"]]
            seen.add(operation["operationId"])
            statuses = set(operation["responses"])
            assert "422" not in statuses, (method, path)
            (success,) = [code for code in statuses if code.startswith("2")]
            body = operation["responses"][success]["content"]["application/json"]
            assert body["schema"].get("$ref", "").startswith("#/components/schemas/"), (method, path)
            assert body["example"], (method, path)
            assert {str(code) for code in spec.errors} <= statuses
            for code in spec.errors:
                assert operation["responses"][str(code)]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"}
            assert operation["security"] == ([] if spec.public else [{"bearerAuth": []}])
    assert {"addItem", "updateItemQuantity", "checkoutSingle", "getPayment", "receivePaymentWebhook"} <= seen
    assert set(ASKING) >= {400, 401, 404, 413, 503, 504}
    assert doc["openapi"].startswith("3.1")


def test_the_request_schemas_are_as_strict_as_the_gateway():
    schemas = json.loads(published_document())["components"]["schemas"]
    quantity = schemas["AddToCart"]["properties"]["quantity"]["anyOf"]

    assert quantity[0] == {"type": "integer", "minimum": 1, "maximum": 99}
    pattern = re.compile(quantity[1]["pattern"])
    assert [n for n in range(0, 1000) if pattern.fullmatch(str(n))] == list(range(1, 100))
    assert pattern.fullmatch("007") and not pattern.fullmatch("100") and not pattern.fullmatch("0")
    assert schemas["Problem"]["properties"]["success"] == {"const": False, "title": "Success", "type": "boolean"}


async def test_a_method_a_path_does_not_answer_is_405_naming_every_method_it_does(tmp_path):
    import httpx

    from services.gateway.app import create_app
    from services.runtime.settings import Settings

    app = create_app(Settings(kafka_bootstrap="127.0.0.1:1", data_dir=str(tmp_path),
                              gateway_jwt_secret="a-test-secret-long-enough-for-hs256-keys"))
    import time

    import jwt

    token = jwt.encode({"sub": "ada", "exp": int(time.time()) + 60}, "a-test-secret-long-enough-for-hs256-keys")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        cart = await client.request("OPTIONS", "/api/cart/", headers=auth)
        webhook = await client.request("PUT", "/api/payments/webhook/", headers=auth)

    assert cart.status_code == 405 and cart.headers["allow"] == "GET, POST"
    assert webhook.status_code == 405 and webhook.headers["allow"] == "POST"


def _app(tmp_path):
    from services.gateway.app import create_app
    from services.runtime.settings import Settings

    return create_app(Settings(kafka_bootstrap="127.0.0.1:1", data_dir=str(tmp_path),
                               gateway_jwt_secret="a-test-secret-long-enough-for-hs256-keys"))


def _bearer():
    import time

    import jwt

    token = jwt.encode({"sub": "ada", "exp": int(time.time()) + 60}, "a-test-secret-long-enough-for-hs256-keys")
    return {"Authorization": f"Bearer {token}"}


async def test_a_quantity_beyond_the_documented_bounds_is_refused_at_once_without_asking_the_workers(tmp_path, monkeypatch):
    import httpx

    from services.gateway.exchange import Exchange

    asked = []

    async def ask(exchange, topic, command, key):
        asked.append(command)
        return {"success": False, "error_code": "ITEM_NOT_FOUND"}

    monkeypatch.setattr(Exchange, "ask", ask)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(tmp_path)), base_url="http://gw") as client:
        answers = [await client.post("/api/carts/add/", json={"product_id": "p", "quantity": q}, headers=_bearer())
                   for q in (0, 100, "100")]
        fine = await client.post("/api/carts/add/", json={"product_id": "p", "quantity": 99.0}, headers=_bearer())

    assert [a.status_code for a in answers] == [400, 400, 400]
    assert {a.json()["error_code"] for a in answers} == {"INVALID_QUANTITY"}
    assert fine.status_code == 404 and [c["quantity"] for c in asked] == [99]


async def test_an_unexpected_failure_is_a_500_in_the_error_format_with_the_security_headers(tmp_path, monkeypatch):
    import httpx

    from services.gateway.exchange import Exchange

    async def broken(exchange, topic, command, key):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Exchange, "ask", broken)
    transport = httpx.ASGITransport(app=_app(tmp_path), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        failed = await client.get("/api/carts/", headers=_bearer())

    assert failed.status_code == 500 and failed.json()["error_code"] == "INTERNAL_ERROR"
    assert "frame-ancestors 'none'" in failed.headers["content-security-policy"]
    assert failed.headers["cache-control"] == "no-store"


async def test_the_webhook_s_path_is_not_taken_for_a_payment_id(tmp_path):
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(tmp_path)), base_url="http://gw") as client:
        looked_up = await client.get("/api/payments/webhook/", headers=_bearer())

    assert looked_up.status_code == 405 and looked_up.headers["allow"] == "POST"


def test_free_form_fields_follow_the_key_rule_at_every_depth_in_the_document():
    doc = json.loads(published_document())
    schemas = doc["components"]["schemas"]
    deepest = schemas["FreeFormValue1"]["anyOf"][-1]

    assert schemas["AddToCart"]["properties"]["product_properties"]["anyOf"][0] == {
        "$ref": "#/components/schemas/FreeFormObject"}
    assert deepest["propertyNames"] == schemas["FreeFormObject"]["propertyNames"]
    assert schemas["FreeFormValue0"]["anyOf"] == [{"type": t} for t in ("string", "number", "boolean", "null")]
