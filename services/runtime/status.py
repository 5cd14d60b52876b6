"""What operators look at first: per worker, how far behind its consumer groups
are, what waits in its outbox, what sits in its dead-letter topics, and the
worker's own gauges (open checkouts, the most overdue deadline, active
reservations). ``cartflow status`` prints it; the metrics endpoint exports it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from contracts.topics import dead_letter_topic
from services.runtime.clock import Clock
from services.runtime.offsets import group_positions, topic_record_counts
from services.runtime.outbox import PARKED_SUFFIX, unsent_records
from services.runtime.settings import Settings
from services.runtime.spec import WorkerSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerStatus:
    worker: str
    #: Records not yet committed, per consumer group.
    lag: dict[str, int]
    outbox_backlog: int
    #: Seconds the oldest unpublished outbox record has waited (0 when empty).
    outbox_age_seconds: float
    dead_letters: int
    #: Outbox records that can never be published, set aside (see services.runtime.outbox).
    parked: int = 0
    figures: dict[str, float] = field(default_factory=dict)


async def outbox_backlog(db: AsyncDatabase, worker: str, now: datetime) -> tuple[int, float]:
    """Unpublished records in ``worker``'s outbox and the age of the oldest one."""
    count, written = await unsent_records(db, f"{worker}.outbox")
    if written is None:
        return count, 0.0
    if written.tzinfo is None:  # a client without tz_aware reads UTC back naive
        written = written.replace(tzinfo=now.tzinfo)
    return count, max(0.0, (now - written).total_seconds())


async def worker_status(spec: WorkerSpec, settings: Settings, db: AsyncDatabase, now: datetime) -> WorkerStatus:
    bootstrap, options = settings.kafka_bootstrap or "", settings.kafka_client_options
    lag = {}
    for group, topics in spec.groups():
        positions = await group_positions(
            bootstrap,
            settings.group_id(group),
            [settings.topic(t) for t in topics],
            **options,
        )
        lag[settings.group_id(group)] = sum(p.lag for p in positions)
    backlog, age = await outbox_backlog(db, spec.name, now)
    letters = await topic_record_counts(
        bootstrap,
        [dead_letter_topic(settings.topic(t)) for t in spec.consumes],
        **options,
    )
    figures = await spec.figures(db, now) if spec.figures else {}
    parked = await db[f"{spec.name}.outbox{PARKED_SUFFIX}"].count_documents({})
    return WorkerStatus(spec.name, lag, backlog, age, sum(letters.values()), figures=figures, parked=parked)


async def refresh_metrics(
    spec: WorkerSpec, settings: Settings, db: AsyncDatabase, clock: Clock, beat: Callable[[], None] = lambda: None
) -> None:
    """Keep the worker's status gauges current for the metrics endpoint."""
    from services.runtime import observability as metrics

    while True:
        try:
            status = await worker_status(spec, settings, db, clock.now())
            for group, lag in status.lag.items():
                metrics.CONSUMER_LAG.labels(group).set(lag)
            metrics.OUTBOX_BACKLOG.set(status.outbox_backlog)
            metrics.OUTBOX_AGE.set(status.outbox_age_seconds)
            metrics.DEAD_LETTERS.set(status.dead_letters)
            metrics.OUTBOX_PARKED.set(status.parked)
            for name, value in status.figures.items():
                metrics.WORKER_GAUGE.labels(name).set(value)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("refreshing the status metrics failed; trying again later", exc_info=True)
        beat()  # a failed refresh is not a stall: the next one may pass
        await asyncio.sleep(settings.metrics_refresh_seconds)
