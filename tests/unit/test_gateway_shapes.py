"""The gateway's pure parts: who a bearer token names, and the original app's
response shapes and status codes made from cartflow's typed replies."""

from __future__ import annotations

import time

import jwt
import pytest

from contracts.reply_examples import REPLY_EXAMPLES
from services.gateway import original_api as api
from services.gateway.auth import NotAuthenticated, Verifier, development_secret

SECRET = "a-test-secret-long-enough-for-hs256-keys"
VERIFIER = Verifier(SECRET, "HS256", audience="storefront", issuer="https://id.example")


def token(**claims) -> str:
    base = {"sub": "ada", "exp": int(time.time()) + 60, "aud": "storefront", "iss": "https://id.example"}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


def test_a_valid_token_names_its_user():
    assert VERIFIER.user_of(f"Bearer {token()}") == "ada"
    assert VERIFIER.user_of(f"bearer {VERIFIER.issue('bob')}") == "bob"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic YWRhOnB3",
        "Bearer ",
        "Bearer not-a-token",
        f"Bearer {token(exp=int(time.time()) - 5)}",
        f"Bearer {token(aud='someone-else')}",
        f"Bearer {token(iss='https://evil.example')}",
        f"Bearer {token(sub=' padded ')}",
        f"Bearer {jwt.encode({'sub': 'ada', 'aud': 'storefront', 'iss': 'https://id.example'}, SECRET)}",
        f"Bearer {jwt.encode({'sub': 'ada', 'exp': int(time.time()) + 60}, 'another-secret-of-the-same-length-x')}",
        f"Bearer {jwt.encode({'sub': 'ada', 'exp': int(time.time()) + 60}, None, algorithm='none')}",
    ],
)
def test_no_token_a_bad_one_an_expired_one_or_a_foreign_one_is_refused(header):
    with pytest.raises(NotAuthenticated):
        VERIFIER.user_of(header)


def test_the_development_secret_is_made_once_and_readable_by_its_owner_only(tmp_path):
    first = development_secret(tmp_path)
    again = development_secret(tmp_path)

    assert first == again and len(first) >= 32
    assert (tmp_path / "gateway-development-secret").stat().st_mode & 0o077 == 0
    assert development_secret(tmp_path / "elsewhere", create=False) is None


def test_refusals_map_to_the_original_status_codes_and_error_format():
    reply = {"success": False, "error_code": "ITEM_NOT_FOUND", "error_message": "Cart item not found",
             "suggested_action": "Refresh", "cart_item_id": "i-1"}

    assert api.status_of(reply) == 404
    assert api.status_of({**reply, "error_code": "INSUFFICIENT_STOCK"}) == 400
    assert api.status_of({**reply, "error_code": "INTERNAL_ERROR"}) == 500
    assert api.status_of({"success": True}, created=True) == 201
    body = api.error_body(reply)
    assert body["success"] is False and body["error_message"] == body["error"] == "Cart item not found"
    assert body["cart_item_id"] == "i-1" and body["suggested_action"] == "Refresh"


def test_a_cart_is_shaped_as_the_original_lists_it():
    cart = api.cart_view(REPLY_EXAMPLES["GetCart"])

    (item,) = cart["items"]
    assert set(item) >= {"id", "product", "quantity", "size", "line_total", "is_available", "has_changed", "changes"}
    assert set(item["product"]) == {"id", "name", "current_price", "image"}
    assert set(cart) == {"items", "total_items", "total_amount", "has_changes", "unavailable_items"}


def test_add_and_update_answers_are_flat_as_the_originals():
    assert set(api.added(REPLY_EXAMPLES["AddItem"])) == {"message", "cart_item_id", "cart_summary"}
    assert set(api.updated(REPLY_EXAMPLES["UpdateItemQuantity"])) == {"message", "new_quantity", "new_subtotal"}
    assert api.count(REPLY_EXAMPLES["GetCartCount"])["count"] == REPLY_EXAMPLES["GetCartCount"]["total_items"]


