"""What happens to a cart with the passing of time: change checks and alerts,
abandoned-cart reminders, expiry. Time is a parameter, so days pass in microseconds."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts.cart import GetCart
from services.cart_worker import domain, housekeeping
from services.cart_worker.domain import Cart, Product
from services.cart_worker.housekeeping import (
    AbandonedCartReminder,
    CartChangeAlert,
    CartExpired,
    HousekeepingDue,
    Policy,
    StockAlert,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MUG = Product("mug", "Enamel mug", Decimal("9.50"))
POLICY = Policy(remind_after=timedelta(days=7), expire_after=timedelta(days=30), check_every=timedelta(hours=1))


def cart_with_mug(quantity: int = 2, **line_fields) -> Cart:
    outcome = domain.add_item(
        Cart("ann"), MUG, product_id="mug", quantity=quantity, size=None, properties=None,
        new_item_id="item-1", now=NOW,
    )
    cart = outcome.cart
    if line_fields:
        cart = replace(cart, lines=(replace(cart.lines[0], **line_fields),))
    return housekeeping.touch(cart, NOW, POLICY)


def later(**delta) -> datetime:
    return NOW + timedelta(**delta)


def test_activity_schedules_the_check_the_reminder_and_the_expiry():
    cart = cart_with_mug()

    assert (cart.active_at, cart.check_at) == (NOW, later(hours=1))
    assert (cart.remind_at, cart.expire_at) == (later(days=7), later(days=30))


def test_new_activity_restarts_the_reminder_and_expiry_but_keeps_the_check_rhythm():
    cart = housekeeping.touch(cart_with_mug(), later(days=3), POLICY)

    assert (cart.remind_at, cart.expire_at) == (later(days=10), later(days=33))
    assert cart.check_at == later(hours=1)


def test_an_empty_cart_has_nothing_scheduled():
    cart = housekeeping.touch(replace(cart_with_mug(), lines=()), later(days=1), POLICY)

    assert (cart.check_at, cart.remind_at, cart.expire_at) == (None, None, None)


def test_no_reminder_is_scheduled_when_abandoned_cart_notifications_are_off():
    cart = housekeeping.touch(cart_with_mug(), NOW, replace(POLICY, notify_abandoned=False))

    assert cart.remind_at is None and cart.expire_at is not None


def test_a_task_whose_moment_moved_is_not_due_any_more():
    cart = cart_with_mug()
    old = HousekeepingDue("ann", housekeeping.REMIND, cart.remind_at)
    moved = housekeeping.touch(cart, later(days=6), POLICY)

    assert housekeeping.is_due(cart, old, later(days=7))
    assert not housekeeping.is_due(moved, old, later(days=7))
    assert not housekeeping.is_due(cart, old, later(days=6)), "not before its moment"


def test_an_abandoned_cart_gets_one_reminder_with_its_contents_at_todays_prices():
    result = housekeeping.remind(cart_with_mug(quantity=2), later(days=7), {"mug": replace(MUG, price=Decimal("8.00"))})

    assert result.notifications == (AbandonedCartReminder("ann", NOW, 2, Decimal("16.00")),)
    assert result.cart.remind_at is None, "one reminder per idle period"
    assert result.cart.lines, "a reminder changes nothing in the cart"


def test_an_expired_cart_is_emptied_and_gives_back_its_reserved_stock():
    cart = cart_with_mug(reservation_id="r-1", reserved_quantity=2, reservation_state=domain.RESERVED)

    result = housekeeping.expire(cart, later(days=30), timedelta(seconds=10))

    assert result.cart.is_empty and result.cart.expire_at is None
    assert result.cart_events == (domain.CartCleared("ann", ["item-1"]),)
    assert result.notifications == (CartExpired("ann", NOW, ["item-1"], ["r-1"]),)
    assert [line.reservation_id for line in result.releases] == ["r-1"]


def test_a_cart_waiting_for_the_stock_worker_expires_a_little_later():
    cart = replace(cart_with_mug(), queue=(GetCart(message_id="look-1", occurred_at=NOW, user_id="ann"),))

    result = housekeeping.expire(cart, later(days=30), timedelta(seconds=10))

    assert result.cart.lines == cart.lines and not result.notifications
    assert result.cart.expire_at == later(days=30, seconds=10)


def test_the_change_check_alerts_to_a_price_change_once():
    cheaper = {"mug": replace(MUG, price=Decimal("7.00"))}

    first = housekeeping.periodic_check(cart_with_mug(), cheaper, None, later(hours=1), POLICY)
    second = housekeeping.periodic_check(first.cart, cheaper, None, later(hours=2), POLICY)

    (alert,) = first.notifications
    assert isinstance(alert, CartChangeAlert)
    assert alert.items[0]["changes"][0]["field"] == "price"
    assert alert.items[0]["changes"][0]["new"] == "7.00"
    assert first.cart.lines[0].has_product_changed
    assert first.cart.check_at == later(hours=2)
    assert second.notifications == (), "a change already announced is not announced again"
    assert second.cart.check_at == later(hours=3)


def test_a_line_that_becomes_unavailable_raises_a_stock_alert():
    withdrawn = {"mug": replace(MUG, is_deleted=True)}

    result = housekeeping.periodic_check(cart_with_mug(), withdrawn, None, later(hours=1), POLICY)

    assert [type(n) for n in result.notifications] == [CartChangeAlert, StockAlert]
    assert result.notifications[1].item_id == "item-1"
    assert result.cart.lines, "without auto-removal the line stays, marked as changed"


def test_a_sold_out_line_raises_a_stock_alert():
    result = housekeeping.periodic_check(cart_with_mug(), {"mug": MUG}, {"mug|": 0}, later(hours=1), POLICY)

    assert any(isinstance(n, StockAlert) for n in result.notifications)


def test_auto_removal_takes_unavailable_lines_out_and_releases_their_stock():
    cart = cart_with_mug(reservation_id="r-1", reserved_quantity=2, reservation_state=domain.RESERVED)
    policy = replace(POLICY, auto_remove_unavailable=True)

    result = housekeeping.periodic_check(cart, {}, None, later(hours=1), policy)

    assert result.cart.is_empty and result.cart.check_at is None
    assert domain.ItemRemoved("ann", "item-1", "mug", None, 2) in result.cart_events
    assert result.notifications[0].removed_item_ids == ["item-1"]
    assert [line.reservation_id for line in result.releases] == ["r-1"]


def test_no_alert_is_sent_when_change_notifications_are_off():
    policy = replace(POLICY, notify_changes=False)

    result = housekeeping.periodic_check(cart_with_mug(), {}, None, later(hours=1), policy)

    assert result.notifications == ()
    assert result.cart.lines[0].has_product_changed, "the check itself still records the change"
