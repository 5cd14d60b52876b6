"""One example per message type, as it travels on its topic (JSON). They appear
in docs/asyncapi.yaml; a test checks that each one is valid."""

from __future__ import annotations

from typing import Any

AT = "2026-11-25T10:15:00Z"
DUE = "2026-11-25T10:30:00Z"
USER, PRODUCT, ITEM = "user-42", "sku-trail-shoe", "0b6f3c1e-8d53-5f0c-9a61-2f4d1f7c2a10"
PAYMENT = "pay-5e2c4bd1a9f84c3c"
ORDER = f"{PAYMENT}-1"
RESERVATION = "res-1f8e2a7c"
HOLDER = f"cart:{USER}:{ITEM}"
ADDRESS = {"name": "A. Buyer", "street": "1 Rue Exemple", "city": "Lyon", "zip": "69001", "country": "FR"}


def envelope(kind: str, number: int, **fields: Any) -> dict[str, Any]:
    message_id = f"7d1a0c6e-4b8f-4c57-9d0e-{number:012d}"
    return {
        "message_id": message_id,
        "type": kind,
        "schema_version": 1,
        "occurred_at": AT,
        "correlation_id": "checkout-flow-1",
        **fields,
    }


def _examples() -> list[dict[str, Any]]:
    line_change = {"field": "price", "old": "74.99", "new": "69.99", "message": "Price decreased from 74.99 to 69.99"}
    changed_item = {"item_id": ITEM, "product_id": PRODUCT, "size": "42", "changes": [line_change]}
    reservation = {"reservation_id": RESERVATION, "product_id": PRODUCT, "size": "42", "holder": HOLDER}
    return [
        # catalog.events
        envelope(
            "ProductUpserted", 1, product_id=PRODUCT, name="Trail shoe", price="74.99", image_url="https://img.example/shoe.png",
            sizes=[{"size": "42", "price": "74.99"}, {"size": "46", "price": "79.99"}],
        ),
        envelope("ProductDeleted", 2, product_id=PRODUCT),
        # cart.commands
        envelope("AddItem", 3, user_id=USER, product_id=PRODUCT, quantity=2, size="42", properties={"gift": True}, reply_to="replies.storefront"),
        envelope("UpdateItemQuantity", 4, user_id=USER, item_id=ITEM, quantity=3),
        envelope("RemoveItem", 5, user_id=USER, item_id=ITEM),
        envelope("ClearCart", 6, user_id=USER),
        envelope("GetCart", 7, user_id=USER),
        envelope("GetCartCount", 52, user_id=USER),
        envelope("ListProducts", 54, user_id=USER, limit=20),
        envelope("CheckChanges", 8, user_id=USER),
        envelope("AcceptChanges", 9, user_id=USER, item_ids=[ITEM]),
        envelope("ValidateCart", 10, user_id=USER),
        envelope("CheckoutItem", 11, user_id=USER, item_id=ITEM, payment_method="card", gateway_name="stripe", shipping_address=ADDRESS),
        envelope("CheckoutCart", 12, user_id=USER, payment_method="card", gateway_name="stripe", shipping_address=ADDRESS),
        # cart.replies
        envelope(
            "CommandResult", 13, causation_id="7d1a0c6e-4b8f-4c57-9d0e-000000000003", command_type="AddItem",
            command_message_id="7d1a0c6e-4b8f-4c57-9d0e-000000000003", user_id=USER, success=False,
            error_code="INSUFFICIENT_STOCK", error_message="Only 1 items available in size 42",
            suggested_action="Reduce quantity or try different size", available_quantity=1,
        ),
        # cart.events
        envelope("ItemAdded", 14, user_id=USER, item_id=ITEM, product_id=PRODUCT, size="42", quantity=2, line_quantity=2, unit_price="74.99", product_name="Trail shoe"),
        envelope("ItemQuantityChanged", 15, user_id=USER, item_id=ITEM, product_id=PRODUCT, size="42", old_quantity=2, new_quantity=3),
        envelope("ItemRemoved", 16, user_id=USER, item_id=ITEM, product_id=PRODUCT, size="42", quantity=3),
        envelope("CartCleared", 17, user_id=USER, item_ids=[ITEM]),
        envelope("ProductChangesDetected", 18, user_id=USER, items=[changed_item]),
        envelope("ChangesAccepted", 19, user_id=USER, item_ids=[ITEM], total_amount="139.98"),
        envelope("CartCheckedOut", 20, user_id=USER, payment_id=PAYMENT, checkout_type="full_cart", item_ids=[ITEM]),
        # stock.commands
        envelope("SetStock", 21, product_id=PRODUCT, size="42", on_hand=120),
        envelope("ReserveStock", 22, quantity=2, expires_at=DUE, **reservation),
        envelope("AdjustReservation", 23, reservation_id=RESERVATION, product_id=PRODUCT, quantity=3, expires_at=DUE, holder=HOLDER),
        envelope("ReleaseReservation", 24, reservation_id=RESERVATION, product_id=PRODUCT, reason="item_removed", holder=HOLDER),
        envelope("CommitReservation", 25, reservation_id=RESERVATION, product_id=PRODUCT, order_id=ORDER, holder=f"order:{ORDER}"),
        envelope("TransferReservation", 26, reservation_id=RESERVATION, product_id=PRODUCT, holder=f"order:{ORDER}", expected_holder=HOLDER),
        # stock.events
        envelope("StockReserved", 27, quantity=2, expires_at=DUE, available_after=118, **reservation),
        envelope("StockReservationRejected", 28, operation="reserve", requested=5, available=1, error_code="INSUFFICIENT_STOCK", **reservation),
        envelope("ReservationAdjusted", 29, old_quantity=2, quantity=3, expires_at=DUE, available_after=117, **reservation),
        envelope("StockReleased", 30, quantity=3, reason="item_removed", **reservation),
        envelope("StockCommitted", 31, quantity=3, order_id=ORDER, **reservation),
        envelope("ReservationTransferred", 32, previous_holder=HOLDER, quantity=3, expires_at=DUE, **{**reservation, "holder": f"checkout:{PAYMENT}"}),
        envelope("StockCommandRejected", 33, command_type="AdjustReservation", error_code="RESERVATION_NOT_ACTIVE", error_message="The reservation was already released", **reservation),
        envelope("StockLevelChanged", 34, product_id=PRODUCT, size="42", on_hand=120, reserved=3, sold=7, available=110),
        # checkout.commands and checkout.timeouts
        envelope(
            "StartCheckout", 35, payment_id=PAYMENT, payment_hash="9f2b1c0d7e6a5b4c", user_id=USER, checkout_type="full_cart",
            lines=[{"order_id": ORDER, "item_id": ITEM, "product_id": PRODUCT, "product_name": "Trail shoe", "size": "42", "quantity": 2, "unit_price": "74.99", "total_price": "149.98", "reservation_id": RESERVATION}],
            total_amount="149.98", payment_method="card", gateway_name="stripe", shipping_address=ADDRESS,
            command_type="CheckoutCart", command_message_id="7d1a0c6e-4b8f-4c57-9d0e-000000000012",
        ),
        # checkout.handovers
        envelope("CheckoutAccepted", 55, payment_id=PAYMENT, user_id=USER, item_ids=[ITEM], causation_id="7d1a0c6e-4b8f-4c57-9d0e-000000000035"),
        envelope(
            "CheckoutRefused", 56, payment_id=PAYMENT, user_id=USER, item_ids=[ITEM], causation_id="7d1a0c6e-4b8f-4c57-9d0e-000000000035",
            error_code="INVALID_MESSAGE", message="The checkout could not be started",
        ),
        envelope("PaymentDeadlineReached", 36, payment_id=PAYMENT, due_at=DUE),
        # checkout.queries
        envelope("GetCheckout", 53, user_id=USER, payment_id=PAYMENT, reply_to="replies.storefront"),
        envelope("GetPayment", 57, payment_id=PAYMENT, reply_to="gateway.replies"),
        # payment.events
        envelope("PaymentSucceeded", 37, payment_id=PAYMENT, amount="149.98", gateway_reference="ch_3Nx1"),
        envelope("PaymentFailed", 38, payment_id=PAYMENT, reason="card_declined"),
        # order.events
        envelope(
            "OrderPlaced", 39, order_id=ORDER, payment_id=PAYMENT, user_id=USER, product_id=PRODUCT, product_name="Trail shoe", size="42",
            quantity=2, unit_price="74.99", total_price="149.98", status="under_paying", payment_expires_at=DUE, shipping_address=ADDRESS,
        ),
        envelope("PaymentRequested", 40, payment_id=PAYMENT, payment_hash="9f2b1c0d7e6a5b4c", total_amount="149.98", payment_method="card", gateway_name="stripe", payment_expires_at=DUE, order_ids=[ORDER]),
        envelope("OrderPaid", 41, order_id=ORDER, payment_id=PAYMENT),
        envelope("OrderCancelled", 42, order_id=ORDER, payment_id=PAYMENT, reason="payment_timeout"),
        envelope("LatePaymentReceived", 43, payment_id=PAYMENT, amount="149.98", received_at="2026-11-25T10:31:12Z"),
        envelope("PaymentAmountMismatch", 44, payment_id=PAYMENT, expected="149.98", received="149.00"),
        envelope("PaymentAttemptFailed", 45, payment_id=PAYMENT, reason="card_declined", payment_expires_at=DUE),
        envelope("PaymentRefundRequired", 50, payment_id=PAYMENT, amount="149.98", reason="duplicate_payment", order_ids=[], gateway_reference="ch_3Nx2"),
        envelope("UnmatchedPaymentReceived", 51, payment_id="pay-unknown", amount="20.00", gateway_reference="ch_3Nx3"),
        # notifications.events
        envelope("CartChangeAlert", 46, user_id=USER, items=[{**changed_item, "product_name": "Trail shoe"}], removed_item_ids=[]),
        envelope("StockAlert", 47, user_id=USER, item_id=ITEM, product_id=PRODUCT, size="42", product_name="Trail shoe", message="The product is out of stock"),
        envelope("AbandonedCartReminder", 48, user_id=USER, last_activity_at="2026-11-18T09:00:00Z", item_count=2, subtotal="149.98"),
        envelope("CartExpired", 49, user_id=USER, last_activity_at="2026-10-26T09:00:00Z", item_ids=[ITEM], released_reservation_ids=[RESERVATION]),
    ]


#: Example payload per message type.
EXAMPLES: dict[str, dict[str, Any]] = {example["type"]: example for example in _examples()}
