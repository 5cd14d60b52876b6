"""Trust at the edges: what the gateway and the contract refuse from a client
or a producer that means harm, without servers (the gateway's app on an ASGI
transport, its exchange on a stand-in broker)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from decimal import Decimal
from types import SimpleNamespace

import httpx
import jwt
import pytest
from pydantic import TypeAdapter, ValidationError

from contracts.envelope import Identifier, is_identifier
from services.gateway import payments
from services.gateway.auth import NotAuthenticated, Verifier
from services.gateway.exchange import Exchange
from services.runtime.settings import Settings

SECRET = "a-test-secret-long-enough-for-hs256-keys"
WEBHOOK_SECRET = "whsec_test_" + "k" * 24


def bearer(user: str = "ada") -> dict[str, str]:
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def gateway_app(tmp_path, **settings):
    from services.gateway.app import create_app

    base = {"kafka_bootstrap": "127.0.0.1:1", "data_dir": str(tmp_path), "gateway_jwt_secret": SECRET}
    return create_app(Settings(**{**base, **settings}))


class Kafka:
    """What the gateway would have sent, and the replies the workers would give."""

    def __init__(self, answer=None) -> None:
        self.asked: list[tuple[str, dict]] = []
        self.published: list[tuple[str, dict]] = []
        self.answer = answer or (lambda command: {"success": False, "error_code": "ITEM_NOT_FOUND"})

    def patch(self, monkeypatch) -> Kafka:
        async def ask(exchange, topic, command, key):
            self.asked.append((topic, command))
            return self.answer(command)

        async def publish(exchange, topic, message, key):
            self.published.append((topic, message))

        monkeypatch.setattr(Exchange, "ask", ask)
        monkeypatch.setattr(Exchange, "publish", publish)
        return self


def client(app, host: str = "gw") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


# --- 7. one identifier rule --------------------------------------------------------------


@pytest.mark.parametrize("value", ["ada\n", "\ufeffada", "ada\nbob", "a\x00b", "a\tb", "a\x7fb", "a\x85b", "a\u2028b", " ada", "x" * 201, ""])
def test_an_identifier_with_a_control_character_nul_or_outer_space_is_refused_alike_everywhere(value):
    with pytest.raises(ValidationError):
        TypeAdapter(Identifier).validate_python(value)
    assert not is_identifier(value)


def test_a_token_whose_sub_holds_a_line_break_or_a_nul_is_refused_at_the_door():
    verifier = Verifier(SECRET, "HS256")
    for sub in ("ada\nbob", "ada\x00", "ada\x1b[31m"):
        token = jwt.encode({"sub": sub, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
        with pytest.raises(NotAuthenticated):
            verifier.user_of(f"Bearer {token}")


async def test_a_path_id_with_a_control_character_is_not_found_without_asking_the_workers(tmp_path, monkeypatch):
    kafka = Kafka().patch(monkeypatch)
    async with client(gateway_app(tmp_path)) as http:
        update = await http.put("/api/carts/update/a%0Ab/", json={"quantity": 1}, headers=bearer())
        remove = await http.delete("/api/carts/remove/a%00b/", headers=bearer())
        payment = await http.get("/api/payments/p%1B1/", headers=bearer())

    assert (update.status_code, remove.status_code, payment.status_code) == (404, 404, 404)
    assert update.json()["error_code"] == "ITEM_NOT_FOUND" and payment.json()["error_code"] == "CHECKOUT_NOT_FOUND"
    assert kafka.asked == []


# --- 4. the idempotency scope includes the query string ----------------------------------


async def test_one_idempotency_key_on_two_query_strings_is_two_requests(tmp_path, monkeypatch):
    kafka = Kafka().patch(monkeypatch)
    headers = {**bearer(), "Idempotency-Key": "k-1"}
    async with client(gateway_app(tmp_path)) as http:
        await http.delete("/api/cart/remove_item/?cart_item_id=A", headers=headers)
        await http.delete("/api/cart/remove_item/?cart_item_id=B", headers=headers)
        await http.delete("/api/cart/remove_item/?cart_item_id=B", headers=headers)

    (_, first), (_, second), (_, again) = kafka.asked
    assert (first["item_id"], second["item_id"]) == ("A", "B")
    assert first["message_id"] != second["message_id"], "B's request would be answered with A's reply"
    assert second["message_id"] == again["message_id"], "a retry of B is still B's retry"


# --- 6. the development login ------------------------------------------------------------


async def test_the_development_login_answers_a_loopback_host_only(tmp_path):
    app = gateway_app(tmp_path, gateway_jwt_secret=None)
    async with client(app, host="127.0.0.1:8000") as local, client(app, host="attacker.example") as rebound:
        from_here = await local.post("/api/dev/login/", json={"user_id": "ada"})
        from_there = await rebound.post("/api/dev/login/", json={"user_id": "ada"})
        proxied = await local.post("/api/dev/login/", json={"user_id": "ada"}, headers={"Host": "shop.example:8000"})

    assert from_here.status_code == 200 and from_here.json()["token"]
    assert from_there.status_code == proxied.status_code == 403
    assert "token" not in from_there.json()


async def test_the_development_login_refuses_a_client_beyond_this_machine(tmp_path):
    app = gateway_app(tmp_path, gateway_jwt_secret=None)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000") as http:
        response = await http.post("/api/dev/login/", json={"user_id": "ada"})

    assert response.status_code == 403


# --- 8. security headers -----------------------------------------------------------------


async def test_every_page_and_answer_carries_a_strict_content_security_policy(tmp_path):
    async with client(gateway_app(tmp_path)) as http:
        page, api, script = await http.get("/"), await http.get("/api/carts/"), await http.get("/static/app.js")

    for response in (page, api, script):
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "'unsafe-inline'" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert api.status_code == 401 and api.headers["cache-control"] == "no-store"


async def test_the_cart_page_the_original_front_end_returns_to_is_served(tmp_path):
    async with client(gateway_app(tmp_path)) as http:
        page = await http.get("/cart/")

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="cart-section"' in page.text


def test_the_storefront_pages_hold_no_inline_script_the_policy_would_block():
    import re
    from pathlib import Path

    static = Path(__file__).resolve().parents[2] / "services" / "gateway" / "static"
    for page in static.glob("*.html"):
        html = page.read_text()
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], page.name
        assert not re.search(r"\son[a-z]+\s*=", html), f"{page.name} has an inline event handler"
        assert "style=" not in html


# --- 5. slow and many clients: the token before the body, the body in time ---------------


async def test_a_request_without_a_token_is_refused_before_its_body_is_read(tmp_path):
    app = gateway_app(tmp_path)
    sent: list[dict] = []
    read = asyncio.Event()

    async def receive():
        read.set()
        await asyncio.Event().wait()  # a body that never comes

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/carts/add/", "raw_path": b"/api/carts/add/",
             "query_string": b"", "headers": [(b"content-length", b"60000"), (b"host", b"gw")], "state": {},
             "client": ("127.0.0.1", 1), "server": ("gw", 80), "scheme": "http", "http_version": "1.1",
             "root_path": "", "asgi": {"version": "3.0"}}
    async with asyncio.timeout(5):
        await app(scope, receive, send)

    assert sent[0]["status"] == 401 and not read.is_set()


async def test_a_body_that_trickles_in_is_answered_408_and_its_connection_closed(tmp_path, monkeypatch):
    kafka = Kafka().patch(monkeypatch)
    app = gateway_app(tmp_path, gateway_body_timeout_seconds=0.3)
    sent: list[dict] = []
    chunks = [{"type": "http.request", "body": b"{", "more_body": True}]

    async def receive():
        if chunks:
            return chunks.pop()
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    headers = [(b"content-length", b"60000"), (b"host", b"gw"),
               (b"authorization", bearer()["Authorization"].encode())]
    scope = {"type": "http", "method": "POST", "path": "/api/carts/add/", "raw_path": b"/api/carts/add/",
             "query_string": b"", "headers": headers, "state": {}, "client": ("127.0.0.1", 1),
             "server": ("gw", 80), "scheme": "http", "http_version": "1.1", "root_path": "",
             "asgi": {"version": "3.0"}}
    async with asyncio.timeout(5):
        await app(scope, receive, send)

    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    assert kafka.asked == []


# --- 3. the payment simulator ------------------------------------------------------------


def test_the_payment_simulator_is_off_unless_asked_for_and_never_beyond_loopback(tmp_path):
    assert Settings().payment_simulator is False
    with pytest.raises(RuntimeError, match="loopback"):
        gateway_app(tmp_path, payment_simulator=True, gateway_host="0.0.0.0")


def test_cartflow_up_no_longer_turns_the_simulator_on_by_itself():
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "services" / "ops" / "commands" / "run.py").read_text()
    assert 'CARTFLOW_PAYMENT_SIMULATOR"] = "true"' not in source


async def test_two_clicks_on_pay_with_one_idempotency_key_are_one_payment(tmp_path, monkeypatch):
    checkout = {"payment_id": "pay-1", "total_amount": "12.50", "state": "awaiting_payment"}
    kafka = Kafka(lambda command: {"success": True, "data": checkout}).patch(monkeypatch)
    async with client(gateway_app(tmp_path, payment_simulator=True)) as http:
        for key in ("click-1", "click-1", "click-2"):
            await http.post("/api/payments/pay-1/simulate/", json={"outcome": "succeeded"},
                            headers={**bearer(), "Idempotency-Key": key})

    first, again, other = (message for _, message in kafka.published)
    assert first["message_id"] == again["message_id"] and first["gateway_reference"] == again["gateway_reference"]
    assert other["message_id"] != first["message_id"]


# --- 9. the exchange takes only the reply to its own command -----------------------------


async def test_a_record_on_the_reply_topic_with_a_seen_correlation_id_answers_no_request():
    settings = Settings(kafka_bootstrap="127.0.0.1:1", gateway_reply_timeout_seconds=5)
    published: list[dict] = []
    exchange: Exchange

    async def publish(body, topic, key):
        message = json.loads(body)
        published.append(message)
        if message.get("type") == "GatewayPing":
            await exchange._on_reply(SimpleNamespace(body=body))

    router = SimpleNamespace(subscriber=lambda *a, **k: (lambda handler: handler), broker=SimpleNamespace(publish=publish))
    exchange = Exchange(settings, router)
    command = {"type": "GetCart", "message_id": "m-1", "user_id": "ada"}
    asking = asyncio.create_task(exchange.ask("cart.commands", command, "ada"))
    while not any(m.get("message_id") == "m-1" for m in published):
        await asyncio.sleep(0.01)

    def reply(**fields):
        return SimpleNamespace(body=json.dumps({"type": "CommandResult", "correlation_id": "m-1", **fields}).encode())

    await exchange._on_reply(reply(command_message_id="m-1", user_id="mallory", success=True, data={"forged": 1}))
    await exchange._on_reply(reply(command_message_id="other", user_id="ada", success=True, data={"forged": 2}))
    await asyncio.sleep(0.05)
    assert not asking.done(), "a forged reply was handed to the request"
    await exchange._on_reply(reply(command_message_id="m-1", user_id="ada", success=True, data={"cart": "real"}))

    assert (await asking)["data"] == {"cart": "real"}


# --- 1. payments come from the payment provider only: the Stripe webhook -----------------


def stripe_event(event_id="evt_1", kind="payment_intent.succeeded", **intent):
    body = {"id": "pi_1", "object": "payment_intent", "amount": 1250, "amount_received": 1250, "currency": "usd",
            "latest_charge": "ch_1", "metadata": {"payment_id": "pay-1"}, **intent}
    return {"id": event_id, "object": "event", "type": kind, "data": {"object": body}}


def signed(event: dict, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    """An event signed as Stripe documents it: v1 = HMAC-SHA256(secret, "<t>.<body>")."""
    payload = json.dumps(event).encode()
    timestamp = int(time.time()) if at is None else at
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, {"Stripe-Signature": f"t={timestamp},v1={signature}", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    "currency, minor, amount",
    [("usd", 22497, "224.97"), ("jpy", 500, "500"), ("bhd", 5120, "5.12"), ("eur", 0, "0")],
)
def test_a_succeeded_intent_is_its_amount_received_in_the_currency_s_units(currency, minor, amount):
    outcome = payments.read(stripe_event(currency=currency, amount_received=minor), currency=currency)

    assert isinstance(outcome, payments.Outcome) and outcome.amount == Decimal(amount)
    assert (outcome.payment_id, outcome.charge) == ("pay-1", "ch_1")


def test_events_that_are_no_payment_outcome_of_a_checkout_are_ignored_or_refused():
    assert isinstance(payments.read(stripe_event(kind="charge.refunded"), currency="usd"), payments.Ignored)
    assert isinstance(payments.read(stripe_event(metadata={}), currency="usd"), payments.Ignored)
    assert isinstance(payments.read(stripe_event(currency="eur"), currency="usd"), payments.Unreadable)
    assert isinstance(payments.read(stripe_event(currency="bhd", amount_received=5125), currency="bhd"), payments.Unreadable)
    assert isinstance(payments.read(stripe_event(metadata={"payment_id": "a\nb"}), currency="usd"), payments.Unreadable)
    assert isinstance(payments.read(stripe_event(amount_received="1250"), currency="usd"), payments.Unreadable)


def test_one_event_delivered_twice_is_one_message_and_one_charge():
    first = payments.read(stripe_event(), currency="usd").message(payments_now())
    again = payments.read(stripe_event(), currency="usd").message(payments_now())

    assert first.message_id == again.message_id and first.gateway_reference == again.gateway_reference == "ch_1"


def payments_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def known_payment(command):
    if command["payment_id"] == "pay-1":
        return {"success": True, "command_message_id": command["message_id"],
                "data": {"payment_id": "pay-1", "state": "awaiting_payment"}}
    return {"success": False, "error_code": "CHECKOUT_NOT_FOUND"}


async def test_only_a_correctly_signed_fresh_event_for_a_known_checkout_is_published(tmp_path, monkeypatch):
    kafka = Kafka(known_payment).patch(monkeypatch)
    app = gateway_app(tmp_path, stripe_webhook_secret=WEBHOOK_SECRET)
    payload, headers = signed(stripe_event())
    tampered = payload.replace(b"1250", b"9999")

    async def deliver(http, event, **signing):
        body, signature = signed(event, **signing)
        return await http.post("/api/payments/webhook/", content=body, headers=signature)

    async with client(app) as http:
        good = await http.post("/api/payments/webhook/", content=payload, headers=headers)
        forged = await http.post("/api/payments/webhook/", content=tampered, headers=headers)
        foreign = await deliver(http, stripe_event(), secret="whsec_other")
        stale = await deliver(http, stripe_event(), at=int(time.time()) - 3600)
        ahead = await deliver(http, stripe_event(), at=int(time.time()) + 3600)
        unsigned = await http.post("/api/payments/webhook/", content=payload)
        other_type = await deliver(http, stripe_event(kind="customer.created"))
        unknown = await deliver(http, stripe_event(metadata={"payment_id": "pay-9"}))

    assert good.status_code == 200 and good.json()["published"] == "PaymentSucceeded"
    assert forged.status_code == foreign.status_code == stale.status_code == ahead.status_code == 400
    assert unsigned.status_code == 400
    assert other_type.status_code == 200 and "ignored" in other_type.json()
    assert unknown.status_code == 404
    ((topic, message),) = kafka.published
    assert topic == "payment.events"
    assert (message["type"], message["payment_id"], message["amount"], message["gateway_reference"]) == (
        "PaymentSucceeded", "pay-1", "12.50", "ch_1")


async def test_the_webhook_answers_404_until_its_secret_is_set_and_needs_no_bearer_token(tmp_path, monkeypatch):
    Kafka(known_payment).patch(monkeypatch)
    async with client(gateway_app(tmp_path)) as off, client(gateway_app(tmp_path, stripe_webhook_secret=WEBHOOK_SECRET)) as on:
        unset = await off.post("/api/payments/webhook/", content=signed(stripe_event())[0], headers=signed(stripe_event())[1])
        set_ = await on.post("/api/payments/webhook/", content=signed(stripe_event())[0], headers=signed(stripe_event())[1])

        looked_up = await on.get("/api/payments/webhook/")

    assert unset.status_code == 404 and set_.status_code == 200
    assert looked_up.status_code == 401, "only the webhook's POST goes without a token"


# --- 2. reply topics a prefixed ACL can express -------------------------------------------


async def test_a_payment_whose_lookup_goes_unanswered_is_passed_on_for_the_worker_to_decide(tmp_path, monkeypatch):
    kafka = Kafka(lambda command: None).patch(monkeypatch)  # the checkout worker lags: no answer in time
    async with client(gateway_app(tmp_path, stripe_webhook_secret=WEBHOOK_SECRET)) as http:
        body, signature = signed(stripe_event())
        answer = await http.post("/api/payments/webhook/", content=body, headers=signature)

    assert answer.status_code == 200 and [m["type"] for _, m in kafka.published] == ["PaymentSucceeded"]


def test_a_blank_webhook_secret_is_no_secret():
    assert Settings(stripe_webhook_secret="  ").stripe_webhook_secret is None


def test_a_client_s_own_reply_topic_lives_under_replies_and_nothing_else_is_a_reply_topic():
    settings = Settings(topic_prefix="shop.")
    allowed = ["shop.cart.replies", "shop.gateway.replies", "shop.replies.storefront", "shop.replies.mobile-1"]
    refused = ["shop.storefront.replies", "shop.payment.events", "shop.stock.events", "shop.replies.", "cart.replies",
               "shop.cart.repliesX", "shop.replies"]

    assert [name for name in allowed if settings.reply_topic_allowed(name)] == allowed
    assert [name for name in refused if settings.reply_topic_allowed(name)] == []
