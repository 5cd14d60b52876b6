"""The Kafka ACL table: derived from what the code consumes and produces, the
one the README shows, and tight where it matters (who may pay, who may price)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contracts.channels import CHANNELS
from contracts.topics import CLIENT_REPLIES_PREFIX, PAYMENT_EVENTS
from services.gateway.exchange import WRITES, Exchange
from services.ops.access import kafka_acls, markdown_table, principals
from services.runtime.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def between(marker: str) -> str:
    return README.split(f"<!-- {marker}:start -->\n", 1)[1].split(f"\n<!-- {marker}:end -->", 1)[0]


def test_the_readme_shows_the_table_the_code_derives():
    assert between("acl-table") == markdown_table(), "README's ACL table is stale: paste services.ops.access.markdown_table()"


def test_the_readme_s_kafka_acls_commands_grant_exactly_the_table():
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
