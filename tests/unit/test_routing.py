"""Each worker routes every type it can receive to a named handler, checked
when it is built: a type without a handler fails the start, never a message,
and nothing falls through to a default."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.ops.workers import WORKERS, load_spec
from services.runtime.clock import ManualClock
from services.runtime.routing import Routes, RoutingError, received_on
from services.runtime.settings import Settings


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_every_message_type_a_worker_s_groups_receive_has_a_handler(name):
    spec = load_spec(name)
    logic = spec.make_logic(Settings(), ManualClock(datetime(2026, 1, 1, tzinfo=UTC)))

    logic.routes.check(received_on(spec.consumed()))


def test_a_table_that_misses_a_type_fails_when_it_is_built():
    class Known: ...

    class Forgotten: ...

    with pytest.raises(RoutingError, match="Forgotten"):
        Routes({Known: lambda unit, message: None}, receives=(Known, Forgotten))


def test_a_message_of_a_type_nobody_routes_is_refused_not_taken_for_a_stock_answer():
    from services.cart_worker.handlers import CartLogic
    from services.cart_worker.unit import CartUnit

    class Stray:
        user_id = "ada"

    logic = CartLogic(Settings(), ManualClock(datetime(2026, 1, 1, tzinfo=UTC)))

    with pytest.raises(RoutingError, match="Stray"):
        logic.handle(CartUnit(), Stray())


def test_a_subclass_is_routed_to_the_handler_of_its_nearest_base():
    class Command: ...

    class AddItem(Command): ...

    routes = Routes({Command: lambda unit, message: "command"}, receives=(AddItem,))

    assert routes(None, AddItem()) == "command"
