"""The checkout saga as a pure state machine: every transition, duplicate and
out-of-order message."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.checkout_worker import domain
from services.checkout_worker.domain import (
    AWAITING_PAYMENT,
    CANCELLED,
    PAID,
    Checkout,
    CommitStock,
    Order,
    ReleaseStock,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(minutes=15)


def checkout(lines: int = 2) -> Checkout:
    orders = tuple(
        Order(f"o{n}", f"i{n}", f"p{n}", f"Thing {n}", None, 2, Decimal("10.00"), Decimal("20.00"), f"r{n}")
        for n in range(lines)
    )
    return Checkout(
        payment_id="pay1",
        payment_hash="h",
        user_id="ada",
        checkout_type="full_cart" if lines > 1 else "single_item",
        orders=orders,
        total_amount=Decimal("20.00") * lines,
        payment_method="card",
        gateway_name="stripe",
        shipping_address={"city": "Lyon"},
        created_at=NOW,
        deadline=DEADLINE,
    )


def test_starting_places_every_order_requests_one_payment_and_schedules_the_deadline():
    step = domain.start(checkout(2))
    kinds = [type(event).__name__ for event in step.events]
    assert kinds == ["OrderPlaced", "OrderPlaced", "PaymentRequested"]
    assert step.events[-1].order_ids == ["o0", "o1"] and step.events[-1].total_amount == Decimal("40.00")
    assert step.effects[-1] == domain.ScheduleDeadline("pay1", DEADLINE)
    assert all(event.status == "under_paying" for event in step.events[:2])


def test_starting_takes_each_cart_reservation_over_only_from_the_buyers_cart_line():
    step = domain.start(checkout(2))
    assert step.effects[:2] == (
        domain.TransferStock("r0", "p0", "order:o0", "cart:ada:i0"),
        domain.TransferStock("r1", "p1", "order:o1", "cart:ada:i1"),
    )
    assert {o.stock for o in step.checkout.orders} == {domain.TRANSFERRING}


def test_the_right_payment_in_time_pays_every_order_and_commits_their_stock():
    step = domain.payment_succeeded(checkout(2), Decimal("40.00"), now=NOW + timedelta(minutes=1))
    assert step.checkout.state == PAID and {o.status for o in step.checkout.orders} == {"paid"}
    assert step.effects == (CommitStock("r0", "p0", "o0", "order:o0"), CommitStock("r1", "p1", "o1", "order:o1"))
    assert [type(e).__name__ for e in step.events] == ["OrderPaid", "OrderPaid"]


def answer(saga, order_index: int, granted: bool, quantity: int | None = None) -> domain.StockAnswer:
    order = saga.orders[order_index]
    held = quantity if quantity is not None else order.quantity
    return domain.StockAnswer(order.stock_command_id, order.reservation_id, granted, order.product_id, held)


def test_a_refused_take_over_reserves_the_units_afresh_for_the_order():
    started = domain.start(checkout(1)).checkout

    step = domain.stock_answered(started, answer(started, 0, granted=False), now=NOW)

    (reserve,) = step.effects
    assert isinstance(reserve, domain.ReserveStock) and reserve.holder == "order:o0" and reserve.expires_at is None
    assert step.checkout.orders[0].stock == domain.RESERVING
    assert step.checkout.orders[0].reservation_id == reserve.reservation_id != "r0"


def test_a_payment_waits_for_the_stock_and_then_pays_only_orders_whose_units_are_held():
    saga = domain.start(checkout(2)).checkout
    saga = domain.stock_answered(saga, answer(saga, 0, granted=True), now=NOW).checkout
    saga = domain.stock_answered(saga, answer(saga, 1, granted=False), now=NOW).checkout  # reserving afresh

    waiting = domain.payment_succeeded(saga, Decimal("40.00"), now=NOW, reference="ch_1")
    assert waiting.checkout.state == domain.PAYMENT_RECEIVED and not waiting.effects and not waiting.events
    settled = domain.stock_answered(waiting.checkout, answer(waiting.checkout, 1, granted=False), now=NOW)

    assert settled.checkout.state == PAID
    assert [o.status for o in settled.checkout.orders] == ["paid", "cancelled"]
    assert settled.effects == (CommitStock("r0", "p0", "o0", "order:o0"),), "no unit committed that is not held"
    refund = settled.events[-1]
    assert isinstance(refund, domain.PaymentRefundRequired)
    assert (refund.amount, refund.reason, refund.order_ids) == (Decimal("20.00"), "out_of_stock", ["o1"])


def test_a_payment_whose_every_order_lost_its_units_cancels_the_checkout_and_refunds_all():
    saga = domain.start(checkout(1)).checkout
    saga = domain.stock_answered(saga, answer(saga, 0, granted=False), now=NOW).checkout
    saga = domain.stock_answered(saga, answer(saga, 0, granted=False), now=NOW).checkout

    step = domain.payment_succeeded(saga, Decimal("20.00"), now=NOW, reference="ch_1")

    assert step.checkout.state == CANCELLED and step.effects == ()
    assert step.events[-1].amount == Decimal("20.00")


def test_an_answer_after_the_checkout_was_cancelled_starts_nothing():
    saga = domain.start(checkout(1)).checkout
    cancelled = domain.deadline_reached(saga, now=DEADLINE)
    assert cancelled.effects == (ReleaseStock("r0", "p0", "payment_timeout", "order:o0"),)

    late = domain.stock_answered(cancelled.checkout, answer(saga, 0, granted=False), now=DEADLINE)

    assert not late.changed


def test_a_second_distinct_payment_on_a_paid_checkout_asks_for_a_refund():
    paid = domain.payment_succeeded(checkout(), Decimal("40.00"), now=NOW, reference="ch_1").checkout

    same = domain.payment_succeeded(paid, Decimal("40.00"), now=NOW, reference="ch_1")
    other = domain.payment_succeeded(paid, Decimal("40.00"), now=NOW, reference="ch_2")

    assert not same.changed
    (refund,) = other.events
    assert isinstance(refund, domain.PaymentRefundRequired)
    assert (refund.reason, refund.gateway_reference, refund.amount) == ("duplicate_payment", "ch_2", Decimal("40.00"))
    assert other.effects == (), "nothing is sold twice"


def test_a_wrong_amount_is_refused_and_the_payment_stays_pending():
    step = domain.payment_succeeded(checkout(2), Decimal("39.99"), now=NOW)
    assert step.checkout.state == AWAITING_PAYMENT and step.effects == ()
    (mismatch,) = step.events
    assert (mismatch.expected, mismatch.received) == (Decimal("40.00"), Decimal("39.99"))


def test_a_repeated_payment_changes_nothing():
    paid = domain.payment_succeeded(checkout(), Decimal("40.00"), now=NOW).checkout
    again = domain.payment_succeeded(paid, Decimal("40.00"), now=NOW)
    assert again.checkout == paid and not again.changed


def test_the_deadline_cancels_an_unpaid_checkout_and_releases_in_reverse_order():
    step = domain.deadline_reached(checkout(2), now=DEADLINE)
    assert step.checkout.state == CANCELLED and step.checkout.cancel_reason == "payment_timeout"
    assert step.effects == (
        ReleaseStock("r1", "p1", "payment_timeout", "order:o1"),
        ReleaseStock("r0", "p0", "payment_timeout", "order:o0"),
    )
    assert {event.reason for event in step.events} == {"payment_timeout"}


def test_the_deadline_never_fires_early():
    step = domain.deadline_reached(checkout(), now=DEADLINE - timedelta(microseconds=1))
    assert step.checkout.state == AWAITING_PAYMENT and not step.changed


def test_the_deadline_after_payment_does_nothing():
    paid = domain.payment_succeeded(checkout(), Decimal("40.00"), now=NOW).checkout
    assert not domain.deadline_reached(paid, now=DEADLINE).changed


def test_a_deadline_delivered_twice_cancels_once():
    cancelled = domain.deadline_reached(checkout(), now=DEADLINE).checkout
    assert not domain.deadline_reached(cancelled, now=DEADLINE + timedelta(seconds=1)).changed


def test_a_payment_after_cancellation_is_reported_late_and_sells_nothing():
    cancelled = domain.deadline_reached(checkout(), now=DEADLINE).checkout
    step = domain.payment_succeeded(cancelled, Decimal("40.00"), now=DEADLINE + timedelta(seconds=3))
    assert step.checkout.state == CANCELLED and step.effects == ()
    (late,) = step.events
    assert isinstance(late, domain.LatePaymentReceived) and late.amount == Decimal("40.00")


def test_a_payment_seen_after_the_deadline_but_before_its_timer_ends_cancelled_and_late():
    step = domain.payment_succeeded(checkout(1), Decimal("20.00"), now=DEADLINE)
    assert step.checkout.state == CANCELLED
    assert [type(e).__name__ for e in step.events] == ["OrderCancelled", "LatePaymentReceived"]
    assert all(isinstance(effect, ReleaseStock) for effect in step.effects)


def test_a_failed_payment_lets_the_buyer_retry_until_the_deadline():
    step = domain.payment_failed(checkout(), "card declined", now=NOW, cancel=False)
    assert step.checkout.state == AWAITING_PAYMENT and step.checkout.failed_attempts == 1
    retried = domain.payment_succeeded(step.checkout, Decimal("40.00"), now=NOW)
    assert retried.checkout.state == PAID


def test_a_failed_payment_cancels_at_once_when_configured_to():
    step = domain.payment_failed(checkout(), "card declined", now=NOW, cancel=True)
    assert step.checkout.state == CANCELLED and step.checkout.cancel_reason == "payment_failed"


def test_the_response_has_one_order_for_a_single_item_checkout_and_a_list_for_a_full_one():
    single = domain.checkout_response(checkout(1), now=NOW)
    full = domain.checkout_response(checkout(3), now=NOW)
    assert single["order"]["order_id"] == "o0" and "orders" not in single
    assert [o["order_id"] for o in full["orders"]] == ["o0", "o1", "o2"]
    assert full["time_remaining_seconds"] == 900 and full["total_amount"] == "60.00"


def test_a_take_over_of_other_units_than_the_order_needs_is_given_back_and_the_exact_units_reserved():
    started = domain.start(checkout(1)).checkout

    step = domain.stock_answered(started, answer(started, 0, granted=True, quantity=5), now=NOW)

    release, reserve = step.effects
    assert release == ReleaseStock("r0", "p0", "quantity_mismatch", "order:o0")
    assert isinstance(reserve, domain.ReserveStock) and reserve.quantity == 2
    assert step.checkout.orders[0].stock == domain.RESERVING


def test_an_answer_about_another_reservation_than_the_one_asked_for_is_ignored():
    started = domain.start(checkout(1)).checkout
    order = started.orders[0]
    forged = domain.StockAnswer(order.stock_command_id, " r0 ", True, "p0", 2)

    assert not domain.stock_answered(started, forged, now=NOW).changed


def test_the_same_charge_again_changes_nothing_even_after_an_out_of_stock_cancellation():
    saga = domain.start(checkout(1)).checkout
    saga = domain.stock_answered(saga, answer(saga, 0, granted=False), now=NOW).checkout
    saga = domain.stock_answered(saga, answer(saga, 0, granted=False), now=NOW).checkout
    cancelled = domain.payment_succeeded(saga, Decimal("20.00"), now=NOW, reference="ch_1").checkout

    again = domain.payment_succeeded(cancelled, Decimal("20.00"), now=NOW, reference="ch_1")

    assert cancelled.state == CANCELLED and not again.changed, "one refund, not two"


def refunds(step) -> list[str]:
    """What a step asks the payments team to give back, by kind."""
    kinds = ("LatePaymentReceived", "PaymentRefundRequired", "PaymentAmountMismatch")
    return [type(event).__name__ for event in step.events if type(event).__name__ in kinds]


def test_a_late_charge_announced_again_is_refunded_once():
    cancelled = domain.deadline_reached(checkout(1), now=DEADLINE).checkout
    first = domain.payment_succeeded(cancelled, Decimal("20.00"), now=DEADLINE, reference="ch_1")
    again = domain.payment_succeeded(first.checkout, Decimal("20.00"), now=DEADLINE, reference="ch_1")
    assert refunds(first) == ["LatePaymentReceived"] and first.events[0].gateway_reference == "ch_1"
    assert refunds(again) == [] and again.checkout == first.checkout


def test_a_charge_arriving_exactly_at_the_deadline_and_announced_again_is_refunded_once():
    saga = checkout(1)
    first = domain.payment_succeeded(saga, Decimal("20.00"), now=DEADLINE, reference="ch_1")
    again = domain.payment_succeeded(first.checkout, Decimal("20.00"), now=DEADLINE, reference="ch_1")
    assert first.checkout.state == CANCELLED and refunds(first) == ["LatePaymentReceived"]
    assert refunds(again) == []


def test_a_second_charge_on_a_paid_checkout_announced_again_is_refunded_once():
    paid = domain.payment_succeeded(checkout(1), Decimal("20.00"), now=NOW, reference="ch_1").checkout
    second = domain.payment_succeeded(paid, Decimal("20.00"), now=NOW, reference="ch_2")
    again = domain.payment_succeeded(second.checkout, Decimal("20.00"), now=NOW, reference="ch_2")
    assert refunds(second) == ["PaymentRefundRequired"] and refunds(again) == []


def test_a_wrong_amount_announced_again_is_reported_once_and_the_right_one_still_pays():
    first = domain.payment_succeeded(checkout(1), Decimal("2.00"), now=NOW, reference="ch_1")
    again = domain.payment_succeeded(first.checkout, Decimal("2.00"), now=NOW, reference="ch_1")
    right = domain.payment_succeeded(again.checkout, Decimal("20.00"), now=NOW, reference="ch_2")
    assert refunds(first) == ["PaymentAmountMismatch"] and refunds(again) == []
    assert right.checkout.state == PAID


def names(step) -> list[str]:
    return [type(event).__name__ for event in step.events]


def test_an_order_whose_units_a_recount_took_back_is_cancelled_and_the_payment_refunds_its_share():
    saga = domain.start(checkout(2)).checkout
    saga = domain.stock_answered(saga, answer(saga, 0, True), now=NOW).checkout
    saga = domain.stock_answered(saga, answer(saga, 1, True), now=NOW).checkout
    taken = domain.units_taken_back(saga, saga.orders[1].reservation_id, now=NOW)
    assert names(taken) == ["OrderCancelled"] and taken.events[0].reason == "out_of_stock"
    assert taken.checkout.state == AWAITING_PAYMENT

    paid = domain.payment_succeeded(taken.checkout, Decimal("40.00"), now=NOW, reference="ch_1")
    assert names(paid) == ["OrderPaid", "PaymentRefundRequired"], "the lost order is cancelled once"
    assert paid.events[1].amount == Decimal("20.00") and paid.events[1].order_ids == ["o1"]
    assert paid.effects == (CommitStock(saga.orders[0].reservation_id, "p0", "o0", "order:o0"),)
    assert domain.units_taken_back(paid.checkout, saga.orders[1].reservation_id, now=NOW).events == ()


def test_a_checkout_whose_every_order_a_recount_took_back_is_cancelled_and_a_later_payment_is_late():
    saga = domain.start(checkout(1)).checkout
    saga = domain.stock_answered(saga, answer(saga, 0, True), now=NOW).checkout
    taken = domain.units_taken_back(saga, saga.orders[0].reservation_id, now=NOW)
    assert taken.checkout.state == CANCELLED and taken.effects == ()
    late = domain.payment_succeeded(taken.checkout, Decimal("20.00"), now=NOW, reference="ch_1")
    assert names(late) == ["LatePaymentReceived"]
    assert names(domain.deadline_reached(taken.checkout, now=DEADLINE)) == []


def test_a_recount_that_overtakes_the_commit_of_a_paid_order_cancels_and_refunds_that_order():
    saga = domain.start(checkout(2)).checkout
    saga = domain.stock_answered(saga, answer(saga, 0, True), now=NOW).checkout
    saga = domain.stock_answered(saga, answer(saga, 1, True), now=NOW).checkout
    paid = domain.payment_succeeded(saga, Decimal("40.00"), now=NOW, reference="ch_1").checkout
    taken = domain.units_taken_back(paid, saga.orders[0].reservation_id, now=NOW)
    assert names(taken) == ["OrderCancelled", "PaymentRefundRequired"]
    assert taken.events[1].amount == Decimal("20.00") and taken.events[1].gateway_reference == "ch_1"
    assert taken.checkout.state == PAID
    rest = domain.units_taken_back(taken.checkout, saga.orders[1].reservation_id, now=NOW)
    assert rest.checkout.state == CANCELLED


def test_a_deadline_after_a_recount_took_an_order_back_cancels_each_order_once():
    saga = domain.start(checkout(2)).checkout
    saga = domain.stock_answered(saga, answer(saga, 0, True), now=NOW).checkout
    saga = domain.stock_answered(saga, answer(saga, 1, True), now=NOW).checkout
    taken = domain.units_taken_back(saga, saga.orders[0].reservation_id, now=NOW).checkout
    expired = domain.deadline_reached(taken, now=DEADLINE)
    assert [e.order_id for e in expired.events] == ["o1"]
    assert [e.reservation_id for e in expired.effects] == [saga.orders[1].reservation_id]


def test_a_charge_for_no_checkout_announced_again_is_one_refund_to_a_downstream_that_dedups_on_message_id():
    import json

    from contracts.payment import PaymentSucceeded
    from services.checkout_worker.handlers import CheckoutLogic, UnknownPayment
    from services.runtime.clock import ManualClock
    from services.runtime.processing import Work
    from services.runtime.settings import Settings

    logic = CheckoutLogic(Settings(), ManualClock(NOW))
    announced = [
        PaymentSucceeded(message_id=f"announce-{n}", occurred_at=NOW, payment_id="pay-none", amount=Decimal("5.00"), gateway_reference="ch_9")
        for n in range(2)
    ]
    refunds = {
        json.loads(out.value)["message_id"]
        for payment in announced
        for out in logic.failed(Work(None, payment.message_id, payment), UnknownPayment("no checkout"))
    }
    assert len(refunds) == 1
