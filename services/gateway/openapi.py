"""The gateway's OpenAPI 3.1 document, as strict as the gateway.

FastAPI writes the paths, the request schemas and the success responses from
the routes (``operation_id``, ``response_model``); this module adds what it
cannot know: every error status a route answers, in the original app's error
format (``responses.Problem``), instead of FastAPI's 422 that is never sent;
the bearer scheme and which operations need no token; the ``Idempotency-Key``
header; an example on every operation; the quantity bounds of this deployment.
It is published at ``/openapi.json`` and committed as ``docs/openapi.json``
(``cartflow openapi``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from contracts import free_form
from contracts.reply_examples import REPLY_EXAMPLES
from services.gateway import original_api as api
from services.gateway.original_api import IDENTIFIER_SCHEMA, QUANTITY_SCHEMA
from services.gateway.responses import Problem
from services.runtime.settings import Settings

#: What every request that asks the workers can be answered besides success.
ASKING = (400, 401, 404, 408, 413, 500, 503, 504)

DESCRIPTIONS = {
    400: "Malformed or invalid: the body, a parameter, the Idempotency-Key, or a refusal of the cart's rules "
         "(INVALID_QUANTITY, INSUFFICIENT_STOCK, SIZE_REQUIRED, CHECKOUT_VALIDATION_FAILED, ...)",
    401: "No valid bearer token (the body is not read)",
    403: "Not from this machine (the development login answers a loopback client naming a loopback Host only)",
    404: "Not found: an unknown or another user's item, product or payment (ITEM_NOT_FOUND, PRODUCT_INACTIVE, "
         "CHECKOUT_NOT_FOUND), or a development route that is off",
    408: "The body did not arrive within CARTFLOW_GATEWAY_BODY_TIMEOUT_SECONDS; the connection is closed",
    413: "The body is larger than CARTFLOW_GATEWAY_MAX_BODY_BYTES",
    500: "The workers could not carry the command out (INTERNAL_ERROR); it was set aside for an operator",
    503: "Kafka refused the command: nothing was done; send it again with the Idempotency-Key",
    504: "No answer in time: the command may still take effect; send it again with the Idempotency-Key",
}

PROBLEM_EXAMPLES = {
    400: api.problem("INSUFFICIENT_STOCK", "Not enough stock", "Add at most 4", available_quantity=4),
    401: api.problem("NOT_AUTHENTICATED", "Authentication credentials were not provided.",
                     "Sign in and send a valid bearer token", detail="Authentication credentials were not provided."),
    403: api.problem("FORBIDDEN", "The development login answers on this machine only", "Use localhost"),
    404: api.problem("ITEM_NOT_FOUND", "Cart item not found", "Check the id in the path"),
    408: api.problem("REQUEST_TIMEOUT", "The request body did not arrive in time", "Send the request again"),
    413: api.problem("REQUEST_TOO_LARGE", "The request body is too large", "Send a smaller request"),
    500: api.problem("INTERNAL_ERROR", "The command could not be processed and was set aside for an operator",
                     "Retry later with a new message_id"),
    503: api.problem("SERVICE_UNAVAILABLE", "The request could not be sent; nothing was done",
                     "Send the same request again with this Idempotency-Key in a moment",
                     idempotency_key="3f0c6a1e-8d52-4b8e-9a63-1f6a0e2d4c11"),
    504: api.problem("GATEWAY_TIMEOUT", "No answer in time; the request may still take effect",
                     "Send the same request again with this Idempotency-Key to get its answer",
                     idempotency_key="3f0c6a1e-8d52-4b8e-9a63-1f6a0e2d4c11"),
}

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A retry with the same key (same user, method, path, query string and body) is answered "
                   "with the first answer and changes nothing",
    "schema": IDENTIFIER_SCHEMA,
}
IDEMPOTENCY_KEY_ANSWERED = {
    "Idempotency-Key": {"description": "The key the request was taken under", "schema": {"type": "string"}}
}

STRIPE_SIGNATURE = {
    "name": "Stripe-Signature",
    "in": "header",
    "required": True,
    "description": "Stripe's signature of the raw body: t=<unix time>,v1=<HMAC-SHA256 of \"<t>.<body>\">",
    "schema": {"type": "string", "minLength": 1},
}
STRIPE_EVENT = {
    "type": "object",
    "description": "A Stripe event (payment_intent.succeeded or payment_intent.payment_failed act; others are ignored)",
    "required": ["id", "type", "data"],
    "properties": {"id": {"type": "string"}, "type": {"type": "string"}, "data": {"type": "object"}},
}

ITEM = "7d1a0c6e-4b8f-4c57-9d0e-000000000031"
PAYMENT = "pay-5e2c4bd1a9f84c3c"


def _links(item: str) -> dict[str, Any]:
    """What a client does next with the line an answer names (``item``: where the
    answer holds its id)."""
    line = f"$response.body#/{item}"
    return {
        "UpdateTheLine": {"operationId": "updateItemQuantity", "parameters": {"cart_item_id": line}},
        "RemoveTheLine": {"operationId": "removeItem", "parameters": {"cart_item_id": line}},
        "CheckOutTheLine": {"operationId": "checkoutSingle", "requestBody": {"cart_item_id": line}},
    }


PAYMENT_LINK = {"SeeThePayment": {"operationId": "getPayment", "parameters": {"payment_id": "$response.body#/payment_id"}}}


@dataclass(frozen=True)
class Operation:
    #: What the success response looks like.
    example: Any
    #: The request body an example sends, if any.
    request: Any = None
    errors: tuple[int, ...] = ASKING
    #: Needs no bearer token (it proves who asks otherwise).
    public: bool = False
    #: OpenAPI links of the success response: the operations its answer feeds.
    links: dict[str, Any] | None = None


def _reply(kind: str, shape: Any = api.as_is) -> Any:
    return shape(copy.deepcopy(REPLY_EXAMPLES[kind]))


def _single_checkout() -> Any:
    """``CheckoutItem`` answers as ``CheckoutCart`` does, with its one ``order``."""
    started = _reply("CheckoutCart")
    (order,) = started.pop("orders")
    return {**started, "checkout_type": "single_item", "order": order}


def operations() -> dict[str, Operation]:
    add = {"product_id": "sku-trail-shoe", "quantity": 2, "size": "42", "product_properties": {"gift": True}}
    checkout = {"payment_method": "credit_card", "gateway_name": "stripe", "shipping_address": {"city": "Khartoum"}}
    return {
        "getCart": Operation(_reply("GetCart", api.cart_view)),
        "cartList": Operation(_reply("GetCart", api.cart_view)),
        "getCartCount": Operation(_reply("GetCartCount", api.count)),
        "addItem": Operation(_reply("AddItem", api.added), add, links=_links("cart_item_id")),
        "cartCreate": Operation(_reply("AddItem", api.created_item), add, links=_links("id")),
        "updateItemQuantity": Operation(_reply("UpdateItemQuantity", api.updated), {"quantity": 3}),
        "cartUpdateItem": Operation(_reply("UpdateItemQuantity", api.updated), {"cart_item_id": ITEM, "quantity": 3}),
        "removeItem": Operation(_reply("RemoveItem", api.removed)),
        "cartRemoveItem": Operation(_reply("RemoveItem", api.removed), {"cart_item_id": ITEM}),
        "clearCart": Operation(_reply("ClearCart", api.cleared)),
        "cartClear": Operation(_reply("ClearCart", api.cleared)),
        "validateCart": Operation(_reply("ValidateCart"), {"cart_item_ids": [ITEM]}),
        "cartPrepareCheckout": Operation(_reply("ValidateCart"), {"cart_item_ids": [ITEM]}),
        "checkoutSingle": Operation(_single_checkout(), {"cart_item_id": ITEM, **checkout}, links=PAYMENT_LINK),
        "checkoutFull": Operation(_reply("CheckoutCart"), checkout, links=PAYMENT_LINK),
        "cartCheckChanges": Operation(_reply("CheckChanges", api.changes_checked)),
        "cartAcceptChanges": Operation(_reply("AcceptChanges", api.changes_accepted), {"cart_item_ids": [ITEM]}),
        "listProducts": Operation(_reply("ListProducts")),
        "getPayment": Operation(_reply("GetCheckout")),
        "simulatePayment": Operation({"message": "Payment succeeded sent", "payment_id": PAYMENT},
                                     {"outcome": "succeeded"}),
        "receivePaymentWebhook": Operation(
            {"received": True, "payment_id": PAYMENT, "published": "PaymentSucceeded"},
            errors=(400, 404, 408, 413, 500, 503), public=True,
        ),
        "developmentLogin": Operation(
            {"token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.sig", "user_id": "ada"}, {"user_id": "ada"},
            errors=(400, 403, 404, 408, 413, 500), public=True,
        ),
    }


def document(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The gateway's OpenAPI document."""
    doc = get_openapi(
        title=app.title, version=app.version, summary=app.summary, description=app.description, routes=app.routes
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    doc["components"]["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                       "description": "The user is the token's sub (HS256 or RS256, exp required)"}
    }
    known = operations()
    for item in doc["paths"].values():
        for operation in item.values():
            _complete(operation, known[operation["operationId"]])
    _bound_quantities(doc, settings.cart_item_max_quantity)
    _free_form_at_every_depth(doc, settings)
    for field in schemas["Problem"].get("properties", {}).values():
        field.pop("default", None)  # absent when not said: not "always present, maybe null"
    return doc


def _complete(operation: dict[str, Any], spec: Operation) -> None:
    responses = operation["responses"]
    responses.pop("422", None)
    (status,) = responses  # the success FastAPI wrote
    success = responses[status]
    success.setdefault("content", {}).setdefault("application/json", {})["example"] = spec.example
    if spec.links:
        success["links"] = spec.links
    if not spec.public:
        success["headers"] = IDEMPOTENCY_KEY_ANSWERED
    for code in spec.errors:
        responses[str(code)] = {
            "description": DESCRIPTIONS[code],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"},
                                             "example": PROBLEM_EXAMPLES[code]}},
            **({"headers": IDEMPOTENCY_KEY_ANSWERED} if code in (503, 504) else {}),
        }
    operation["security"] = [] if spec.public else [{"bearerAuth": []}]
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            parameter["schema"] = {**IDENTIFIER_SCHEMA, "title": parameter["schema"].get("title", parameter["name"])}
    if not spec.public:
        operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
    if operation["operationId"] == "receivePaymentWebhook":
        operation.setdefault("parameters", []).append(STRIPE_SIGNATURE)
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": STRIPE_EVENT}}}
    if spec.request is not None and "requestBody" in operation:
        operation["requestBody"]["content"]["application/json"]["example"] = spec.request


