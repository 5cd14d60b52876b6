"""What one batch of the cart worker works on (``CartUnit``), the internal message
of an overdue stock step, and the ids the cart derives from the commands that
cause them: handling a message again derives the same ids."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.envelope import message_id_for
from services.cart_worker.domain import Cart, PendingStock, Product
from services.runtime.processing import UnitOfWork


def new_item_id(command_id: str) -> str:
    """The id of the cart line an add creates."""
    return message_id_for(command_id, "CartLine")


def stock_command_id(cause_id: str, kind: str, reservation_id: str) -> str:
    """The message_id of the stock command of ``kind`` that ``cause_id`` sends about a reservation."""
    return message_id_for(cause_id, kind, reservation_id)


def payment_id_for(command_id: str) -> str:
    """The payment id (and checkout id) a checkout command creates."""
    return "pay-" + message_id_for(command_id, "Payment")


@dataclass(frozen=True)
class StockAnswerOverdue:
    """Internal: a cart waited longer than allowed for the stock worker."""

    user_id: str
    reservation_id: str
    #: The message_id of the command whose stock step is overdue: two steps on
    #: one reservation (an increase, later another) time out separately.
    command_id: str

    @classmethod
    def of(cls, user_id: str, step: PendingStock) -> StockAnswerOverdue:
        """The timeout of ``step`` of ``user_id``'s cart (its command's id as text, whatever was stored)."""
        return cls(user_id, step.reservation_id, str(step.command.get("message_id")))

    @property
    def dedup_key(self) -> str:
        return f"stock-timeout:{self.reservation_id}:{self.command_id}"


@dataclass
class CartUnit(UnitOfWork):
    """The carts, catalog entries and stock levels one batch touches, changed in memory."""

    carts: dict[str, Cart] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    stock: dict[str, int] = field(default_factory=dict)
    dirty_carts: set[str] = field(default_factory=set)
    dirty_products: set[str] = field(default_factory=set)
    dirty_stock: set[str] = field(default_factory=set)
    #: The product ids of each catalog page asked for in the batch, by the asking message's id.
    pages: dict[str, list[str]] = field(default_factory=dict)

    def cart(self, user_id: str) -> Cart:
        return self.carts.setdefault(user_id, Cart(user_id))

    def put_cart(self, cart: Cart) -> None:
        if self.carts.get(cart.user_id) is cart:
            return  # unchanged: no write, no new version
        self.carts[cart.user_id] = cart
        self.dirty_carts.add(cart.user_id)

    def put_product(self, product: Product) -> None:
        self.products[product.product_id] = product
        self.dirty_products.add(product.product_id)
