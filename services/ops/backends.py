"""Which Kafka and MongoDB to use, in this order:

1. explicit URLs from ``CARTFLOW_KAFKA_BOOTSTRAP`` and ``CARTFLOW_MONGO_URL``;
2. testcontainers, when a Docker engine answers (Kafka in KRaft mode, MongoDB
   as a single-node replica set, since transactions need one);
3. the embedded pair (Tansu and SecantusDB) on free ports.

``CARTFLOW_TEST_BACKEND=embedded|containers|external`` forces one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.ops.embedded import EmbeddedKafka, EmbeddedMongo
from services.runtime.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Backends:
    kind: str
    kafka_bootstrap: str
    mongo_url: str
    #: Present for the embedded pair, so tests can crash and restart the servers.
    kafka: EmbeddedKafka | None = None
    mongo: EmbeddedMongo | None = None


def docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


def choose_backend(settings: Settings) -> str:
    if settings.backend != "auto":
        return settings.backend
    if settings.kafka_bootstrap and settings.mongo_url:
        return "external"
    if docker_engine_answers():
        return "containers"
    return "embedded"


@contextlib.contextmanager
def open_backends(
    settings: Settings, *, data_dir: Path | None = None, log_dir: Path | None = None
) -> Iterator[Backends]:
    """Yield running backends and stop whatever was started here on exit."""
    kind = choose_backend(settings)
    log.info("using %s backends", kind)
    if kind == "external":
        if not (settings.kafka_bootstrap and settings.mongo_url):
            raise RuntimeError("external backends need CARTFLOW_KAFKA_BOOTSTRAP and CARTFLOW_MONGO_URL")
        yield Backends(kind, settings.kafka_bootstrap, settings.mongo_url)
    elif kind == "containers":
        with _containers() as backends:
            yield backends
    else:
        with _embedded(data_dir, log_dir) as backends:
            yield backends


@contextlib.contextmanager
def _embedded(data_dir: Path | None, log_dir: Path | None) -> Iterator[Backends]:
    kafka = EmbeddedKafka(log_path=log_dir / "kafka.log" if log_dir else None)
    mongo = EmbeddedMongo(
        storage_path=data_dir / "mongo" if data_dir else None,
        log_path=log_dir / "mongo.log" if log_dir else None,
    )
    try:
        kafka.start()
        mongo.start()
        yield Backends("embedded", kafka.bootstrap, mongo.url, kafka=kafka, mongo=mongo)
    finally:
        mongo.stop()
        kafka.stop()


@contextlib.contextmanager
def _containers() -> Iterator[Backends]:  # pragma: no cover - needs a Docker engine
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    kafka = KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft()
    mongo = MongoDbContainer("mongo:7.0").with_command("--replSet rs0 --bind_ip_all")
    with kafka, mongo:
        from pymongo import MongoClient

        host, port = mongo.get_container_host_ip(), mongo.get_exposed_port(27017)
        url = f"mongodb://{mongo.username}:{mongo.password}@{host}:{port}/?directConnection=true"
        with MongoClient(url) as client:
            with contextlib.suppress(Exception):
                client.admin.command("replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": "localhost:27017"}]})
        yield Backends("containers", kafka.get_bootstrap_server(), url)