def _free_form_at_every_depth(doc: dict[str, Any], settings: Settings) -> None:
    """Free-form request fields (an item's properties, a shipping address) as the
    gateway takes them: the key rule at every depth, at most the configured keys
    at the top and levels of nesting. (Their size in bytes of JSON, also limited,
    is more than JSON Schema can say: the description says it.)"""
    limits = settings.free_form_limits
    keys = {"pattern": free_form.KEY_PATTERN}
    schemas = doc["components"]["schemas"]
    scalar = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]}
    schemas["FreeFormValue0"] = scalar
    for level in range(1, limits.max_depth):
        inner = {"$ref": f"#/components/schemas/FreeFormValue{level - 1}"}
        schemas[f"FreeFormValue{level}"] = {"anyOf": [
            *scalar["anyOf"], {"type": "array", "items": inner},
            {"type": "object", "propertyNames": keys, "additionalProperties": inner},
        ]}
    schemas["FreeFormObject"] = {
        "type": "object",
        "maxProperties": limits.max_keys,
        "propertyNames": keys,
        "additionalProperties": {"$ref": f"#/components/schemas/FreeFormValue{limits.max_depth - 1}"},
        "description": f"Keys non-empty, without NUL, '.' or a leading '$', at every depth; at most "
                       f"{limits.max_keys} keys at the top, {limits.max_depth} levels, and {limits.max_bytes} bytes "
                       "as compact UTF-8 JSON (CARTFLOW_PROPERTIES_MAX_*)",
    }
    for name in ("AddToCart", "Checkout", "CheckoutSingle"):
        for field in schemas.get(name, {}).get("properties", {}).values():
            for choice in field.get("anyOf", []):
                if choice.get("type") == "object" and "propertyNames" in choice:
                    choice.clear()
                    choice["$ref"] = "#/components/schemas/FreeFormObject"