def app_without_kafka(tmp_path, **settings):
    """The gateway app in process; nothing here reaches Kafka (no lifespan runs)."""
    from services.gateway.app import create_app
    from services.runtime.settings import Settings

    return create_app(Settings(kafka_bootstrap="127.0.0.1:1", data_dir=str(tmp_path), **settings))


async def test_without_a_token_nothing_else_about_the_request_is_told(tmp_path):
    import httpx

    app = app_without_kafka(tmp_path, gateway_jwt_secret=SECRET)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        invalid = await client.post("/api/carts/add/", json={"quantity": "lots"})
        simulate = await client.post("/api/payments/p/simulate/", json={"outcome": "succeeded"})

    assert invalid.status_code == simulate.status_code == 401
    assert invalid.json()["error_message"] == "Authentication credentials were not provided."


async def test_an_oversized_body_is_413_whether_or_not_it_announces_its_length(tmp_path):
    import httpx

    app = app_without_kafka(tmp_path, gateway_jwt_secret=SECRET, gateway_max_body_bytes=2048)

    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    plain = jwt.encode({"sub": "ada", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    auth = {"Authorization": f"Bearer {plain}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        announced = await client.post("/api/carts/add/", content=b"x" * 5000, headers=auth)
        streamed = await client.post("/api/carts/add/", content=chunks(), headers=auth)

    assert announced.status_code == streamed.status_code == 413
    assert streamed.json()["error_code"] == "REQUEST_TOO_LARGE"


def test_the_development_secret_never_serves_beyond_this_machine_and_a_short_secret_is_refused(tmp_path):
    from services.gateway.auth import verifier
    from services.runtime.settings import Settings

    with pytest.raises(RuntimeError, match="127.0.0.1 only"):
        verifier(Settings(gateway_host="0.0.0.0", data_dir=str(tmp_path)))
    with pytest.raises(RuntimeError, match="at least 32 bytes"):
        verifier(Settings(gateway_jwt_secret="short"))
    assert verifier(Settings(data_dir=str(tmp_path))).development is True


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/carts/add/", {"product_id": "p", "product_properties": {"note": "x" * 1100}}),
        ("/api/carts/add/", {"product_id": "p", "product_properties": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}),
        ("/api/cart/", {"product_id": "p", "product_properties": {"k" + str(i): i for i in range(51)}}),
        ("/api/carts/checkout/full/", {"shipping_address": "é" * 600}),
        ("/api/carts/checkout/single/", {"cart_item_id": "i", "shipping_address": {"street": "é" * 600}}),
        ("/api/carts/add/", {"product_id": "p", "product_properties": {"col\u0000or": "red"}}),
        ("/api/carts/add/", {"product_id": "p", "product_properties": {"$where": "1"}}),
        ("/api/carts/add/", {"product_id": "p", "product_properties": {"a.b": 1}}),
        ("/api/carts/checkout/full/", {"shipping_address": {"city": {"$ne": None}}}),
    ],
    ids=["over-1-KiB", "deeper-than-5", "51-keys", "600-e-acute", "600-e-acute-field", "nul-key", "dollar-key",
         "dotted-key", "nested-dollar-key"],
)
async def test_a_body_the_workers_would_refuse_is_answered_400_at_once_without_asking_them(tmp_path, path, body):
    import httpx

    from services.gateway.exchange import Exchange

    asked = []

    async def ask(self, topic, command, key):
        asked.append(command)
        return {"success": True, "data": {}}

    app = app_without_kafka(tmp_path, gateway_jwt_secret=SECRET, gateway_reply_timeout_seconds=0.5)
    plain = jwt.encode({"sub": "ada", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Exchange, "ask", ask)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            response = await client.post(path, json=body, headers={"Authorization": f"Bearer {plain}"})

    assert response.status_code == 400, response.text
    assert response.json()["success"] is False and response.json()["error_code"] == "INVALID_MESSAGE"
    assert asked == []
