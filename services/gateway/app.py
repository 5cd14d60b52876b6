"""The HTTP gateway: the original carts app's REST API on FastAPI, answered by
the workers over Kafka through FastStream's FastAPI integration.

Stateless: each request becomes one command (or query) published with the
gateway's reply topic as ``reply_to``, and its ``CommandResult`` becomes the
response. The user is the bearer token's ``sub``; a ``user_id`` in a body or a
query string is ignored. An ``Idempotency-Key`` header becomes the command's
``message_id`` (scoped to the user, the method, the path, the query string
and the body), so a retry is answered with the first answer and changes
nothing; a request whose reply does not come in time is answered 504 with the
key to retry with. What a request passes before a route sees it (security
headers, the token, the body's size and pace) is ``services.gateway.guard``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from faststream.kafka.fastapi import KafkaRouter
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.envelope import IDENTIFIER_PATTERN, is_identifier, message_id_for
from contracts.errors import ERROR_MESSAGES, ErrorCode
from contracts.topics import CART_COMMANDS, CHECKOUT_QUERIES, PAYMENT_EVENTS
from services.gateway import original_api as api
from services.gateway import responses as shapes
from services.gateway.auth import NotAuthenticated, Verifier, from_this_machine, loopback, verifier
from services.gateway.exchange import Exchange, Unavailable
from services.gateway.guard import Guard
from services.gateway.openapi import document
from services.gateway.webhook import PaymentWebhook
from services.runtime.kafka import faststream_security
from services.runtime.settings import Settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
Shape = Callable[[dict[str, Any]], dict[str, Any]]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    if not settings.kafka_bootstrap:
        raise RuntimeError("set CARTFLOW_KAFKA_BOOTSTRAP (or use `cartflow up`)")
    if settings.payment_simulator and not loopback(settings.gateway_host):
        raise RuntimeError(
            "CARTFLOW_PAYMENT_SIMULATOR pays checkouts without a payment provider: it serves on a loopback "
            f"address only (CARTFLOW_GATEWAY_HOST={settings.gateway_host})"
        )
    tokens = verifier(settings)
    router = KafkaRouter(
        settings.kafka_bootstrap,
        security=faststream_security(settings),
        schema_url=None,
        include_in_schema=False,
        logger=logging.getLogger("cartflow.gateway.broker"),
    )
    exchange = Exchange(settings, router)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # the broker's own lifespan runs inside this one
        await exchange.prepare()
        yield

    app = FastAPI(
        title="cartflow gateway",
        summary="The original carts app's REST API, answered by cartflow's workers over Kafka.",
        version="1",
        lifespan=lifespan,
    )
    app.include_router(router)
    gateway = Gateway(settings, exchange, tokens)

    # Before anything reads the request: a caller without a valid token learns
    # nothing from validation messages, and sends no body the gateway keeps.
    app.add_middleware(
        Guard,
        user_of=tokens.user_of,
        unauthenticated=_unauthenticated,
        max_bytes=settings.gateway_max_body_bytes,
        body_timeout=settings.gateway_body_timeout_seconds,
    )
    _errors(app)
    _routes(app, gateway, settings)
    published: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not published:
            published.update(document(app, settings))
        return published

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in error.errors()[:10]
        )
        body = api.problem("INVALID_MESSAGE", f"Invalid request: {reasons}"[:1000], "Fix the request and send it again")
        return JSONResponse(body, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        body = api.problem("NOT_FOUND" if error.status_code == 404 else "HTTP_ERROR", str(error.detail), "Check the path")
        headers = dict(getattr(error, "headers", None) or {})
        if error.status_code == 405:
            # Starlette names the methods of the first route of the path only; a path may have several.
            headers["Allow"] = ", ".join(_methods_of(app, request.url.path))
        return JSONResponse(body, status_code=error.status_code, headers=headers or None)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("gateway request failed")
        body = api.problem("INTERNAL_ERROR", "The request could not be processed", "Retry later")
        return JSONResponse(body, status_code=500)


def _methods_of(app: FastAPI, path: str) -> list[str]:
    """Every method some route of ``app`` answers on ``path``."""
    from starlette.routing import Match, Route

    scope = {"type": "http", "path": path, "method": "GET"}
    matching = [r for r in app.routes if isinstance(r, Route) and r.methods and r.matches(scope)[0] != Match.NONE]
    # A path of its own (/api/payments/webhook/) is not also the template beside it (/api/payments/{id}/).
    literal = [r for r in matching if r.path == path]
    return sorted({method for route in (literal or matching) for method in route.methods or ()})


def _unauthenticated(error: NotAuthenticated) -> dict[str, Any]:
    message = str(error)
    return api.problem("NOT_AUTHENTICATED", message, "Sign in and send a valid bearer token", detail=message)


class Gateway:
    """What every route does: who asks, the command's id, ask, shape the answer."""

    def __init__(self, settings: Settings, exchange: Exchange, tokens: Verifier) -> None:
        self.settings = settings
        self.exchange = exchange
        self.tokens = tokens

    async def message_id(self, request: Request, user_id: str) -> tuple[str, str]:
        """The command's message_id and the key that derives it: the request's
        ``Idempotency-Key``, or a new one the client may retry with. The key is
        the user's own, for this method, path, query string and body: the
        same key with another body or query is another request."""
        key = request.headers.get("idempotency-key")
        if key is None:
            key = str(uuid.uuid4())
        elif not is_identifier(key):
            raise IdempotencyKeyInvalid()
        body = hashlib.sha256(await request.body()).hexdigest()
        scope = json.dumps([user_id, request.method, request.url.path, request.url.query, key, body])
        return message_id_for("gateway", "Idempotency", scope), key

    async def ask(
        self, request: Request, kind: str, shape: Shape, *, created: bool = False, **options: Any
    ) -> JSONResponse:
        """Ask, and answer with the reply's data in the original's shape, or its refusal."""
        answer = await self.reply(request, kind, **options)
        if isinstance(answer, JSONResponse):
            return answer
        reply, idempotency_key = answer
        headers = {"Idempotency-Key": idempotency_key}
        if not reply.get("success"):
            return JSONResponse(api.error_body(reply), status_code=api.status_of(reply), headers=headers)
        return JSONResponse(shape(reply.get("data") or {}), status_code=api.status_of(reply, created=created), headers=headers)

    async def reply(
        self, request: Request, kind: str, *, topic: str = CART_COMMANDS, key_field: str = "user_id", **fields: Any
    ) -> tuple[dict[str, Any], str] | JSONResponse:
        """The ``CommandResult`` of one command and the idempotency key it was sent
        under, or the response that answers for its absence (400, 503, 504). The
        user was proven by the authentication middleware. Free-form fields are
        held to the workers' limits (``contracts.free_form``) before anything is sent."""
        user_id: str = request.state.user_id
        quantity = fields.get("quantity")
        if isinstance(quantity, int) and not 1 <= quantity <= self.settings.cart_item_max_quantity:
            # The workers' own limit, as the document states it: refused here at once.
            top = self.settings.cart_item_max_quantity
            body = api.problem("INVALID_QUANTITY", "Invalid quantity specified", f"Send a quantity from 1 to {top}")
            return JSONResponse(body, status_code=400)
        if (problem := self.settings.free_form_limits.first_problem(fields)) is not None:
            # The workers' own limits: refused here at once rather than by them after a round trip.
            body = api.problem("INVALID_MESSAGE", f"Invalid request: {problem}", "Send smaller or flatter values")
            return JSONResponse(body, status_code=400)
        try:
            message_id, idempotency_key = await self.message_id(request, user_id)
        except IdempotencyKeyInvalid:
            body = api.problem("INVALID_MESSAGE", "Idempotency-Key must be 1 to 200 characters", "Send a shorter key")
            return JSONResponse(body, status_code=400)
        command = {
            "type": kind,
            "message_id": message_id,
            "schema_version": 1,
            "occurred_at": datetime.now(UTC).isoformat(),
            "user_id": user_id,
            **{name: value for name, value in fields.items() if value is not None},
        }
        key = str(command.get(key_field, user_id))
        try:
            reply = await self.exchange.ask(topic, command, key)
        except Unavailable:
            return _retry_with(
                idempotency_key, 503, "SERVICE_UNAVAILABLE", "The request could not be sent; nothing was done", "in a moment"
            )
        if reply is None:
            return _retry_with(
                idempotency_key, 504, "GATEWAY_TIMEOUT", "No answer in time; the request may still take effect",
                "to get its answer",
            )
        return reply, idempotency_key


