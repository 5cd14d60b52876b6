"""What happens to carts without a command: catalog events keep the catalog read
model current (a deleted product gives back the units carts held for it), and
the cart's timers run the periodic change check, the reminder and the expiry."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from contracts import stock as stock_contract
from contracts.catalog import ProductDeleted, ProductUpserted
from contracts.holders import cart_line_holder
from services.cart_worker import domain, housekeeping, published
from services.cart_worker.answers import CartSteps
from services.cart_worker.domain import Product, SizeOption
from services.cart_worker.housekeeping import HousekeepingDue
from services.cart_worker.unit import CartUnit
from services.runtime.emit import causal_envelope, event_records
from services.runtime.records import Outgoing


class CatalogAndHousekeeping(CartSteps):
    """Catalog events and the cart's own timers."""

    def _on_catalog_event(self, unit: CartUnit, event: ProductUpserted | ProductDeleted) -> list[Outgoing]:
        if isinstance(event, ProductUpserted):
            unit.put_product(
                Product(
                    product_id=event.product_id,
                    name=event.name,
                    price=event.price,
                    image_url=event.image_url,
                    is_deleted=event.is_deleted,
                    sizes=tuple(SizeOption(s.size, s.price) for s in event.sizes or ()),
                )
            )
            return []
        known = unit.products.get(event.product_id)
        unit.put_product(
            replace(known, is_deleted=True)
            if known
            else Product(event.product_id, name="", price=Decimal(0), is_deleted=True)
        )
        return self._release_deleted_product(unit, event)

    def _release_deleted_product(self, unit: CartUnit, event: ProductDeleted) -> list[Outgoing]:
        """A product that is no longer sold gives back the units carts held for it,
        whether reserved at add-to-cart or by a checkout that did not go through."""
        now = self.clock.now()
        releases = []
        for cart in list(unit.carts.values()):
            given_up, lines = domain.give_up_product(cart, event.product_id, now=now)
            unit.put_cart(given_up)
            for line in lines:
                assert line.reservation_id is not None
                releases.append(
                    self._stock_command(
                        stock_contract.ReleaseReservation,
                        f"{event.message_id}:{cart.user_id}:{line.item_id}",
                        event.correlation_id,
                        reservation_id=line.reservation_id,
                        product_id=line.product_id,
                        reason="product_deleted",
                        holder=cart_line_holder(cart.user_id, line.item_id),
                    )
                )
        return releases

    def _on_housekeeping(self, unit: CartUnit, due: HousekeepingDue) -> list[Outgoing]:
        now = self.clock.now()
        cart = unit.cart(due.user_id)
        if not housekeeping.is_due(cart, due, now):
            return []  # the buyer was active since: the timer moved
        if due.task == housekeeping.CHECK:
            stock = unit.stock if self.reserving else None
            result = housekeeping.periodic_check(cart, unit.products, stock, now, self.policy)
        elif due.task == housekeeping.REMIND:
            result = housekeeping.remind(cart, now, unit.products, unit.stock)
        else:
            retry_after = timedelta(seconds=self.settings.stock_reply_timeout_seconds)
            result = housekeeping.expire(cart, now, retry_after)
        unit.put_cart(result.cart)
        cause, envelope = due.dedup_key, causal_envelope(due.dedup_key, None, now)
        releases = [
            self._stock_command(
                stock_contract.ReleaseReservation,
                cause,
                None,
                reservation_id=line.reservation_id,
                product_id=line.product_id,
                reason="cart_expired" if due.task == housekeeping.EXPIRE else "item_unavailable",
                holder=cart_line_holder(cart.user_id, line.item_id),
            )
            for line in result.releases
        ]
        return [
            *event_records(
                result.cart_events, published.CART_EVENTS, topic=self.events_topic, key=cart.user_id,
                cause_id=cause, envelope=envelope,
            ),
            *event_records(
                result.notifications, published.NOTIFICATIONS, topic=self.notifications_topic, key=cart.user_id,
                cause_id=cause, envelope=envelope,
            ),
            *releases,
        ]
