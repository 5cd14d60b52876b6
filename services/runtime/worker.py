"""One place that turns a worker's logic into a running FastStream application.

Start-up: connect to MongoDB, create indexes and topics, start the outbox relay,
then the broker starts consuming. Shut-down (SIGTERM or Ctrl-C): the broker stops
fetching and finishes the batch in hand, then the relay publishes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import datetime, timedelta
from dataclasses import dataclass
from typing import Any

from faststream import FastStream
# Module level: FastDepends resolves the handlers' annotations by name.
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.asynchronous.mongo_client import AsyncMongoClient

from services.runtime.clock import Clock, SystemClock
from services.runtime.kafka import (
    ensure_topics,
    make_broker,
    make_producer,
    subscribe_batches,
)
from services.runtime.mongo import connect, round_trips
from services.runtime.mongo_storage import MongoStorage, inbox_collections
from services.runtime.outbox import OutboxRelay, prepare_outbox
from services.runtime.processing import BatchProcessor
from services.runtime.records import Incoming
from services.runtime.routing import received_on
from services.runtime.pruning import keep_windows
from services.runtime.settings import Settings
from services.runtime.spec import Sweep, WorkerSpec
from services.runtime.supervision import TaskHealth, backoff_seconds

log = logging.getLogger(__name__)


#: Most failing items a sweep backs off from at once (beyond it, the oldest are forgotten).
MAX_DEFERRED = 10_000


async def run_sweep(
    name: str, sweep: Sweep, processor: BatchProcessor, db: AsyncDatabase, settings: Settings, clock: Clock,
    health: TaskHealth,
) -> None:
    """Find what is due and process it, forever. An item whose handling fails is
    tried again after a growing delay, and the next look asks for that many more
    items, so failing items never crowd out the ones behind them."""
    interval = sweep.interval(settings)
    deferred: dict[str, tuple[int, datetime]] = {}  # key -> (failures, when to try again)
    while True:
        now = clock.now()
        due = await sweep.find(db, clock, settings, settings.batch_max_records + len(deferred))
        ready = [item for item in due if sweep.key(item) not in deferred or deferred[sweep.key(item)][1] <= now]
        for start in range(0, len(ready), settings.batch_max_records):
            chunk = ready[start : start + settings.batch_max_records]
            failed = await processor.process_internal(chunk, sweep.key)
            for item in chunk:
                key = sweep.key(item)
                if key in failed:
                    failures = deferred.get(key, (0, now))[0] + 1
                    deferred[key] = (failures, now + timedelta(seconds=backoff_seconds(failures, first=interval, cap=300)))
                else:
                    deferred.pop(key, None)
        if len(deferred) > MAX_DEFERRED:
            for key in sorted(deferred, key=lambda k: deferred[k][1])[: len(deferred) - MAX_DEFERRED]:
                del deferred[key]
        health.beat(name)
        await asyncio.sleep(interval)


async def prepare_runtime_collections(db: AsyncDatabase, worker: str) -> None:
    # The outbox is read unsent first, in _id order; it and both inboxes are
    # pruned by age (services.runtime.pruning).
    await prepare_outbox(db, f"{worker}.outbox")
    for inbox in inbox_collections(worker):
        await db[inbox].create_index("processed_at")


@dataclass
class WorkerResources:
    """What a running worker holds: opened at start-up, closed at shut-down."""

    client: AsyncMongoClient
    producer: Any
    relay: OutboxRelay
    processor: BatchProcessor
    health: TaskHealth


class WorkerLifespan:
    """One worker's resources from start-up to shut-down. ``resources`` is None
    until start-up has finished, so the probes can tell "starting" from "ready"."""

    def __init__(self, spec: WorkerSpec, settings: Settings, clock: Clock) -> None:
        self.spec = spec
        self.settings = settings
        self.clock = clock
        self.resources: WorkerResources | None = None

    async def start(self) -> None:
        """Open everything, or, when a step fails, close what was opened before
        re-raising (the process then exits; nothing keeps running half started)."""
        async with contextlib.AsyncExitStack() as opened:
            self.resources = await self._open(opened)
            opened.pop_all()

    async def _open(self, opened: contextlib.AsyncExitStack) -> WorkerResources:
        spec, settings, clock = self.spec, self.settings, self.clock
        bootstrap = settings.kafka_bootstrap or ""
        client = connect(settings.mongo_url or "")
        round_trips.measure_bytes = settings.mongo_measure_write_bytes
        opened.push_async_callback(client.close)
        db = client[settings.mongo_db]
        await prepare_runtime_collections(db, spec.name)
        await spec.prepare(db)
        # A dead-letter topic is written by the consumer of its topic: those are the worker's to need.
        await ensure_topics(settings, bootstrap, (*spec.consumes, *spec.produces), dead_letters=spec.consumed())
        producer = make_producer(settings, bootstrap)
        await producer.start()
        opened.push_async_callback(producer.stop)
        health = TaskHealth(clock, settings.task_unhealthy_after_seconds)
        opened.push_async_callback(_cancel_all, health)
        relay_name = f"{spec.name}-outbox-relay"
        relay = OutboxRelay(
            db,
            f"{spec.name}.outbox",
            producer,
            batch_size=settings.relay_batch_size,
            poll_seconds=settings.relay_poll_seconds,
            lease_seconds=settings.relay_lease_seconds,
            clock=clock,
            topic_wait_seconds=settings.relay_topic_wait_seconds,
            max_record_bytes=settings.producer_max_request_bytes,
            beat=lambda: health.beat(relay_name),
        )
        logic = spec.make_logic(settings, clock)
        # Every type the worker's consumer groups receive has a handler, or the worker does not start.
        logic.routes.check(received_on(spec.consumed()))
        processor = BatchProcessor(
            logic,
            MongoStorage(db, spec.name),
            clock,
            store=spec.store,
            retry_max_seconds=settings.retry_max_seconds,
            on_commit=relay.wake,
            max_message_bytes=settings.max_message_bytes,
        )
        health.start(relay_name, relay.run, every=settings.relay_poll_seconds)
        pruning = f"{spec.name}-retention"
        health.start(
            pruning,
            functools.partial(keep_windows, spec, settings, db, clock, functools.partial(health.beat, pruning)),
            every=settings.inbox_prune_interval_seconds,
        )
        for sweep in spec.sweeps:
            name = f"{spec.name}-{sweep.find.__name__}"
            health.start(
                name,
                functools.partial(run_sweep, name, sweep, processor, db, settings, clock, health),
                every=sweep.interval(settings),
            )
        for task in spec.background:
            name = f"{spec.name}-{task.__name__}"
            health.start(name, functools.partial(task, settings, processor, clock, functools.partial(health.beat, name)))
        if settings.http_port is not None:
            from services.runtime.status import refresh_metrics

            name = f"{spec.name}-metrics"
            beat = functools.partial(health.beat, name)
            health.start(
                name,
                functools.partial(refresh_metrics, spec, settings, db, clock, beat),
                every=settings.metrics_refresh_seconds,
            )
        return WorkerResources(client, producer, relay, processor, health)

    async def stop(self) -> None:
        """Background tasks first, then the relay publishes what is left, then the connections close."""
        resources, self.resources = self.resources, None
        if resources is None:
            return
        await _cancel_all(resources.health)
        await resources.relay.stop()
        await resources.producer.stop()
        await resources.client.close()
        log.info(
            "%s worker stopped: %d messages processed, %d MongoDB round trips, "
            "%d write statements, %d bytes written; %s",
            self.spec.name,
            resources.processor.processed,
            round_trips.count,
            round_trips.statements,
            round_trips.bytes_written,
            resources.processor.times.summary(resources.processor.processed),
        )

    async def process(self, records: list[Incoming]) -> None:
        if self.resources is None:
            raise RuntimeError("the worker has not started")  # the batch is redelivered
        await self.resources.processor.process(records)


async def _cancel_all(health: TaskHealth) -> None:
    for task in health.tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def http_routes(broker: Any, lifespan: WorkerLifespan) -> list[tuple[str, Any]]:
    """/healthz (alive: the loop answers, no background task ended or keeps failing), /readyz
    (connected to Kafka and MongoDB) and /metrics (Prometheus)."""
    from prometheus_client import make_asgi_app

    from services.runtime.observability import METRICS_REGISTRY

    @get(include_in_schema=False)
    async def healthz(scope: Any) -> AsgiResponse:
        problems = lifespan.resources.health.problems() if lifespan.resources else []
        if problems:
            return AsgiResponse(f"unhealthy: {'; '.join(problems)}".encode(), 500)
        return AsgiResponse(b"ok", 200)

    @get(include_in_schema=False)
    async def readyz(scope: Any) -> AsgiResponse:
        if lifespan.resources is None:
            return AsgiResponse(b"starting", 503)
        try:
            async with asyncio.timeout(2):
                await lifespan.resources.client.admin.command("ping")
        except Exception:
            return AsgiResponse(b"MongoDB unreachable", 503)
        if not await broker.ping(timeout=2):
            return AsgiResponse(b"Kafka unreachable", 503)
        return AsgiResponse(b"ready", 200)

    return [("/healthz", healthz), ("/readyz", readyz), ("/metrics", make_asgi_app(METRICS_REGISTRY))]


def build_app(spec: WorkerSpec, settings: Settings, clock: Clock | None = None) -> FastStream | AsgiFastStream:
    """The worker as a FastStream application; with ``http_port`` set, an ASGI one
    (run by uvicorn) that also serves the health and metrics endpoints."""
    if not (settings.kafka_bootstrap and settings.mongo_url):
        raise RuntimeError("set CARTFLOW_KAFKA_BOOTSTRAP and CARTFLOW_MONGO_URL (or use `cartflow up`)")
    lifespan = WorkerLifespan(spec, settings, clock or SystemClock())
    broker = make_broker(settings, settings.kafka_bootstrap, name=f"cartflow-{spec.name}")
    app: FastStream | AsgiFastStream = FastStream(broker, logger=log)
    if settings.http_port is not None:
        app = AsgiFastStream(broker, asgi_routes=http_routes(broker, lifespan), logger=log)
    subscribe_batches(broker, settings, worker=spec.name, topics=spec.consumes, process=lifespan.process)
    # Resources open before the broker starts consuming and close after it stopped.
    app.on_startup(lifespan.start)
    app.after_shutdown(lifespan.stop)
    return app
