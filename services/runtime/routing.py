"""A worker's table from message type to handler.

Each worker names, for every type it can receive (the messages of the contract
topics it consumes and of its own timers), the handler that takes it. The
table is checked when the worker is built, that is at start-up: a type without
a handler fails the start, never a message. A message is routed by its own
type, else by the nearest base class in the table (``Command`` for every cart
command, say); nothing falls through to a default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from contracts.channels import CHANNELS


class RoutingError(Exception):
    """A type the worker receives has no handler (at start-up), or a message of
    a type it does not receive reached it."""


def received_on(topics: Iterable[str]) -> tuple[type, ...]:
    """The contract's message types of ``topics``."""
    wanted = set(topics)
    return tuple(message for channel in CHANNELS if channel.topic in wanted for message in channel.messages)


class Routes:
    def __init__(self, table: Mapping[type, Callable[..., Any]], *, receives: Iterable[type]) -> None:
        self.table = dict(table)
        self.check(receives)

    def check(self, receives: Iterable[type]) -> None:
        """Fail unless every type of ``receives`` has a handler."""
        missing = sorted({kind.__name__ for kind in receives if self._handler(kind) is None})
        if missing:
            raise RoutingError(f"no handler for {', '.join(missing)}")

    def _handler(self, kind: type) -> Callable[..., Any] | None:
        for base in kind.__mro__:
            if base in self.table:
                return self.table[base]
        return None

    def __call__(self, unit: Any, message: Any, *more: Any) -> Any:
        """Hand the unit of work, ``message`` and ``more`` to the message's handler."""
        handler = self._handler(type(message))
        if handler is None:
            raise RoutingError(f"no handler for {type(message).__name__}")
        return handler(unit, message, *more)
