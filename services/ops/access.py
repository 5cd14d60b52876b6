"""Who may read and write what on Kafka: the ACL table of docs/security.md and
its ``kafka-acls.sh`` commands, derived from the code.

cartflow's own components say what they consume and produce: each worker in
its spec (``WorkerSpec.consumes``, ``produces`` and consumer groups; each
consumed topic's dead-letter topic is written by its consumer; a worker that
answers commands also writes the reply topics clients name), the gateway in
``services.gateway.exchange`` (which refuses to publish anywhere else). The
services around cartflow get exactly the inbound topics of the contract they
feed. Every grant is a literal topic name or, for the reply topics clients
choose themselves, the prefix ``replies.``: both are what Kafka ACLs express.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.topics import (
    CART_COMMANDS,
    CART_REPLIES,
    CATALOG_EVENTS,
    CHECKOUT_QUERIES,
    CLIENT_REPLIES_PREFIX,
    GATEWAY_REPLIES,
    ORDER_EVENTS,
    STOCK_COMMANDS,
    dead_letter_topic,
)
from services.gateway import exchange as gateway
from services.ops.workers import WORKERS, load_spec


@dataclass(frozen=True)
class Topic:
    """A topic an ACL names: literally, or every topic under a prefix."""

    name: str
    prefixed: bool = False

    def shown(self, prefix: str) -> str:
        return f"`{prefix}`{self.name}*" if self.prefixed else f"`{prefix}`{self.name}"


@dataclass(frozen=True)
class Principal:
    user: str
    role: str
    reads: tuple[Topic, ...] = ()
    writes: tuple[Topic, ...] = ()
    #: Consumer groups (under the topic prefix); none: reads without a group.
    groups: tuple[str, ...] = ()
    note: str = ""


def _literal(*names: str) -> tuple[Topic, ...]:
    return tuple(Topic(name) for name in names)


CLIENT_REPLIES = Topic(CLIENT_REPLIES_PREFIX, prefixed=True)


def worker_principal(name: str) -> Principal:
    spec = load_spec(name)
    reads = spec.consumed()
    writes = [*spec.produces, *(dead_letter_topic(topic) for topic in reads)]
    answers = CART_REPLIES in spec.produces  # it answers commands on the reply_to they name
    if answers:
        writes.append(GATEWAY_REPLIES)
    return Principal(
        user=f"{name}-worker",
        role=f"{name} worker",
        reads=_literal(*reads),
        writes=(*_literal(*sorted(set(writes))), *((CLIENT_REPLIES,) if answers else ())),
        groups=tuple(f"cartflow-{group}" for group, _ in spec.groups()),
    )


def principals() -> tuple[Principal, ...]:
    """Every principal of a deployment, with exactly what it needs."""
    workers = tuple(worker_principal(name) for name in WORKERS)
    return (
        *workers,
        Principal(
            user="gateway",
            role="HTTP gateway and payment webhook",
            reads=_literal(*gateway.READS),
            writes=_literal(*sorted(gateway.WRITES)),
            note="reads its replies without a consumer group; the only writer of payment.events besides operators",
        ),
        Principal(
            user="storefront",
            role="a storefront back end (one principal each, `storefront` here)",
            reads=_literal(f"{CLIENT_REPLIES_PREFIX}storefront"),
            writes=_literal(CART_COMMANDS, CHECKOUT_QUERIES),
            groups=("storefront",),
            note="or Read on cart.replies, the default reply topic, shared by every client that names none",
        ),
        Principal(user="catalog", role="the catalog publisher", writes=_literal(CATALOG_EVENTS)),
        Principal(
            user="warehouse",
            role="the warehouse (stock levels: SetStock)",
            writes=_literal(STOCK_COMMANDS),
            note="stock.commands also carries the workers' reservations: give it to the warehouse service only",
        ),
        Principal(
            user="fulfilment",
            role="a downstream service (fulfilment here: order.events)",
            reads=_literal(ORDER_EVENTS),
            groups=("fulfilment",),
            note="Read on the topics it consumes only (cart.events, notifications.events for others)",
        ),
    )


def markdown_table(prefix: str = "P") -> str:
    """The ACL table of docs/security.md (``P`` standing for the topic prefix)."""
    rows = [
        "| principal | role | Read (topics) | Write (topics) | groups |",
        "| --- | --- | --- | --- | --- |",
    ]
    for principal in principals():
        reads = ", ".join(topic.shown(prefix) for topic in principal.reads) or "none"
        writes = ", ".join(topic.shown(prefix) for topic in principal.writes) or "none"
        groups = ", ".join(f"`{prefix}`{group}" for group in principal.groups) or "none"
        rows.append(f"| `User:{principal.user}` | {principal.role} | {reads} | {writes} | {groups} |")
    rows.append("| operators (`cartflow` CLI) | replay, redrive, offsets | every topic | every topic | every group |")
    return "\n".join(rows)


def kafka_acls(prefix: str, bootstrap: str = "kafka:9092") -> str:
    """``kafka-acls.sh`` commands granting exactly the table, for topic prefix ``prefix``."""
    head = f"kafka-acls.sh --bootstrap-server {bootstrap} --add --allow-principal"
    lines = []
    for principal in principals():
        user = f"User:{principal.user}"
        literal_reads = [t for t in principal.reads if not t.prefixed]
        if literal_reads or principal.groups:
            topics = " ".join(f"--topic {prefix}{t.name}" for t in literal_reads)
            groups = " ".join(f"--group {prefix}{g}" for g in principal.groups)
            lines.append(f"{head} {user} --operation Read {topics} {groups}".rstrip())
        literal_writes = [t for t in principal.writes if not t.prefixed]
        if literal_writes:
            lines.append(f"{head} {user} --operation Write " + " ".join(f"--topic {prefix}{t.name}" for t in literal_writes))
        for topic in (t for t in principal.writes if t.prefixed):
            lines.append(f"{head} {user} --operation Write --resource-pattern-type prefixed --topic {prefix}{topic.name}")
    return "\n".join(lines)
