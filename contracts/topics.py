"""Topic names and their keys. Every topic here is part of the contract."""

CATALOG_EVENTS = "catalog.events"  # in, key product_id
CART_COMMANDS = "cart.commands"  # in, key user_id
CART_REPLIES = "cart.replies"  # out, key user_id (default reply_to)
CART_EVENTS = "cart.events"  # out, key user_id
STOCK_COMMANDS = "stock.commands"  # in, key product_id
STOCK_EVENTS = "stock.events"  # out, key product_id
CHECKOUT_COMMANDS = "checkout.commands"  # internal, key checkout id
CHECKOUT_TIMEOUTS = "checkout.timeouts"  # internal, delayed deadline events
CHECKOUT_QUERIES = "checkout.queries"  # in, key payment_id (added to v1)
CHECKOUT_HANDOVERS = "checkout.handovers"  # internal, key user_id (added to v1)
PAYMENT_EVENTS = "payment.events"  # in, key payment_id
ORDER_EVENTS = "order.events"  # out, key payment_id (one checkout stays in order)
NOTIFICATIONS_EVENTS = "notifications.events"  # out, key user_id

ALL_TOPICS = (
    CATALOG_EVENTS,
    CART_COMMANDS,
    CART_REPLIES,
    CART_EVENTS,
    STOCK_COMMANDS,
    STOCK_EVENTS,
    CHECKOUT_COMMANDS,
    CHECKOUT_TIMEOUTS,
    CHECKOUT_QUERIES,
    CHECKOUT_HANDOVERS,
    PAYMENT_EVENTS,
    ORDER_EVENTS,
    NOTIFICATIONS_EVENTS,
)

#: The HTTP gateway's reply topic (every gateway process reads all of it).
GATEWAY_REPLIES = "gateway.replies"
#: Reply topics a client names itself live under this prefix (``replies.storefront``),
#: so that one prefixed ACL covers them and no other topic.
CLIENT_REPLIES_PREFIX = "replies."

DLQ_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """Where messages of ``topic`` that cannot be processed are parked."""
    return topic + DLQ_SUFFIX
