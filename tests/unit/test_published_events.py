"""Every domain event a worker publishes has its contract model named in one
explicit map, and the model takes every field the event carries."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from services.cart_worker import housekeeping
from services.cart_worker import published as cart_published
from services.cart_worker.domain import events as cart_events
from services.checkout_worker import domain as checkout_domain
from services.checkout_worker import published as checkout_published
from services.stock_worker import domain as stock_domain
from services.stock_worker import published as stock_published

MAPS = {
    "cart events": (cart_published.CART_EVENTS, cart_events, None),
    "notifications": (cart_published.NOTIFICATIONS, housekeeping, ("CartChangeAlert", "StockAlert",
                                                                   "AbandonedCartReminder", "CartExpired")),
    "order events": (checkout_published.ORDER_EVENTS, checkout_domain, ("OrderPlaced", "PaymentRequested", "OrderPaid",
                     "OrderCancelled", "LatePaymentReceived", "PaymentAmountMismatch", "PaymentAttemptFailed",
                     "PaymentRefundRequired")),
    "stock events": (stock_published.STOCK_EVENTS, stock_domain, None),
}


def published_kinds(module, names):
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    if names is not None:
        return {c for c in classes if c.__name__ in names}
    return {c for c in classes if dataclasses.is_dataclass(c) and "Event" not in c.__name__
            and c.__name__ not in ("StockLevel", "Reservation", "StockOutcome", "Drift", "ExpireReservation")}


@pytest.mark.parametrize("name", sorted(MAPS))
def test_each_domain_event_is_published_as_a_named_contract_model_taking_all_its_fields(name):
    models, module, names = MAPS[name]

    assert set(models) == published_kinds(module, names)
    for event, model in models.items():
        assert {f.name for f in dataclasses.fields(event)} <= set(model.model_fields), (event, model)


def test_an_event_no_map_names_is_an_error_not_a_guess():
    from services.runtime.emit import event_records

    @dataclasses.dataclass(frozen=True)
    class ItemAdded:  # the name of a contract model, but not in the map
        user_id: str

    with pytest.raises(TypeError, match="published as nothing"):
        event_records([ItemAdded("ada")], {}, topic="t", key="k", cause_id="c", envelope={})
