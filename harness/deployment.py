"""One isolated cartflow deployment on shared servers: its own topic prefix,
database and worker processes, so that tests never see each other's messages."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pymongo import AsyncMongoClient

from contracts.topics import ALL_TOPICS
from harness.support import Publisher, Tap, WorkerProcess
from services.ops.backends import Backends
from services.runtime.kafka import ensure_topics
from services.runtime.mongo import connect
from services.runtime.settings import Settings

LOG_DIR = Path(__file__).resolve().parent.parent / ".cartflow" / "test-logs"


@dataclass
class Deployment:
    """One isolated cartflow deployment on the shared servers."""

    backends: Backends
    prefix: str
    db_name: str
    settings_env: dict[str, str]
    mongo: AsyncMongoClient
    publisher: Publisher
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    taps: dict[str, Tap] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return self.prefix + name

    @property
    def db(self):
        return self.mongo[self.db_name]

    def worker(self, name: str, **env: str) -> WorkerProcess:
        process = WorkerProcess(name, {**self.settings_env, **env}, LOG_DIR / f"{self.prefix}{name}.log")
        self.workers[name] = process
        return process.start()

    async def gateway(self, name: str = "gateway", **env: str) -> str:
        """Start an HTTP gateway process for this deployment; its base URL once it answers."""
        port = free_port()
        process = WorkerProcess(
            name,
            {**self.settings_env, "CARTFLOW_GATEWAY_PORT": str(port), "CARTFLOW_GATEWAY_HOST": "127.0.0.1", **env},
            LOG_DIR / f"{self.prefix}{name}.log",
            command=("gateway",),
        )
        self.workers[name] = process.start()
        return await gateway_answering(process, port)

    async def create_topics(self, *names: str) -> None:
        settings = Settings(kafka_bootstrap=self.backends.kafka_bootstrap, topic_prefix=self.prefix)
        await ensure_topics(settings, self.backends.kafka_bootstrap, names)

    async def tap(self, name: str) -> Tap:
        """A collector of everything on ``name`` (a contract topic name, or its .dlq)."""
        if name not in self.taps:
            self.taps[name] = await Tap(self.backends.kafka_bootstrap, self.topic(name)).start()
        return self.taps[name]

    async def send(self, name: str, message: dict, key_field: str = "user_id") -> dict:
        return await self.publisher.send(self.topic(name), message, key_field)

    async def close(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        for tap in self.taps.values():
            await tap.stop()
        await self.publisher.stop()
        await self.mongo.close()


async def open_deployment(backends: Backends, **env: str) -> Deployment:
    tag = uuid.uuid4().hex[:8]
    prefix = f"t{tag}."
    db_name = f"cartflow_t{tag}"
    settings_env = {
        "CARTFLOW_KAFKA_BOOTSTRAP": backends.kafka_bootstrap,
        "CARTFLOW_MONGO_URL": backends.mongo_url,
        "CARTFLOW_MONGO_DB": db_name,
        "CARTFLOW_TOPIC_PREFIX": prefix,
        "CARTFLOW_TEST_BACKEND": "external",
        "CARTFLOW_RELAY_LEASE_SECONDS": "2",
        **env,
    }
    publisher = Publisher(backends.kafka_bootstrap)
    await publisher.start()
    deployment = Deployment(backends, prefix, db_name, settings_env, connect(backends.mongo_url), publisher)
    await deployment.create_topics(*ALL_TOPICS)
    return deployment


async def gateway_answering(process: WorkerProcess, port: int) -> str:
    """The base URL of a gateway process once it answers HTTP."""
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client, asyncio.timeout(60):
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/openapi.json")).status_code == 200:
                    return url
            if not process.alive:
                raise RuntimeError(f"the gateway exited; see {process.log_path}")
            await asyncio.sleep(0.2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: Every worker, for a deployment that runs the whole system.
ALL_WORKERS = ("cart", "stock", "checkout")


@contextlib.asynccontextmanager
async def running(backends: Backends, workers: tuple[str, ...] = ALL_WORKERS, **env: str) -> AsyncIterator[Deployment]:
    """A deployment with ``workers`` started, stopped and closed on the way out."""
    deployment = await open_deployment(backends, **env)
    for name in workers:
        deployment.worker(name)
    try:
        yield deployment
    finally:
        await deployment.close()

