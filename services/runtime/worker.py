"""One place that turns a worker's logic into a running FastStream application.

Start-up: connect to MongoDB, create indexes and topics, start the outbox relay,
then the broker starts consuming. Shut-down (SIGTERM or Ctrl-C): the broker stops
fetching and finishes the batch in hand, then the relay publishes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from faststream import FastStream
from pymongo.asynchronous.database import AsyncDatabase

from services.runtime.clock import Clock, SystemClock
from services.runtime.kafka import ensure_topics, make_broker, make_producer, subscribe_batches
from services.runtime.mongo import connect
from services.runtime.outbox import OutboxRelay
from services.runtime.processing import BatchProcessor, WorkerLogic
from services.runtime.records import Incoming
from services.runtime.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    #: Topics consumed (without the deployment's prefix).
    consumes: tuple[str, ...]
    #: Topics published to, created at start-up when missing.
    produces: tuple[str, ...]
    make_logic: Callable[[Settings, Clock], WorkerLogic]
    #: Create the worker's indexes; safe to run on every start.
    prepare: Callable[[AsyncDatabase], Awaitable[None]]


async def prepare_runtime_collections(db: AsyncDatabase, worker: str) -> None:
    # The outbox is read in _id order, which the primary key index already serves.
    await db[f"{worker}.inbox"].create_index("processed_at")


def build_app(spec: WorkerSpec, settings: Settings, clock: Clock | None = None) -> FastStream:
    if not (settings.kafka_bootstrap and settings.mongo_url):
        raise RuntimeError("set CARTFLOW_KAFKA_BOOTSTRAP and CARTFLOW_MONGO_URL (or use `cartflow up`)")
    clock = clock or SystemClock()
    bootstrap = settings.kafka_bootstrap
    broker = make_broker(settings, bootstrap)
    app = FastStream(broker, logger=log)
    running: dict[str, object] = {}

    async def process(records: list[Incoming]) -> None:
        processor = running["processor"]
        assert isinstance(processor, BatchProcessor)
        await processor.process(records)

    subscribe_batches(broker, settings, worker=spec.name, topics=spec.consumes, process=process)

    @app.on_startup
    async def start_resources() -> None:
        client = connect(settings.mongo_url or "")
        db = client[settings.mongo_db]
        await prepare_runtime_collections(db, spec.name)
        await spec.prepare(db)
        await ensure_topics(settings, bootstrap, (*spec.consumes, *spec.produces))
        producer = make_producer(settings, bootstrap)
        await producer.start()
        relay = OutboxRelay(
            db,
            f"{spec.name}.outbox",
            producer,
            batch_size=settings.relay_batch_size,
            poll_seconds=settings.relay_poll_seconds,
            lease_seconds=settings.relay_lease_seconds,
            clock=clock,
        )
        running.update(
            client=client,
            producer=producer,
            relay=relay,
            relay_task=asyncio.create_task(relay.run(), name=f"{spec.name}-outbox-relay"),
            processor=BatchProcessor(
                spec.make_logic(settings, clock),
                db,
                clock,
                retry_max_seconds=settings.retry_max_seconds,
                on_commit=relay.wake,
            ),
        )

    @app.after_shutdown
    async def stop_resources() -> None:
        relay_task = running.get("relay_task")
        if isinstance(relay_task, asyncio.Task):
            relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay_task
        relay = running.get("relay")
        if isinstance(relay, OutboxRelay):
            await relay.stop()
        producer = running.get("producer")
        if producer is not None:
            await producer.stop()  # type: ignore[attr-defined]
        client = running.get("client")
        if client is not None:
            await client.close()  # type: ignore[attr-defined]

    return app
