"""What one batch of the cart worker works on: the carts, catalog entries and
stock levels it touches, changed in memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.cart_worker.domain import Cart, Product
from services.runtime.processing import UnitOfWork


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