def _retry_with(idempotency_key: str, status: int, code: str, message: str, when: str) -> JSONResponse:
    """No answer yet: the client sends the same request again with this key."""
    action = f"Send the same request again with this Idempotency-Key {when}"
    body = api.problem(code, message, action, idempotency_key=idempotency_key)
    return JSONResponse(body, status_code=status, headers={"Idempotency-Key": idempotency_key})


class IdempotencyKeyInvalid(Exception):
    pass


def _routes(app: FastAPI, gateway: Gateway, settings: Settings) -> None:
    ask = gateway.ask
    webhook = PaymentWebhook(settings, gateway.exchange)

    # --- /api/carts/: the set the JavaScript client uses ---------------------------------

    @app.get("/api/carts/", operation_id="getCart", response_model=shapes.Cart, tags=["carts"], summary="The cart with all its items and totals")
    @app.get("/api/cart/", operation_id="cartList", response_model=shapes.Cart, tags=["cart"], summary="The cart summary")
    async def get_cart(request: Request) -> JSONResponse:
        return await ask(request, "GetCart", api.cart_view)

    @app.get("/api/carts/count/", operation_id="getCartCount", response_model=shapes.CartCount, tags=["carts"], summary="How many items the cart holds, and their total")
    async def get_count(request: Request) -> JSONResponse:
        return await ask(request, "GetCartCount", api.count)

    @app.post("/api/carts/add/", operation_id="addItem", response_model=shapes.ItemAdded, status_code=201, tags=["carts"], summary="Add an item to the cart")
    async def add(request: Request, body: api.AddToCart) -> JSONResponse:
        return await ask(request, "AddItem", api.added, created=True, **_add_fields(body))

    @app.put("/api/carts/update/{cart_item_id}/", operation_id="updateItemQuantity", response_model=shapes.QuantityUpdated, tags=["carts"], summary="Change an item's quantity")
    async def update(request: Request, cart_item_id: str, body: api.UpdateQuantity) -> JSONResponse:
        if not is_identifier(cart_item_id):
            return _not_found(ErrorCode.ITEM_NOT_FOUND)
        return await ask(request, "UpdateItemQuantity", api.updated, item_id=cart_item_id, quantity=body.quantity)

    @app.delete("/api/carts/remove/{cart_item_id}/", operation_id="removeItem", response_model=shapes.ItemRemoved, tags=["carts"], summary="Remove an item")
    async def remove(request: Request, cart_item_id: str) -> JSONResponse:
        if not is_identifier(cart_item_id):
            return _not_found(ErrorCode.ITEM_NOT_FOUND)
        return await ask(request, "RemoveItem", api.removed, item_id=cart_item_id)

    @app.delete("/api/carts/clear/", operation_id="clearCart", response_model=shapes.CartCleared, tags=["carts"], summary="Empty the cart")
    @app.delete("/api/cart/clear/", operation_id="cartClear", response_model=shapes.CartCleared, tags=["cart"], summary="Empty the cart")
    async def clear(request: Request) -> JSONResponse:
        return await ask(request, "ClearCart", api.cleared)

    @app.post("/api/carts/validate/", operation_id="validateCart", response_model=shapes.ValidationReport, tags=["carts"], summary="Validate the cart (or some items) before checkout")
    @app.post("/api/cart/prepare_checkout/", operation_id="cartPrepareCheckout", response_model=shapes.ValidationReport, tags=["cart"], summary="Validate the cart for checkout")
    async def validate(request: Request, body: api.SelectItems | None = None) -> JSONResponse:
        return await ask(request, "ValidateCart", api.as_is, item_ids=body.cart_item_ids if body else None)

    @app.post("/api/carts/checkout/single/", operation_id="checkoutSingle", response_model=shapes.CheckoutStarted, status_code=201, tags=["checkout"], summary="Check out one item")
    async def checkout_single(request: Request, body: api.CheckoutSingle) -> JSONResponse:
        fields = body.model_dump(exclude={"cart_item_id"})
        return await ask(request, "CheckoutItem", api.as_is, created=True, item_id=body.cart_item_id, **fields)

    @app.post("/api/carts/checkout/full/", operation_id="checkoutFull", response_model=shapes.CheckoutStarted, status_code=201, tags=["checkout"], summary="Check out the whole cart")
    async def checkout_full(request: Request, body: api.Checkout | None = None) -> JSONResponse:
        fields = (body or api.Checkout()).model_dump()
        return await ask(request, "CheckoutCart", api.as_is, created=True, **fields)

    # --- /api/cart/: the viewset set -------------------------------------------------------

    @app.post("/api/cart/", operation_id="cartCreate", response_model=shapes.ItemCreated, status_code=201, tags=["cart"], summary="Add an item (answers the item)")
    async def cart_create(request: Request, body: api.AddToCart) -> JSONResponse:
        return await ask(request, "AddItem", api.created_item, created=True, **_add_fields(body))

    @app.patch("/api/cart/update_item/", operation_id="cartUpdateItem", response_model=shapes.QuantityUpdated, tags=["cart"], summary="Change an item's quantity")
    async def cart_update_item(request: Request, body: api.UpdateItem) -> JSONResponse:
        return await ask(request, "UpdateItemQuantity", api.updated, item_id=body.cart_item_id, quantity=body.quantity)

    @app.delete("/api/cart/remove_item/", operation_id="cartRemoveItem", response_model=shapes.ItemRemoved, tags=["cart"], summary="Remove an item (cart_item_id in the body or query)")
    async def cart_remove_item(
        request: Request,
        cart_item_id: Annotated[str | None, Query(min_length=1, max_length=200, pattern=IDENTIFIER_PATTERN)] = None,
        body: api.NameItem | None = None,
    ) -> JSONResponse:
        item_id = cart_item_id or (body.cart_item_id if body else None)
        if not is_identifier(item_id):
            body = api.problem("INVALID_MESSAGE", "cart_item_id is required", "Name the item to remove")
            return JSONResponse(body, status_code=400)
        return await ask(request, "RemoveItem", api.removed, item_id=item_id)

    @app.post("/api/cart/check_changes/", operation_id="cartCheckChanges", response_model=shapes.ChangesChecked, tags=["cart"], summary="Check the items for product changes")
    async def cart_check_changes(request: Request) -> JSONResponse:
        return await ask(request, "CheckChanges", api.changes_checked)

    @app.post("/api/cart/accept_changes/", operation_id="cartAcceptChanges", response_model=shapes.ChangesAccepted, tags=["cart"], summary="Accept product changes")
    async def cart_accept_changes(request: Request, body: api.SelectItems | None = None) -> JSONResponse:
        return await ask(request, "AcceptChanges", api.changes_accepted, item_ids=body.cart_item_ids if body else None)

    # --- beyond the original ---------------------------------------------------------------

    @app.get("/api/products/", operation_id="listProducts", response_model=shapes.ProductPage, tags=["catalog"], summary="A page of the catalog, with the units available")
    async def products(
        request: Request,
        after: Annotated[str | None, Query(min_length=1, max_length=200, pattern=IDENTIFIER_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Products per page; more than 50 is taken as 50")] = 20,
    ) -> JSONResponse:
        if after is not None and not is_identifier(after):
            body = api.problem("INVALID_MESSAGE", "after must be a product id", "Send the next_after of the last page")
            return JSONResponse(body, status_code=400)
        return await ask(request, "ListProducts", api.as_is, after=after, limit=max(1, min(limit, 50)))

    @app.get("/api/payments/{payment_id}/", operation_id="getPayment", response_model=shapes.CheckoutStatus, tags=["checkout"], summary="Where a checkout's payment stands")
    async def payment(request: Request, payment_id: str) -> JSONResponse:
        if payment_id == "webhook":  # the webhook's own path: no checkout is called so
            raise StarletteHTTPException(405, "Method Not Allowed")
        if not is_identifier(payment_id):
            return _not_found(ErrorCode.CHECKOUT_NOT_FOUND)
        return await ask(
            request, "GetCheckout", api.as_is, topic=CHECKOUT_QUERIES, key_field="payment_id", payment_id=payment_id
        )

    @app.post("/api/payments/{payment_id}/simulate/", operation_id="simulatePayment", response_model=shapes.PaymentSent, status_code=202, tags=["checkout"],
              summary="Development only: pay (or fail to pay) a checkout", include_in_schema=settings.payment_simulator)
    async def simulate(request: Request, payment_id: str, body: api.SimulatePayment) -> JSONResponse:
        if not settings.payment_simulator:
            raise StarletteHTTPException(404, "The payment simulator is off: payments come from the payment provider")
        if not is_identifier(payment_id):
            return _not_found(ErrorCode.CHECKOUT_NOT_FOUND)
        status = await gateway.reply(
            request, "GetCheckout", topic=CHECKOUT_QUERIES, key_field="payment_id", payment_id=payment_id
        )
        if isinstance(status, JSONResponse):
            return status
        reply, idempotency_key = status
        if not reply.get("success"):
            headers = {"Idempotency-Key": idempotency_key}
            return JSONResponse(api.error_body(reply), status_code=api.status_of(reply), headers=headers)
        checkout = reply["data"]
        now = datetime.now(UTC).isoformat()
        # One payment per Idempotency-Key: a second click with the key is the same message and the same charge.
        scope = json.dumps([request.state.user_id, payment_id, body.outcome, idempotency_key])
        message_id = message_id_for("simulator", "Payment", scope)
        if body.outcome == "succeeded":
            event = {"type": "PaymentSucceeded", "message_id": message_id, "occurred_at": now, "payment_id": payment_id,
                     "amount": checkout["total_amount"], "gateway_reference": f"sim-{message_id[:12]}"}
        else:
            event = {"type": "PaymentFailed", "message_id": message_id, "occurred_at": now, "payment_id": payment_id,
                     "reason": "simulated_failure"}
        await gateway.exchange.publish(PAYMENT_EVENTS, event, payment_id)
        answer = {"message": f"Payment {body.outcome} sent", "payment_id": payment_id}
        return JSONResponse(answer, status_code=202, headers={"Idempotency-Key": idempotency_key})

    @app.post("/api/payments/webhook/", operation_id="receivePaymentWebhook", response_model=shapes.WebhookReceived,
              tags=["payments"],
              summary="Stripe's webhook: a payment intent's outcome, signed with the endpoint's secret")
    async def payment_webhook(request: Request) -> JSONResponse:
        if settings.stripe_webhook_secret is None:
            raise StarletteHTTPException(404, "Not Found")
        return await webhook.receive(request)

    @app.post("/api/dev/login/", operation_id="developmentLogin", response_model=shapes.DevelopmentToken, tags=["development"], include_in_schema=gateway.tokens.development,
              summary="Development only: a token for any user (while the development secret is in use)")
    async def development_login(request: Request, body: api.DevelopmentLogin) -> JSONResponse:
        if not gateway.tokens.development:
            raise StarletteHTTPException(404, "Not Found")
        if not from_this_machine(request):
            # A page of another site reaching this port (DNS rebinding) or a proxy in front: no token.
            refusal = api.problem("FORBIDDEN", "The development login answers on this machine only", "Use localhost")
            return JSONResponse(refusal, status_code=403)
        return JSONResponse({"token": gateway.tokens.issue(body.user_id), "user_id": body.user_id})

    # --- the storefront ---------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def storefront() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/cart/", include_in_schema=False)
    async def cart_page() -> FileResponse:
        # The original front end sends the buyer here when a payment's time runs out.
        return FileResponse(STATIC / "index.html")

    @app.get("/payment/{payment_id}/", include_in_schema=False)
    async def payment_page(payment_id: str) -> FileResponse:
        return FileResponse(STATIC / "payment.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _not_found(code: ErrorCode) -> JSONResponse:
    """What the workers would answer an id that cannot exist, without asking them."""
    return JSONResponse(api.problem(code, ERROR_MESSAGES[code], "Check the id in the path"), status_code=404)


def _add_fields(body: api.AddToCart) -> dict[str, Any]:
    return {
        "product_id": body.product_id,
        "quantity": body.quantity,
        "size": body.size,
        "properties": body.product_properties,
    }
