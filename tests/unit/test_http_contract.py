"""The gateway's OpenAPI document: committed as docs/openapi.json and current,
typed for every path and status, in the original app's error format."""

from __future__ import annotations

import json
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
    assert quantity[1]["pattern"].startswith("^0*(?:99|98")
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
