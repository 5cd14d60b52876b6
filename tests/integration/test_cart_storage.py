"""How carts are stored and found again on the real database: the housekeeping
sweep finds carts by their earliest moment, and carts written by an earlier
release are found the same way once a worker of this release has started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from harness.deployment import open_deployment
from services.cart_worker import repository
from contracts import cart as cart_contract
from services.cart_worker.domain import Cart, PendingStock, StockAnswerOverdue
from services.cart_worker.sweeps import find_housekeeping_due, find_overdue
from services.runtime.clock import ManualClock
from services.runtime.settings import Settings

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(backends):
    """A deployment's database, fresh and not yet prepared by a worker."""
    deployment = await open_deployment(backends)
    try:
        yield deployment.db
    finally:
        await deployment.close()


async def test_the_sweep_finds_each_task_whose_moment_has_come_and_none_that_is_still_ahead(db):
    await repository.prepare(db)
    hour = timedelta(hours=1)
    carts = [
        Cart("reminded-and-expired", updated_at=NOW, check_at=NOW + hour, remind_at=NOW - hour, expire_at=NOW),
        Cart("checked", updated_at=NOW, check_at=NOW - hour, remind_at=NOW + hour, expire_at=NOW + hour),
        Cart("not-yet", updated_at=NOW, check_at=NOW + hour, remind_at=NOW + hour, expire_at=NOW + 2 * hour),
        Cart("nothing-scheduled", updated_at=NOW),
    ]
    await db[repository.CARTS].insert_many([repository.cart_to_doc(cart) for cart in carts])

    due = await find_housekeeping_due(db, ManualClock(NOW), Settings(), 100)

    assert sorted((item.user_id, item.task) for item in due) == [
        ("checked", "check"), ("reminded-and-expired", "expire"), ("reminded-and-expired", "remind")
    ]


async def test_carts_of_an_earlier_release_are_found_by_the_sweep_after_start_up(db):
    # As an earlier release stored them: an index per moment, no due_at.
    for moment in ("check_at", "remind_at", "expire_at", "updated_at"):
        await db[repository.CARTS].create_index(moment)
    await db[repository.CARTS].insert_many([
        {"_id": "legacy-due", "items": [], "pending": None, "queue": [], "updated_at": NOW,
         "check_at": None, "remind_at": NOW - timedelta(minutes=5), "expire_at": NOW + timedelta(days=1)},
        {"_id": "legacy-later", "items": [], "updated_at": NOW, "expire_at": NOW + timedelta(days=1)},
    ])

    await repository.prepare(db)
    await repository.prepare(db)  # a second start finds nothing left to do

    due = await find_housekeeping_due(db, ManualClock(NOW), Settings(), 100)
    assert [(item.user_id, item.task) for item in due] == [("legacy-due", "remind")]
    indexes = await db[repository.CARTS].index_information()
    assert not set(indexes) & set(repository.LEGACY_INDEXES), "the indexes every write kept up are gone"


def _step(name: str, deadline: datetime, answer: StockAnswerOverdue | None = None) -> PendingStock:
    add = cart_contract.AddItem(message_id=f"add-{name}", occurred_at=NOW, user_id="ann", product_id=name, quantity=1)
    return PendingStock(
        command=add, item_id=name, reservation_id=f"r-{name}",
        operation="reserve", previous=None, deadline=deadline, answer=answer,
    )


async def test_the_overdue_sweep_times_out_each_unanswered_step_past_its_deadline_and_no_other(db):
    await repository.prepare(db)
    minute = timedelta(minutes=1)
    carts = [
        # The first step is still within its time; the second's answer came and waits its turn.
        Cart("waiting-its-turn", steps=(_step("cap", NOW + minute), _step("mug", NOW - minute, StockAnswerOverdue("waiting-its-turn", "r-mug", "add-mug")))),
        Cart("two-late", steps=(_step("cap", NOW - minute), _step("mug", NOW - minute), _step("tee", NOW + minute))),
        Cart("in-time", steps=(_step("cap", NOW + minute),)),
    ]
    await db[repository.CARTS].insert_many([repository.cart_to_doc(cart) for cart in carts])
    # One step stored as a document of its own, as an earlier release did.
    await db[repository.CARTS].insert_one({
        "_id": "legacy", "items": [], "queue": [], "updated_at": NOW,
        "pending": {**repository.cart_to_doc(Cart("x", steps=(_step("cap", NOW - minute),)))["pending"][0]},
    })

    overdue = await find_overdue(db, ManualClock(NOW), Settings(), 100)

    assert sorted((item.user_id, item.reservation_id) for item in overdue) == [
        ("legacy", "r-cap"), ("two-late", "r-cap"), ("two-late", "r-mug")
    ]
