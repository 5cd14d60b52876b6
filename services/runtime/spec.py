"""What a worker is, for the runtime that runs it: the topics it consumes and
publishes, its logic, its indexes, its timers and background tasks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.runtime.clock import Clock
from services.runtime.mongo_storage import MongoState
from services.runtime.processing import BatchProcessor, WorkerLogic
from services.runtime.settings import Settings


@dataclass(frozen=True)
class Sweep:
    """Work a worker gives itself on a timer: ``find(db, clock, settings, limit)``
    returns up to ``limit`` internal messages that are due, oldest first,
    processed like consumed ones and deduped by ``key``."""

    find: Callable[[AsyncDatabase, Clock, Settings, int], Awaitable[list[Any]]]
    key: Callable[[Any], str]
    interval: Callable[[Settings], float] = lambda settings: 1.0


@dataclass(frozen=True)
class Retention:
    """Finished aggregates a worker keeps for a while, then prunes: documents of
    ``collection`` that ``finished(cutoff)`` matches, where ``cutoff`` lies
    ``hours(settings)`` before now."""

    collection: str
    hours: Callable[[Settings], float]
    finished: Callable[[datetime], dict[str, Any]]


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    #: Topics consumed (without the deployment's prefix).
    consumes: tuple[str, ...]
    #: Topics published to, created at start-up when missing.
    produces: tuple[str, ...]
    make_logic: Callable[[Settings, Clock], WorkerLogic]
    #: The worker's aggregate store on MongoDB, made from ``MongoState`` (what
    #: the logic's ``load`` and ``save`` are given).
    store: Callable[[MongoState], Any]
    #: Create the worker's indexes; safe to run on every start.
    prepare: Callable[[AsyncDatabase], Awaitable[None]]
    #: Work the worker gives itself on timers.
    sweeps: tuple[Sweep, ...] = ()
    #: Long-running tasks of the worker's own (a delayed-topic consumer), given
    #: the settings, the processor, the clock and a ``beat`` to call whenever
    #: they make progress; restarted after any exception.
    background: tuple[Callable[[Settings, BatchProcessor, Clock, Callable[[], None]], Awaitable[None]], ...] = ()
    #: Worker-specific gauges for ``cartflow status`` and the metrics endpoint.
    figures: Callable[[AsyncDatabase, datetime], Awaitable[dict[str, float]]] | None = None
    #: What grows with use and is pruned by age (beside the inbox and the outbox).
    retention: tuple[Retention, ...] = ()
    #: Consumer groups of the background tasks, by name, with the topics they read.
    extra_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def groups(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Every consumer group the worker runs (names without the deployment's affixes)."""
        return ((self.name, self.consumes), *self.extra_groups)

    def consumed(self) -> tuple[str, ...]:
        """Every topic the worker reads, by any of its groups: it writes their dead letters."""
        return tuple(sorted({topic for _, topics in self.groups() for topic in topics}))


def dedup_key(message: Any) -> str:
    """The dedup key of an internal message that names its own."""
    return message.dedup_key
