"""The Kafka ACL table: derived from what the code consumes and produces, the
one docs/security.md shows, and tight where it matters (who may pay, who may price)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contracts.channels import CHANNELS
from contracts.topics import CLIENT_REPLIES_PREFIX, PAYMENT_EVENTS
from services.gateway.exchange import WRITES, Exchange
from services.ops.access import kafka_acls, markdown_table, principals
from services.runtime.settings import Settings

SECURITY_PAGE = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()


def between(marker: str) -> str:
    return SECURITY_PAGE.split(f"<!-- {marker}:start -->\n", 1)[1].split(f"\n<!-- {marker}:end -->", 1)[0]


def test_the_security_page_shows_the_table_the_code_derives():
    assert between("acl-table") == markdown_table(), (
        "docs/security.md's ACL table is stale: paste services.ops.access.markdown_table()"
    )


def test_the_security_page_s_kafka_acls_commands_grant_exactly_the_table():
    assert between("acl-commands") == f"```sh\n{kafka_acls('shop.')}\n```"


def writers_of(topic: str) -> set[str]:
    return {p.user for p in principals() if any(t.name == topic and not t.prefixed for t in p.writes)}


def test_only_the_payment_webhook_writes_payments_and_only_the_catalog_writes_prices():
    assert writers_of(PAYMENT_EVENTS) == {"gateway"}
    assert writers_of("catalog.events") == {"catalog"}
    assert writers_of("cart.commands") == {"gateway", "storefront"}


def test_every_grant_is_a_literal_topic_or_the_one_prefix_of_client_reply_topics():
    for principal in principals():
        for topic in (*principal.reads, *principal.writes):
            assert not topic.prefixed or topic.name == CLIENT_REPLIES_PREFIX, (principal.user, topic)
            assert "*" not in topic.name and "?" not in topic.name
    commands = kafka_acls("shop.")
    assert set(re.findall(r"--resource-pattern-type (\w+) --topic (\S+)", commands)) == {("prefixed", "shop.replies.")}


def test_every_topic_a_component_consumes_has_a_writer_and_every_inbound_topic_a_reader():
    writes = {t.name for p in principals() for t in p.writes if not t.prefixed}
    reads = {t.name for p in principals() for t in p.reads if not t.prefixed}
    assert reads <= writes | {f"{CLIENT_REPLIES_PREFIX}storefront"}
    inbound = {channel.topic for channel in CHANNELS if channel.direction == "in"}
    assert inbound <= reads


@pytest.mark.parametrize("prefix", ["", "shop."])
def test_the_default_reply_topic_pattern_admits_exactly_what_the_workers_may_write(prefix):
    settings = Settings(topic_prefix=prefix)
    worker = next(p for p in principals() if p.user == "cart-worker")

    def granted(name: str) -> bool:
        return any(
            name.startswith(prefix + t.name) and name != prefix + t.name if t.prefixed else name == prefix + t.name
            for t in worker.writes
        )

    for name in ("cart.replies", "gateway.replies", "replies.storefront", "storefront.replies", "cart.events",
                 "stock.commands", "payment.events", "replies.", "notifications.events"):
        if settings.reply_topic_allowed(prefix + name):
            assert granted(prefix + name), f"{name} is a reply topic the cart worker may not write"
    assert not settings.reply_topic_allowed(prefix + "storefront.replies")


async def test_the_gateway_refuses_to_publish_where_its_grants_do_not_reach():
    from types import SimpleNamespace

    router = SimpleNamespace(subscriber=lambda *a, **k: (lambda handler: handler), broker=SimpleNamespace())
    exchange = Exchange(Settings(kafka_bootstrap="127.0.0.1:1"), router)
    for topic in ("stock.commands", "catalog.events", "order.events"):
        assert topic not in WRITES
        with pytest.raises(ValueError):
            await exchange.publish(topic, {}, "k")


class BrokerWithAcls:
    """A stand-in for Kafka's admin API under ACLs: it lists only the topics the
    principal may describe (Read or Write grant it) and refuses to create any
    (TOPIC_AUTHORIZATION_FAILED), as Kafka does for a principal without Create."""

    def __init__(self, principal, existing: set[str], prefix: str) -> None:
        self.principal, self.existing, self.prefix = principal, existing, prefix
        self.create_asked: list[str] = []

    def granted(self, name: str) -> bool:
        return any(
            name.startswith(self.prefix + t.name) if t.prefixed else name == self.prefix + t.name
            for t in (*self.principal.reads, *self.principal.writes)
        )

    def admin(self, **options):
        broker = self

        class Admin:
            async def start(self): ...
            async def close(self): ...
            async def list_topics(self):
                return [name for name in broker.existing if broker.granted(name)]
            async def create_topics(self, topics):
                from types import SimpleNamespace

                broker.create_asked.extend(t.name for t in topics)
                return SimpleNamespace(topic_errors=[(t.name, 29, None) for t in topics])

        return Admin()


async def test_every_component_starts_under_exactly_its_grants_once_an_operator_created_the_topics(monkeypatch):
    import services.runtime.kafka as kafka
    from contracts.topics import ALL_TOPICS, GATEWAY_REPLIES, dead_letter_topic
    from services.ops.workers import WORKERS, load_spec

    settings = Settings(topic_prefix="shop.")
    created_by_operator = {settings.topic(t) for t in (*ALL_TOPICS, GATEWAY_REPLIES)}
    created_by_operator |= {dead_letter_topic(name) for name in created_by_operator}
    by_user = {p.user: p for p in principals()}
    starts = {f"{name}-worker": (lambda spec: ((*spec.consumes, *spec.produces), spec.consumed()))(load_spec(name))
              for name in WORKERS}
    starts["gateway"] = ((GATEWAY_REPLIES,), ())
    for user, (topics, dead_letters) in starts.items():
        broker = BrokerWithAcls(by_user[user], created_by_operator, "shop.")
        monkeypatch.setattr(kafka, "AIOKafkaAdminClient", broker.admin)

        await kafka.ensure_topics(settings, "kafka:9092", topics, dead_letters=dead_letters)

        assert broker.create_asked == [], f"{user} needs topics its grants do not show it"


async def test_a_component_not_allowed_to_create_a_missing_topic_says_so_and_starts(monkeypatch, caplog):
    import services.runtime.kafka as kafka

    settings = Settings(topic_prefix="shop.")
    broker = BrokerWithAcls(next(p for p in principals() if p.user == "stock-worker"), set(), "shop.")
    monkeypatch.setattr(kafka, "AIOKafkaAdminClient", broker.admin)

    await kafka.ensure_topics(settings, "kafka:9092", ("stock.commands",))

    assert broker.create_asked and "an operator creates them" in caplog.text
