"""Trust at the edges on the real broker and workers: a payment comes in only
as a Stripe-signed event through the gateway's webhook, and a gateway holds
when clients are slow on purpose."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid

import httpx
import jwt
import pytest
import pytest_asyncio

from harness.deployment import running
from harness.support import order_events, stocked

pytestmark = pytest.mark.integration

SECRET = "test-gateway-secret-" + uuid.uuid4().hex
WEBHOOK_SECRET = "whsec_" + uuid.uuid4().hex


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode({"sub": user, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")}


def signed(event: dict) -> tuple[bytes, dict[str, str]]:
    """Signed as Stripe documents it: ``t=<unix time>,v1=<HMAC-SHA256(secret, "<t>.<body>")>``."""
    payload = json.dumps(event).encode()
    timestamp = int(time.time())
    signature = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, {"Stripe-Signature": f"t={timestamp},v1={signature}", "Content-Type": "application/json"}


def succeeded(payment_id: str, cents: int, event_id: str) -> dict:
    intent = {"id": "pi_" + event_id, "object": "payment_intent", "amount": cents, "amount_received": cents,
              "currency": "usd", "latest_charge": "ch_" + event_id, "metadata": {"payment_id": payment_id}}
    return {"id": event_id, "object": "event", "type": "payment_intent.succeeded", "data": {"object": intent}}


@pytest_asyncio.fixture(scope="module")
async def shop(backends):
    async with running(
        backends,
        CARTFLOW_GATEWAY_JWT_SECRET=SECRET,
        CARTFLOW_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        CARTFLOW_GATEWAY_HEADER_TIMEOUT_SECONDS="1",
        CARTFLOW_GATEWAY_BODY_TIMEOUT_SECONDS="1",
    ) as deployment:
        url = await deployment.gateway()
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield deployment, client, url


async def test_a_stripe_signed_event_pays_a_checkout_and_a_tampered_or_repeated_one_changes_nothing(shop):
    deployment, http, _ = shop
    mug = await stocked(deployment, 5, "12.50", "Mug")
    auth = bearer(f"buyer-{uuid.uuid4().hex[:8]}")
    added = await http.post("/api/carts/add/", json={"product_id": mug, "quantity": 2}, headers=auth)
    checkout = (await http.post("/api/carts/checkout/single/", json={"cart_item_id": added.json()["cart_item_id"]},
                                headers=auth)).json()
    payment_id = checkout["payment_id"]
    event = succeeded(payment_id, 2500, f"evt_{uuid.uuid4().hex[:12]}")

    payload, headers = signed(event)
    tampered = await http.post("/api/payments/webhook/", content=payload.replace(payment_id.encode(), b"pay-other"),
                               headers=headers)
    forged = await http.post("/api/payments/webhook/", content=payload, headers={"Stripe-Signature": "t=1,v1=00"})
    still = (await http.get(f"/api/payments/{payment_id}/", headers=auth)).json()
    paid = await http.post("/api/payments/webhook/", content=payload, headers=headers)
    await order_events(deployment, payment_id, "OrderPaid")
    delivered_again, headers_again = signed(event)  # Stripe's retry: the same event, signed anew
    again = await http.post("/api/payments/webhook/", content=delivered_again, headers=headers_again)
    status = (await http.get(f"/api/payments/{payment_id}/", headers=auth)).json()
    # A second, real charge of the same checkout, behind the repeat on its partition: once it is
    # refunded, a refund the repeat would have caused has been published before it.
    marker = succeeded(payment_id, 2500, f"evt_{uuid.uuid4().hex[:12]}")
    marked = await http.post("/api/payments/webhook/", content=signed(marker)[0], headers=signed(marker)[1])
    (refund,) = await order_events(deployment, payment_id, "PaymentRefundRequired")
    events = (await deployment.tap("order.events")).json_matching(payment_id=payment_id)

    assert checkout["total_amount"] == "25.00"
    assert tampered.status_code == forged.status_code == 400 and still["state"] == "awaiting_payment"
    assert paid.status_code == 200 and paid.json()["published"] == "PaymentSucceeded"
    assert again.status_code == 200 and status["state"] == "paid"
    assert [e["type"] for e in events].count("OrderPaid") == 1
    assert marked.status_code == 200 and refund["gateway_reference"] == "ch_" + marker["id"]
    assert [e["gateway_reference"] for e in events if e["type"] == "PaymentRefundRequired"] == [refund["gateway_reference"]]
    assert not [e for e in events if e["type"] == "PaymentAmountMismatch"]


async def test_an_event_for_a_payment_id_no_checkout_has_is_404_and_publishes_nothing(shop):
    deployment, http, _ = shop
    payment_id = f"pay-nobody-{uuid.uuid4().hex[:8]}"
    payload, headers = signed(succeeded(payment_id, 100, f"evt_{uuid.uuid4().hex[:12]}"))
    payments = await deployment.tap("payment.events")

    answer = await http.post("/api/payments/webhook/", content=payload, headers=headers)

    assert answer.status_code == 404 and answer.json()["error_code"] == "CHECKOUT_NOT_FOUND"
    assert payments.json_matching(payment_id=payment_id) == []


async def open_slow(port: int, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    return reader, writer


async def test_slow_clients_are_disconnected_and_normal_requests_go_on(shop):
    _, http, url = shop
    port = int(url.rsplit(":", 1)[1])
    token = bearer("slow")["Authorization"]
    half_headers = b"GET /api/carts/count/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bea"
    one_byte_of_body = (
        f"POST /api/carts/add/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{"
    ).encode()
    no_token = b"POST /api/carts/add/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 60000\r\n\r\n{"
    slow = [await open_slow(port, half_headers) for _ in range(20)]
    slow += [await open_slow(port, one_byte_of_body) for _ in range(20)]
    refused = await open_slow(port, no_token)

    normal = await http.get("/api/carts/count/", headers=bearer("quick"))
    answers = []
    async with asyncio.timeout(30):
        for reader, _ in slow:
            answers.append(await reader.read())  # until the gateway closes the connection
        refusal = await refused[0].read()
    for _, writer in [*slow, refused]:
        writer.close()

    assert normal.status_code == 200 and normal.json()["count"] == 0
    assert all(answer == b"" for answer in answers[:20]), "half-sent headers are cut off"
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers[20:]), "a trickling body is answered 408"
    assert refusal.startswith(b"HTTP/1.1 401"), "no token: refused before the body"
