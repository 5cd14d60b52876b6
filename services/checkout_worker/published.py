"""What each of the checkout saga's domain events is published as: ``order.events``
messages of the contract."""

from __future__ import annotations

from contracts import order as order_contract
from services.checkout_worker import domain
from services.runtime.emit import ContractMap

ORDER_EVENTS: ContractMap = {
    domain.OrderPlaced: order_contract.OrderPlaced,
    domain.PaymentRequested: order_contract.PaymentRequested,
    domain.OrderPaid: order_contract.OrderPaid,
    domain.OrderCancelled: order_contract.OrderCancelled,
    domain.LatePaymentReceived: order_contract.LatePaymentReceived,
    domain.PaymentAmountMismatch: order_contract.PaymentAmountMismatch,
    domain.PaymentAttemptFailed: order_contract.PaymentAttemptFailed,
    domain.PaymentRefundRequired: order_contract.PaymentRefundRequired,
}
