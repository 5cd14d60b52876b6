"""Kafka plumbing: topics, the relay's producer, and the FastStream batch subscriber."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from contracts.topics import dead_letter_topic
from services.runtime.records import Incoming
from services.runtime.settings import Settings

log = logging.getLogger(__name__)


#: Kafka's answers to a principal that may not create topics (its ACLs grant
#: Read and Write only): the topics are an operator's to create.
NOT_AUTHORIZED = frozenset({29, 31})  # TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED


async def ensure_topics(
    settings: Settings, bootstrap: str, names: Iterable[str], *, dead_letters: Iterable[str] | None = None
) -> None:
    """Create the topics that do not exist yet, with the dead-letter topics of
    ``dead_letters`` (default: of every one of ``names``). Where the broker's ACLs
    do not let this principal create a topic, say so and go on: an operator
    creates the topics (``cartflow up`` against the servers)."""
    names = list(names)
    wanted = {settings.topic(name) for name in names}
    wanted |= {dead_letter_topic(settings.topic(name)) for name in (names if dead_letters is None else dead_letters)}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **settings.kafka_client_options)
    await admin.start()
    try:
        missing = sorted(wanted - set(await admin.list_topics()))
        if missing:
            response = await admin.create_topics(
                [NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=1) for name in missing]
            )
            refused = []
            for topic, code, *_ in getattr(response, "topic_errors", ()):
                if code in NOT_AUTHORIZED:
                    refused.append(topic)
                elif code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"could not create topic {topic}: error {code}")
            if refused:
                log.warning("not allowed to create topics %s: an operator creates them", ", ".join(refused))
            if created := [topic for topic in missing if topic not in refused]:
                log.info("created topics %s", ", ".join(created))
    finally:
        await admin.close()


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str, *, wait: bool = False) -> list[TopicPartition]:
    """The partitions of ``topic`` as ``consumer`` sees them, refreshing its metadata
    when the topic is new to it; with ``wait``, until the topic exists."""
    found = consumer.partitions_for_topic(topic)
    while not found:
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
        if not found and not wait:
            return []
    return [TopicPartition(topic, partition) for partition in sorted(found)]


def make_producer(settings: Settings, bootstrap: str) -> AIOKafkaProducer:
    # acks=all for durability; no transactions: the outbox plus consumer-side
    # dedup give exactly-once effects without them. The idempotent producer is
    # optional (it keeps a key's order even when a batch must be retried long).
    # No linger: a record leaves at once, and records sent while a request is in
    # flight still go together in the next one.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=0,
        max_batch_size=1 << 20,
        # The relay parks larger records itself, with a reason, before they get here.
        max_request_size=settings.producer_max_request_bytes + (64 << 10),
        enable_idempotence=settings.kafka_idempotent_producer,
        **settings.kafka_client_options,
    )


def faststream_security(settings: Settings) -> BaseSecurity | None:
    """The same Kafka security settings, in the shape FastStream's broker takes."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = settings.kafka_client_options.get("ssl_context")
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context)  # type: ignore[arg-type]
    username = settings.kafka_sasl_username or ""
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    mechanism = (settings.kafka_sasl_mechanism or "PLAIN").upper()
    kind = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}[mechanism]
    return kind(username, password, ssl_context=ssl_context, use_ssl=protocol == "SASL_SSL")  # type: ignore[arg-type]


def make_broker(settings: Settings, bootstrap: str, *, name: str = "cartflow") -> KafkaBroker:
    from faststream.kafka.prometheus import KafkaPrometheusMiddleware

    from services.runtime.observability import METRICS_REGISTRY

    return KafkaBroker(
        bootstrap,
        security=faststream_security(settings),
        logger=logging.getLogger("cartflow.broker"),
        middlewares=[KafkaPrometheusMiddleware(registry=METRICS_REGISTRY, app_name=name)],
    )


async def _raw_bodies(message) -> None:
    # The processor reads the raw records itself, so that bytes that are not JSON
    # (or lie about their content type) reach it instead of failing in a decoder.
    return None


def subscribe_batches(
    broker: KafkaBroker,
    settings: Settings,
    *,
    worker: str,
    topics: Iterable[str],
    process: Callable[[list[Incoming]], Awaitable[None]],
) -> None:
    """Consume ``topics`` in batches, committing offsets only after ``process`` returned.

    NACK_ON_ERROR rewinds every partition of a failed batch to its first record,
    so nothing is committed past a message whose effects are not durable.
    """

    @broker.subscriber(
        *[settings.topic(name) for name in topics],
        group_id=settings.group_id(worker),
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=_raw_bodies,
        title=f"{worker}-worker",
    )
    async def consume(message: KafkaMessage) -> None:
        await process([Incoming.from_record(record) for record in message.raw_message])
