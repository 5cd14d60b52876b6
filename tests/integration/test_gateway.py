"""The HTTP gateway as the original carts app's clients use it: httpx against
gateway processes on the real broker and workers, with bearer tokens, every
path, its status codes and error format, idempotent retries, a 504 then its
retry, and two gateways side by side."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import jwt
import pytest
import pytest_asyncio

from harness.deployment import running
from harness.support import stocked

pytestmark = pytest.mark.integration

SECRET = "test-gateway-secret-" + uuid.uuid4().hex


def token(user: str, *, secret: str = SECRET, expires_in: int = 600) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + expires_in}, secret, algorithm="HS256")


def bearer(user: str, **options) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, **options)}"}


def buyer() -> str:
    return f"buyer-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="module")
async def shop(backends):
    async with running(
        backends,
        CARTFLOW_GATEWAY_JWT_SECRET=SECRET,
        CARTFLOW_PAYMENT_SIMULATOR="true",
        CARTFLOW_CART_STOCK_RESERVATION_ENABLED="true",
    ) as deployment:
        url = await deployment.gateway()
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield deployment, client


async def test_a_client_of_the_original_api_adds_updates_validates_checks_out_and_pays(shop):
    deployment, http = shop
    shirt, shoe = await stocked(deployment, 10, "74.99", "T-Shirt"), await stocked(deployment, 10, "149.99", "Jeans")
    auth = bearer(buyer())

    added = await http.post("/api/carts/add/", json={"product_id": shirt, "quantity": 2, "size": None,
                                                     "product_properties": {"color": "red"}}, headers=auth)
    await http.post("/api/carts/add/", json={"product_id": shoe, "quantity": 1}, headers=auth)
    count = await http.get("/api/carts/count/", headers=auth)
    item_id = added.json()["cart_item_id"]
    updated = await http.put(f"/api/carts/update/{item_id}/", json={"quantity": 3}, headers=auth)
    cart = await http.get("/api/carts/", headers=auth)
    validated = await http.post("/api/carts/validate/", json={"cart_item_ids": [item_id]}, headers=auth)
    single = await http.post("/api/carts/checkout/single/", json={"cart_item_id": item_id, "payment_method": "credit_card",
                             "gateway_name": "stripe", "shipping_address": {"city": "Khartoum"}}, headers=auth)

    assert added.status_code == 201
    assert added.json()["message"] == "Item added to cart successfully"
    assert added.json()["cart_summary"] == {"total_items": 2, "total_price": "149.98"}
    assert count.json()["count"] == 3
    assert updated.json() == {"message": "Cart item updated successfully", "new_quantity": 3, "new_subtotal": "224.97"}
    body = cart.json()
    assert [item["product"]["name"] for item in body["items"]] == ["Jeans", "T-Shirt"], "newest first"
    assert body["total_amount"] == "374.96" and body["total_items"] == 4
    assert validated.json()["is_valid"] is True and validated.json()["validation_details"][0]["cart_item_id"] == item_id
    assert single.status_code == 201
    checkout = single.json()
    assert checkout["checkout_type"] == "single_item" and checkout["order"]["status"] == "under_paying"
    assert 0 < checkout["time_remaining_seconds"] <= 900

    payment_id = checkout["payment_id"]
    status = await http.get(f"/api/payments/{payment_id}/", headers=auth)
    paid = await http.post(f"/api/payments/{payment_id}/simulate/", json={"outcome": "succeeded"}, headers=auth)
    async with asyncio.timeout(60):
        while (await http.get(f"/api/payments/{payment_id}/", headers=auth)).json()["state"] != "paid":
            await asyncio.sleep(0.2)
    rest = await http.post("/api/carts/checkout/full/", json={}, headers=auth)

    assert status.json()["state"] == "awaiting_payment" and paid.status_code == 202
    assert rest.status_code == 201 and rest.json()["checkout_type"] == "full_cart"
    assert rest.json()["order_count"] == 1 and rest.json()["total_amount"] == "149.99"
    assert (await http.get("/api/carts/count/", headers=auth)).json()["count"] == 0


async def test_the_viewset_paths_of_the_original_work_too(shop):
    deployment, http = shop
    pid = await stocked(deployment, 5, "10.00", "Mug")
    auth = bearer(buyer())

    created = await http.post("/api/cart/", json={"product_id": pid, "quantity": 1}, headers=auth)
    item_id = created.json()["id"]
    patched = await http.patch("/api/cart/update_item/", json={"cart_item_id": item_id, "quantity": 2}, headers=auth)
    checked = await http.post("/api/cart/check_changes/", headers=auth)
    accepted = await http.post("/api/cart/accept_changes/", json={}, headers=auth)
    prepared = await http.post("/api/cart/prepare_checkout/", headers=auth)
    listed = await http.get("/api/cart/", headers=auth)
    removed = await http.request("DELETE", "/api/cart/remove_item/", json={"cart_item_id": item_id}, headers=auth)
    cleared = await http.delete("/api/cart/clear/", headers=auth)

    assert created.status_code == 201 and created.json()["product"]["current_price"] == "10.00"
    assert patched.json()["new_quantity"] == 2
    assert checked.json()["has_changes"] is False and accepted.status_code == 200
    assert prepared.json()["is_valid"] is True and listed.json()["total_amount"] == "20.00"
    assert removed.status_code == 200 and removed.json()["cart_summary"]["total_items"] == 0
    assert cleared.status_code == 200


async def test_refusals_come_in_the_original_error_format_with_its_status_codes(shop):
    deployment, http = shop
    pid = await stocked(deployment, 5, "10.00", "Lamp")
    owner, other = buyer(), buyer()
    mine = (await http.post("/api/carts/add/", json={"product_id": pid, "quantity": 1}, headers=bearer(owner))).json()

    unknown = await http.post("/api/carts/add/", json={"product_id": "no-such-product"}, headers=bearer(owner))
    too_many = await http.post("/api/carts/add/", json={"product_id": pid, "quantity": 10}, headers=bearer(other))
    not_yours = await http.put(f"/api/carts/update/{mine['cart_item_id']}/", json={"quantity": 2}, headers=bearer(other))
    empty = await http.post("/api/carts/validate/", headers=bearer(other))

    assert unknown.status_code == 404 and unknown.json()["error_code"] == "PRODUCT_INACTIVE"
    assert unknown.json()["success"] is False and unknown.json()["error_message"] == "Product not found"
    assert too_many.status_code == 400 and too_many.json()["error_code"] == "INSUFFICIENT_STOCK"
    assert too_many.json()["error_message"] == "Only 4 items available (requested 10)", "one is in the owner's cart"
    assert too_many.json()["available_quantity"] == 4 and too_many.json()["suggested_action"]
    assert not_yours.status_code == 404 and not_yours.json()["error_message"] == "Cart item not found"
    assert empty.status_code == 400 and empty.json()["error_message"] == "Cart is empty"


async def test_only_a_valid_token_gets_in_and_its_sub_is_the_user(shop):
    deployment, http = shop
    pid = await stocked(deployment, 5, "3.00", "Pen")
    user = buyer()

    missing = await http.get("/api/carts/")
    expired = await http.get("/api/carts/", headers=bearer(user, expires_in=-60))
    forged = await http.get("/api/carts/", headers=bearer(user, secret="not-the-secret-but-as-long-as-a-real-one-is"))
    garbage = await http.get("/api/carts/", headers={"Authorization": "Bearer a.b.c"})
    await http.post("/api/carts/add/", json={"product_id": pid, "user_id": "someone-else"}, headers=bearer(user))
    own = await http.get("/api/carts/?user_id=someone-else", headers=bearer(user))
    theirs = await http.get("/api/carts/", headers=bearer("someone-else"))

    for response in (missing, expired, forged, garbage):
        assert response.status_code == 401 and response.json()["success"] is False
        assert response.json()["error_code"] == "NOT_AUTHENTICATED" and "Traceback" not in response.text
    assert own.json()["total_items"] == 1, "a user_id in a body or query is ignored"
    assert theirs.json()["total_items"] == 0


async def test_bad_requests_are_answered_in_the_error_format_and_change_nothing(shop):
    deployment, http = shop
    auth = bearer(buyer())
    headers = {**auth, "Content-Type": "application/json"}

    malformed = await http.post("/api/carts/add/", content=b"{not json", headers=headers)
    wrong_type = await http.post("/api/carts/add/", json={"product_id": {"$gt": ""}, "quantity": "many"}, headers=auth)
    huge = await http.post("/api/carts/add/", content=b'{"product_id": "' + b"x" * (1 << 20) + b'"}', headers=headers)
    bad_key = await http.post("/api/carts/add/", json={"product_id": "p"}, headers={**auth, "Idempotency-Key": "k" * 300})
    unknown_path = await http.get("/api/nothing/", headers=auth)

    assert malformed.status_code == 400 and malformed.json()["error_code"] == "INVALID_MESSAGE"
    assert wrong_type.status_code == 400 and "quantity" in wrong_type.json()["error_message"]
    assert huge.status_code == 413 and huge.json()["error_code"] == "REQUEST_TOO_LARGE"
    assert bad_key.status_code == 400
    assert unknown_path.status_code == 404 and unknown_path.json()["success"] is False
    assert (await http.get("/api/carts/count/", headers=auth)).json()["count"] == 0


async def test_a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_changes_nothing(shop):
    deployment, http = shop
    pid = await stocked(deployment, 9, "2.00", "Cup")
    auth = {**bearer(buyer()), "Idempotency-Key": f"add-{uuid.uuid4()}"}

    first = await http.post("/api/carts/add/", json={"product_id": pid, "quantity": 2}, headers=auth)
    again = await http.post("/api/carts/add/", json={"product_id": pid, "quantity": 2}, headers=auth)

    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.json()["cart_summary"]["total_items"] == 2
    assert (await http.get("/api/carts/count/", headers=auth)).json()["count"] == 2


async def test_no_answer_in_time_is_a_504_whose_key_gets_the_answer_once_it_exists(shop):
    deployment, http = shop
    pid = await stocked(deployment, 9, "2.00", "Bowl")
    impatient = await deployment.gateway("gateway-impatient", CARTFLOW_GATEWAY_REPLY_TIMEOUT_SECONDS="0.001")
    auth = bearer(buyer())

    async with httpx.AsyncClient(base_url=impatient, timeout=30) as hurried:
        timed_out = await hurried.post("/api/carts/add/", json={"product_id": pid, "quantity": 3}, headers=auth)
    key = timed_out.json()["idempotency_key"]
    retried = await http.post("/api/carts/add/", json={"product_id": pid, "quantity": 3},
                              headers={**auth, "Idempotency-Key": key})

    assert timed_out.status_code == 504 and timed_out.headers["Idempotency-Key"] == key
    assert retried.status_code == 201 and retried.json()["cart_summary"]["total_items"] == 3
    assert (await http.get("/api/carts/count/", headers=auth)).json()["count"] == 3, "applied once"


async def test_two_gateways_side_by_side_answer_each_request_with_its_own_reply(shop):
    deployment, http = shop
    pid = await stocked(deployment, 500, "1.00", "Clip")
    second = await deployment.gateway("gateway-second")
    users = [buyer() for _ in range(12)]

    async with httpx.AsyncClient(base_url=second, timeout=30) as other:
        clients = [http, other]
        responses = await asyncio.gather(*(
            clients[n % 2].post("/api/carts/add/", json={"product_id": pid, "quantity": n + 1}, headers=bearer(user))
            for n, user in enumerate(users)
        ))

    for n, response in enumerate(responses):
        assert response.status_code == 201, response.text
        assert response.json()["cart_summary"]["total_items"] == n + 1


async def test_the_catalog_and_the_api_documentation_are_served(shop):
    deployment, http = shop
    pid = await stocked(deployment, 4, "6.50", "Candle")

    products = await http.get("/api/products/?limit=50", headers=bearer(buyer()))
    docs = await http.get("/docs")
    schema = (await http.get("/openapi.json")).json()

    assert pid in [product["product_id"] for product in products.json()["products"]]
    assert docs.status_code == 200
    assert "/api/carts/checkout/single/" in schema["paths"] and "/api/cart/update_item/" in schema["paths"]


async def test_a_body_beyond_the_workers_limits_is_answered_400_at_once_and_changes_nothing(shop):
    deployment, http = shop
    pid = await stocked(deployment, 5, "10.00", "Scarf")
    auth = bearer(buyer())

    properties = await http.post("/api/carts/add/", json={"product_id": pid, "product_properties": {"note": "x" * 1100}},
                                 headers=auth)
    nul_key = await http.post("/api/carts/add/", json={"product_id": pid, "product_properties": {"col\u0000or": "red"}},
                              headers=auth)
    await http.post("/api/carts/add/", json={"product_id": pid}, headers=auth)
    address = await http.post("/api/carts/checkout/full/", json={"shipping_address": "\u00e9" * 600}, headers=auth)

    for response in (properties, nul_key, address):
        assert response.status_code == 400 and response.json()["error_code"] == "INVALID_MESSAGE", response.text
    assert (await http.get("/api/carts/count/", headers=auth)).json()["count"] == 1
