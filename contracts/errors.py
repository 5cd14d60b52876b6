"""Error codes carried by ``CommandResult.error_code``."""

from enum import StrEnum


class ErrorCode(StrEnum):
    CART_EMPTY = "CART_EMPTY"
    ITEM_NOT_FOUND = "ITEM_NOT_FOUND"
    INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"
    PRODUCT_INACTIVE = "PRODUCT_INACTIVE"
    SIZE_REQUIRED = "SIZE_REQUIRED"
    SIZE_NOT_AVAILABLE = "SIZE_NOT_AVAILABLE"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    RESERVATION_FAILED = "RESERVATION_FAILED"
    CHECKOUT_VALIDATION_FAILED = "CHECKOUT_VALIDATION_FAILED"
    # Added to v1 while checkout was not deployed; no longer sent, kept so that
    # clients written against it keep compiling.
    CHECKOUT_NOT_AVAILABLE = "CHECKOUT_NOT_AVAILABLE"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    # Added to v1 with the stock worker: reservation commands that cannot apply.
    RESERVATION_NOT_FOUND = "RESERVATION_NOT_FOUND"
    RESERVATION_NOT_ACTIVE = "RESERVATION_NOT_ACTIVE"
    # Added to v1: a stock command named a holder (or product) other than the
    # reservation's own.
    RESERVATION_HOLDER_MISMATCH = "RESERVATION_HOLDER_MISMATCH"
    # Added to v1: the cart would grow past a limit (lines per cart, the size of
    # an item's properties).
    CART_LIMIT_REACHED = "CART_LIMIT_REACHED"
    # The command was well formed but processing it failed inside cartflow;
    # the message is also dead-lettered for an operator.
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # Added to v1 with GetCheckout: no checkout of this user has that payment id.
    CHECKOUT_NOT_FOUND = "CHECKOUT_NOT_FOUND"


#: The text each code carries in ``error_message``, as the carts app that cartflow
#: re-implements words it (and cartflow words the codes it added that clients
#: show); its clients show ``error_message`` as it is. Where a
#: refusal has details the original shows (how many are available, which size),
#: the message carries them instead ("Only 5 items available (requested 10)").
ERROR_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.CART_EMPTY: "Cart is empty",
    ErrorCode.ITEM_NOT_FOUND: "Cart item not found",
    ErrorCode.INSUFFICIENT_STOCK: "Insufficient stock available",
    ErrorCode.PRODUCT_INACTIVE: "Product is no longer available",
    ErrorCode.SIZE_REQUIRED: "Size selection required for this product",
    ErrorCode.SIZE_NOT_AVAILABLE: "Selected size is not available",
    ErrorCode.INVALID_QUANTITY: "Invalid quantity specified",
    ErrorCode.RESERVATION_FAILED: "Stock reservation failed",
    ErrorCode.CHECKOUT_VALIDATION_FAILED: "Cart validation failed for checkout",
    # cartflow's own, for the code it added that a client shows.
    ErrorCode.CHECKOUT_NOT_FOUND: "Checkout not found",
}
