"""Every topic of the contract with its direction, key and messages: the source
of the AsyncAPI document (docs/asyncapi.yaml) and of its examples."""

from __future__ import annotations

from dataclasses import dataclass

from contracts import cart, catalog, checkout, notifications, order, payment, stock, topics


@dataclass(frozen=True)
class Channel:
    topic: str
    #: "in": published by other services, consumed by cartflow; "out": published
    #: by cartflow for others; "internal": between cartflow's own workers.
    direction: str
    key: str
    description: str
    messages: tuple[type, ...]


CHANNELS = (
    Channel(
        topics.CATALOG_EVENTS, "in", "product_id",
        "Product catalog changes from the catalog service; the cart keeps a read model of them.",
        (catalog.ProductUpserted, catalog.ProductDeleted),
    ),
    Channel(
        topics.CART_COMMANDS, "in", "user_id",
        "Cart commands from upstream services. Each gets exactly one CommandResult on its reply_to topic.",
        cart.CART_COMMANDS,
    ),
    Channel(
        topics.CART_REPLIES, "out", "user_id",
        "The default reply topic: one CommandResult per cart command, matched by correlation_id.",
        (cart.CommandResult,),
    ),
    Channel(topics.CART_EVENTS, "out", "user_id", "What changed in carts, in order per user.", cart.CART_EVENT_TYPES),
    Channel(
        topics.STOCK_COMMANDS, "in", "product_id",
        "Stock levels and reservations: from the catalog or warehouse (SetStock) and from the cart and checkout workers.",
        stock.STOCK_COMMANDS,
    ),
    Channel(topics.STOCK_EVENTS, "out", "product_id", "Answers to stock commands and level changes.", stock.STOCK_EVENTS),
    Channel(
        topics.CHECKOUT_COMMANDS, "internal", "payment_id",
        "From the cart worker to the checkout worker: start a checkout saga.",
        (checkout.StartCheckout,),
    ),
    Channel(
        topics.CHECKOUT_HANDOVERS, "internal", "user_id",
        "From the checkout worker to the cart worker: a StartCheckout was accepted (the cart drops the lines) or refused (the cart keeps them and answers the buyer).",
        checkout.HANDOVER_ANSWER_TYPES,
    ),
    Channel(
        topics.CHECKOUT_TIMEOUTS, "internal", "payment_id",
        "Delayed payment deadlines: held by the checkout worker until due_at.",
        (checkout.PaymentDeadlineReached,),
    ),
    Channel(
        topics.CHECKOUT_QUERIES, "in", "payment_id",
        "Questions about checkouts: from upstream services (GetCheckout) and from the payment webhook (GetPayment). "
        "Each gets one CommandResult on its reply_to topic.",
        (checkout.GetCheckout, checkout.GetPayment),
    ),
    Channel(
        topics.PAYMENT_EVENTS, "in", "payment_id", "Outcomes from the payment gateway adapter.",
        (payment.PaymentSucceeded, payment.PaymentFailed),
    ),
    Channel(
        topics.ORDER_EVENTS, "out", "payment_id",
        "Orders and payments for downstream services (fulfilment, accounting), in order per checkout.",
        (
            order.OrderPlaced, order.PaymentRequested, order.OrderPaid, order.OrderCancelled,
            order.LatePaymentReceived, order.PaymentAmountMismatch, order.PaymentAttemptFailed,
            order.PaymentRefundRequired, order.UnmatchedPaymentReceived,
        ),
    ),
    Channel(
        topics.NOTIFICATIONS_EVENTS, "out", "user_id",
        "Buyer notifications for a messaging service: change and stock alerts, reminders, expiry.",
        notifications.NOTIFICATION_TYPES,
    ),
)
