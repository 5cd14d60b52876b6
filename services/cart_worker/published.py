"""What each of the cart worker's domain events is published as: ``cart.events``
and ``notifications.events`` messages of the contract."""

from __future__ import annotations

from contracts import cart as cart_contract
from contracts import notifications as notification_contract
from services.cart_worker import housekeeping
from services.cart_worker.domain import events
from services.runtime.emit import ContractMap

CART_EVENTS: ContractMap = {
    events.ItemAdded: cart_contract.ItemAdded,
    events.ItemQuantityChanged: cart_contract.ItemQuantityChanged,
    events.ItemRemoved: cart_contract.ItemRemoved,
    events.CartCleared: cart_contract.CartCleared,
    events.ProductChangesDetected: cart_contract.ProductChangesDetected,
    events.ChangesAccepted: cart_contract.ChangesAccepted,
    events.CartCheckedOut: cart_contract.CartCheckedOut,
}

NOTIFICATIONS: ContractMap = {
    housekeeping.CartChangeAlert: notification_contract.CartChangeAlert,
    housekeeping.StockAlert: notification_contract.StockAlert,
    housekeeping.AbandonedCartReminder: notification_contract.AbandonedCartReminder,
    housekeeping.CartExpired: notification_contract.CartExpired,
}