def _one_to(top: int) -> str:
    """A regular expression of the decimal numbers 1 to ``top`` (no leading zero),
    as long as ``top`` has digits: the shorter numbers, then those of its length
    that are below it digit by digit, then ``top`` itself."""
    digits = str(top)
    parts = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    for position, digit in enumerate(map(int, digits)):
        lowest = 1 if position == 0 else 0
        if digit > lowest:
            rest = len(digits) - position - 1
            parts.append(digits[:position] + f"[{lowest}-{digit - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    parts.append(digits)
    return "|".join(parts)


def _bound_quantities(node: Any, maximum: int) -> None:
    """Give every quantity of a request the deployment's bounds (1 to ``maximum``)."""
    if isinstance(node, dict):
        if node.get("anyOf") == QUANTITY_SCHEMA["anyOf"]:
            node["anyOf"] = [
                {"type": "integer", "minimum": 1, "maximum": maximum},
                {"type": "string", "pattern": f"^0*(?:{_one_to(maximum)})$", "maxLength": 19},
            ]
            return
        for value in node.values():
            _bound_quantities(value, maximum)
    elif isinstance(node, list):
        for value in node:
            _bound_quantities(value, maximum)


def published_document() -> str:
    """The document of a production gateway (a configured key: no development
    login; no payment simulator), as ``docs/openapi.json`` holds it."""
    from services.gateway.app import create_app

    settings = Settings(
        kafka_bootstrap="kafka:9092", gateway_jwt_secret="a-placeholder-secret-for-the-document-only",
        payment_simulator=False, cart_item_max_quantity=Settings.model_fields["cart_item_max_quantity"].default,
    )
    return json.dumps(create_app(settings).openapi(), indent=2, ensure_ascii=False) + "\n"
