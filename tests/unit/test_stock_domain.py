"""Stock levels and reservations: every transition and every refusal, without servers."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from contracts.errors import ErrorCode
from services.stock_worker import domain
from services.stock_worker.domain import (
    ACTIVE,
    COMMITTED,
    EXPIRED,
    RELEASED,
    StockLevel,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=60)


def stocked(on_hand=10, **kwargs) -> StockLevel:
    return StockLevel("shoe", None, on_hand=on_hand, version=1, **kwargs)


def reserve(level, quantity=3, existing=None, reservation_id="r1", expires_at=LATER):
    return domain.reserve(
        level, existing, reservation_id=reservation_id, quantity=quantity, holder="cart:ada:i1", expires_at=expires_at, now=NOW
    )


def reserved(level=None, quantity=3):
    outcome = reserve(level or stocked(), quantity)
    return outcome.level, outcome.reservation


class TestSetStock:
    def test_setting_stock_changes_on_hand_and_announces_the_level(self):
        outcome = domain.set_stock(StockLevel("shoe"), 10, active=(), now=NOW)
        assert outcome.level.on_hand == 10 and outcome.level.available == 10
        assert outcome.events == (domain.StockLevelChanged("shoe", None, 10, 0, 0, 10),)

    def test_setting_the_same_level_again_changes_nothing(self):
        outcome = domain.set_stock(stocked(10), 10, active=(), now=NOW)
        assert outcome.level is None and outcome.events == ()

    def test_lowering_stock_below_what_is_held_releases_the_newest_reservations_until_what_is_held_fits(self):
        level, held = stocked(10), []
        for n, quantity in enumerate((2, 3, 2, 1)):
            outcome = domain.reserve(
                level, None, reservation_id=f"r{n}", quantity=quantity, holder=f"cart:ada:i{n}", expires_at=LATER,
                now=NOW + timedelta(seconds=n),
            )
            level, held = outcome.level, [*held, outcome.reservation]
        level = domain.commit(level, held[0], order_id="o1", now=NOW).level  # 2 sold, 6 reserved

        outcome = domain.set_stock(level, 5, active=held[1:], now=LATER)

        released = [event for event in outcome.events if isinstance(event, domain.StockReleased)]
        assert [(e.reservation_id, e.holder, e.quantity, e.reason) for e in released] == [
            ("r3", "cart:ada:i3", 1, "stock_reduced"),
            ("r2", "cart:ada:i2", 2, "stock_reduced"),
        ], "newest first, and no more than needed"
        assert (outcome.level.on_hand, outcome.level.reserved, outcome.level.sold) == (5, 3, 2)
        assert outcome.level.reserved + outcome.level.sold <= outcome.level.on_hand
        assert [(r.reservation_id, r.state, r.reason) for r in outcome.released] == [
            ("r3", RELEASED, "stock_reduced"), ("r2", RELEASED, "stock_reduced"),
        ]
        assert outcome.events[-1] == domain.StockLevelChanged("shoe", None, 5, 3, 2, 0), "one level, as left"

    def test_a_recount_below_what_was_sold_releases_every_reservation_and_refuses_new_ones(self):
        level, reservation = reserved(stocked(10), 4)
        sold = domain.reserve(level, None, reservation_id="r2", quantity=6, holder="order:o1", expires_at=None, now=NOW)
        level = domain.commit(sold.level, sold.reservation, order_id="o1", now=NOW).level

        outcome = domain.set_stock(level, 5, active=[reservation], now=NOW)

        assert (outcome.level.reserved, outcome.level.sold, outcome.level.available) == (0, 6, -1)
        (rejected,) = reserve(outcome.level, 1, reservation_id="r3").events
        assert rejected.error_code == ErrorCode.INSUFFICIENT_STOCK and rejected.available == 0

    def test_raising_stock_or_setting_it_above_what_is_held_releases_nothing(self):
        level, reservation = reserved(stocked(10), 8)
        for on_hand in (8, 12):
            outcome = domain.set_stock(level, on_hand, active=[reservation], now=NOW)
            assert outcome.released == () and outcome.level.reserved == 8

    def test_setting_the_same_level_again_sheds_what_an_earlier_release_left_held_beyond_it(self):
        level, reservation = reserved(stocked(10), 8)
        over_held = replace(level, on_hand=5)  # as a release before this rule left it

        outcome = domain.set_stock(over_held, 5, active=[reservation], now=NOW)

        assert [r.reservation_id for r in outcome.released] == ["r1"] and outcome.level.available == 5


class TestReserve:
    def test_a_reservation_takes_units_from_available(self):
        outcome = reserve(stocked(10), 3)
        assert (outcome.level.reserved, outcome.level.available) == (3, 7)
        assert outcome.reservation.state == ACTIVE and outcome.reservation.expires_at == LATER
        assert outcome.events[0] == domain.StockReserved("r1", "shoe", None, "cart:ada:i1", 3, LATER, 7)

    def test_the_last_units_can_be_reserved_but_not_one_more(self):
        level, _ = reserved(stocked(10), 10)
        outcome = reserve(level, 1, reservation_id="r2")
        assert outcome.level is None and outcome.reservation is None
        (rejected,) = outcome.events
        assert (rejected.error_code, rejected.requested, rejected.available) == (ErrorCode.INSUFFICIENT_STOCK, 1, 0)

    def test_a_reservation_is_for_the_full_quantity_or_nothing(self):
        (rejected,) = reserve(stocked(2), 3).events
        assert rejected.available == 2 and rejected.requested == 3

    def test_reserving_the_same_reservation_twice_reserves_once(self):
        level, reservation = reserved(stocked(10), 3)
        again = reserve(level, 3, existing=reservation)
        assert again.level is None and again.reservation is None
        assert isinstance(again.events[0], domain.StockReserved)

    def test_a_quantity_below_one_is_refused(self):
        (refused,) = reserve(stocked(10), 0).events
        assert refused.error_code == ErrorCode.INVALID_QUANTITY

    def test_a_negative_available_level_refuses_every_reservation(self):
        level, reservation = reserved(stocked(10), 8)
        level = domain.commit(level, reservation, order_id="o1", now=NOW).level
        level = domain.set_stock(level, 5, active=(), now=NOW).level
        (rejected,) = reserve(level, 1, reservation_id="r2").events
        assert rejected.available == 0


class TestAdjust:
    def test_growing_a_reservation_needs_the_extra_units(self):
        level, reservation = reserved(stocked(5), 3)
        grown = domain.adjust(level, reservation, quantity=5, expires_at=None, now=NOW)
        assert grown.level.reserved == 5 and grown.reservation.quantity == 5
        too_much = domain.adjust(grown.level, grown.reservation, quantity=6, expires_at=None, now=NOW)
        (rejected,) = too_much.events
        assert rejected.operation == "adjust" and rejected.available == 5

    def test_shrinking_gives_units_back_and_refreshes_the_expiry(self):
        level, reservation = reserved(stocked(5), 3)
        renewed = LATER + timedelta(minutes=5)
        outcome = domain.adjust(level, reservation, quantity=1, expires_at=renewed, now=NOW)
        assert outcome.level.available == 4 and outcome.reservation.expires_at == renewed

    def test_a_closed_reservation_cannot_be_adjusted(self):
        level, reservation = reserved()
        released = domain.release(level, reservation, reason="removed", now=NOW)
        (refused,) = domain.adjust(released.level, released.reservation, quantity=1, expires_at=None, now=NOW).events
        assert refused.error_code == ErrorCode.RESERVATION_NOT_ACTIVE


class TestReleaseAndCommit:
    def test_releasing_gives_the_units_back(self):
        level, reservation = reserved(stocked(10), 3)
        outcome = domain.release(level, reservation, reason="removed_from_cart", now=NOW)
        assert outcome.level.available == 10 and outcome.reservation.state == RELEASED
        assert outcome.events[0].no_op is False

    def test_releasing_twice_is_a_no_op_reported_as_such(self):
        level, reservation = reserved()
        first = domain.release(level, reservation, reason="x", now=NOW)
        second = domain.release(first.level, first.reservation, reason="x", now=NOW)
        assert second.level is None and second.events[0].no_op is True

    def test_committing_turns_reserved_into_sold(self):
        level, reservation = reserved(stocked(10), 3)
        outcome = domain.commit(level, reservation, order_id="o1", now=NOW)
        assert (outcome.level.reserved, outcome.level.sold, outcome.level.available) == (0, 3, 7)
        assert outcome.reservation.state == COMMITTED

    def test_committing_twice_is_a_no_op_and_releasing_a_sold_reservation_too(self):
        level, reservation = reserved()
        done = domain.commit(level, reservation, order_id="o1", now=NOW)
        assert domain.commit(done.level, done.reservation, order_id="o1", now=NOW).events[0].no_op is True
        assert domain.release(done.level, done.reservation, reason="x", now=NOW).events[0].no_op is True

    def test_committing_a_released_reservation_is_refused(self):
        level, reservation = reserved()
        released = domain.release(level, reservation, reason="x", now=NOW)
        (refused,) = domain.commit(released.level, released.reservation, order_id="o1", now=NOW).events
        assert refused.error_code == ErrorCode.RESERVATION_NOT_ACTIVE

    def test_an_unknown_reservation_is_refused(self):
        (refused,) = domain.unknown_reservation("nope", "shoe", "CommitReservation").events
        assert refused.error_code == ErrorCode.RESERVATION_NOT_FOUND


class TestExpiry:
    def test_an_expired_reservation_is_released_as_expired(self):
        level, reservation = reserved(stocked(10), 3)
        outcome = domain.expire(level, reservation, now=LATER)
        assert outcome.reservation.state == EXPIRED and outcome.level.available == 10
        assert outcome.events[0].reason == "expired"

    def test_a_reservation_renewed_since_is_not_expired(self):
        level, reservation = reserved()
        assert domain.expire(level, reservation, now=LATER - timedelta(seconds=1)).events == ()


class TestAudit:
    def test_counters_that_match_the_records_show_no_drift(self):
        level, reservation = reserved(stocked(10), 3)
        assert domain.audit([level], [reservation]) == []

    def test_a_counter_that_disagrees_with_the_records_is_reported(self):
        level, reservation = reserved(stocked(10), 3)
        (drift,) = domain.audit([level], [reservation, reservation])
        assert (drift.counted_reserved, drift.recorded_reserved) == (6, 3)


class TestTransfer:
    def test_a_reservation_moves_to_its_new_holder_without_expiry(self):
        _, reservation = reserved()
        outcome = domain.transfer(reservation, holder="order:o1", expires_at=None, now=NOW)
        assert outcome.reservation.holder == "order:o1" and outcome.reservation.expires_at is None
        assert outcome.level is None
        assert outcome.events[0].previous_holder == "cart:ada:i1"

    def test_a_closed_reservation_cannot_move(self):
        level, reservation = reserved()
        released = domain.release(level, reservation, reason="x", now=NOW)
        (refused,) = domain.transfer(released.reservation, holder="order:o1", expires_at=None, now=NOW).events
        assert refused.error_code == ErrorCode.RESERVATION_NOT_ACTIVE


class TestWhoMayTouchAReservation:
    def test_a_command_naming_another_holder_or_product_is_refused(self):
        _, reservation = reserved()
        for holder, product in (("cart:eve:i9", None), (None, "sock")):
            (refusal,) = domain.wrong_owner(
                reservation, command_type="ReleaseReservation", holder=holder, product_id=product
            ).events
            assert refusal.error_code == ErrorCode.RESERVATION_HOLDER_MISMATCH

    def test_units_held_for_an_order_are_touched_only_by_a_command_naming_the_order(self):
        _, reservation = reserved()
        ordered = domain.transfer(reservation, holder="order:o1", expires_at=None, now=NOW).reservation

        anonymous = domain.wrong_owner(ordered, command_type="ReleaseReservation", holder=None, product_id=None)
        named = domain.wrong_owner(ordered, command_type="CommitReservation", holder="order:o1", product_id="shoe")

        assert anonymous is not None and anonymous.events[0].error_code == ErrorCode.RESERVATION_HOLDER_MISMATCH
        assert named is None

    def test_a_transfer_that_already_happened_is_announced_again_so_its_sender_gets_an_answer(self):
        _, reservation = reserved()
        moved = domain.transfer(reservation, holder="order:o1", expires_at=None, now=NOW).reservation

        again = domain.transfer(moved, holder="order:o1", expires_at=None, now=NOW)

        assert again.reservation is None and again.level is None, "nothing changes"
        (event,) = again.events
        assert isinstance(event, domain.ReservationTransferred) and event.holder == "order:o1"


def test_a_batch_announces_each_level_it_changed_once_with_the_level_it_left():
    import json

    from contracts import stock as stock_contract
    from services.runtime.clock import ManualClock
    from services.runtime.settings import Settings
    from services.stock_worker.handlers import StockLogic, StockUnit

    logic, unit = StockLogic(Settings(), ManualClock(NOW)), StockUnit(levels={"shoe|": stocked(10)})
    answers = []
    for n, quantity in enumerate((2, 3, 20)):  # the last one is refused
        command = stock_contract.ReserveStock(
            message_id=f"c{n}", occurred_at=NOW, reservation_id=f"r{n}", product_id="shoe", quantity=quantity,
            holder=f"cart:ada:i{n}", expires_at=LATER,
        )
        answers += [json.loads(record.value)["type"] for record in logic.handle(unit, command)]
    announced = [json.loads(record.value) for record in logic.finish(unit)]

    assert answers == ["StockReserved", "StockReserved", "StockReservationRejected"]
    assert [(e["type"], e["reserved"], e["available"], e["causation_id"]) for e in announced] == [
        ("StockLevelChanged", 5, 5, "c1")
    ]
    assert logic.finish(unit) == [], "announced once"


def test_three_held_units_cut_to_one_sell_one_however_many_checkouts_commit():
    """The review's case: 3 reserved of 3, ``SetStock {on_hand: 1}``, then every
    holder's order is committed. Only the oldest reservation survives the recount."""
    import json

    from contracts import stock as stock_contract
    from services.runtime.clock import ManualClock
    from services.runtime.settings import Settings
    from services.stock_worker.handlers import StockLogic, StockUnit

    clock = ManualClock(NOW)
    logic, unit = StockLogic(Settings(), clock), StockUnit(levels={"shoe|": stocked(3)})

    def send(command) -> list[dict]:
        return [json.loads(record.value) for record in (*logic.handle(unit, command), *logic.finish(unit))]

    for n in range(3):
        send(stock_contract.ReserveStock(
            message_id=f"reserve-{n}", occurred_at=clock.now(), reservation_id=f"r{n}", product_id="shoe", quantity=1,
            holder=f"cart:buyer{n}:i{n}", expires_at=LATER,
        ))
        clock.advance(1)

    recount = send(stock_contract.SetStock(message_id="recount", occurred_at=clock.now(), product_id="shoe", on_hand=1))
    answers = [
        send(stock_contract.CommitReservation(
            message_id=f"commit-{n}", occurred_at=clock.now(), reservation_id=f"r{n}", product_id="shoe",
            order_id=f"o{n}", holder=f"cart:buyer{n}:i{n}",
        ))[0]["type"]
        for n in range(3)
    ]

    released = [event for event in recount if event["type"] == "StockReleased"]
    assert [(e["reservation_id"], e["holder"], e["reason"], e["causation_id"]) for e in released] == [
        ("r2", "cart:buyer2:i2", "stock_reduced", "recount"),
        ("r1", "cart:buyer1:i1", "stock_reduced", "recount"),
    ]
    (level,) = [event for event in recount if event["type"] == "StockLevelChanged"]
    assert (level["on_hand"], level["reserved"], level["available"]) == (1, 1, 0)
    assert answers == ["StockCommitted", "StockCommandRejected", "StockCommandRejected"]
    final = unit.levels["shoe|"]
    assert (final.on_hand, final.reserved, final.sold) == (1, 0, 1), "never more sold than on hand"
