"""What operators and tracing backends see of a running worker: health and
readiness endpoints, Prometheus metrics, and one trace per checkout across the
three workers, carried in Kafka headers."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request

import pytest
import pytest_asyncio

from harness.deployment import open_deployment
from harness.support import PAYMENT, cart_with, order_events, stocked
from harness.support import command

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def http_get(port: int, path: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    return await asyncio.to_thread(fetch)


@pytest_asyncio.fixture(scope="module")
async def observed(backends):
    port = free_port()
    deployment = await open_deployment(
        backends, CARTFLOW_TRACING_EXPORTER="console", CARTFLOW_METRICS_REFRESH_SECONDS="0.5"
    )
    deployment.worker("cart", CARTFLOW_HTTP_PORT=str(port), CARTFLOW_HTTP_HOST="127.0.0.1")
    deployment.worker("stock")
    deployment.worker("checkout")
    deployment.http_port = port
    try:
        async with asyncio.timeout(90):
            while (await http_get(port, "/readyz"))[0] != 200:
                await asyncio.sleep(0.2)
        yield deployment
    finally:
        await deployment.close()


async def test_a_running_worker_is_live_and_ready(observed):
    assert await http_get(observed.http_port, "/healthz") == (200, "ok")
    assert await http_get(observed.http_port, "/readyz") == (200, "ready")


async def test_the_metrics_endpoint_counts_messages_and_reports_lag_and_outbox(observed):
    pid = await stocked(observed, 3, "2.00")
    await cart_with(observed, (pid, 1))
    await asyncio.sleep(1.5)  # one refresh of the status gauges

    status, text = await http_get(observed.http_port, "/metrics")

    assert status == 200
    processed = [line for line in text.splitlines() if line.startswith('cartflow_messages_processed_total{worker="cart"}')]
    assert processed and float(processed[0].split()[-1]) >= 2
    assert f'cartflow_consumer_lag{{group="{observed.prefix}cartflow-cart"}}' in text
    assert "cartflow_outbox_backlog " in text and "cartflow_dead_letters " in text
    for stage in ("read", "handle", "write"):
        assert f'cartflow_batch_seconds_count{{stage="{stage}",worker="cart"}}' in text, "where batches spend their time"
    assert "faststream_received_messages_total" in text, "FastStream's own consumer metrics are exported too"


async def test_one_checkout_is_one_trace_across_the_three_workers(observed):
    shoe = await stocked(observed, 3, "10.00")
    buyer, _ = await cart_with(observed, (shoe, 2))
    stock_events = await observed.tap("stock.events")
    replies = await observed.tap("cart.replies")
    checkout = command("CheckoutCart", user_id=buyer, **PAYMENT)

    await observed.publisher.raw(
        observed.topic("cart.commands"), json.dumps(checkout).encode(), buyer.encode(), [("traceparent", TRACEPARENT.encode())]
    )
    (reply,) = await replies.wait_for(lambda r: r.json.get("correlation_id") == checkout["message_id"])
    payment_id = reply.json["data"]["payment_id"]
    await order_events(observed, payment_id, "PaymentRequested")
    orders = (await observed.tap("order.events")).matching(lambda r: r.json.get("payment_id") == payment_id)
    transferred = await stock_events.wait_for(
        lambda r: r.json.get("type") == "ReservationTransferred" and r.json.get("correlation_id") == checkout["message_id"]
    )

    def trace_of(record) -> str:
        return record.headers["traceparent"].decode().split("-")[1]

    assert trace_of(reply) == TRACE_ID, "the cart worker's reply"
    assert orders and {trace_of(r) for r in orders} == {TRACE_ID}, "the checkout worker's order events"
    assert {trace_of(r) for r in transferred} == {TRACE_ID}, "the stock worker's events"
    assert reply.headers["traceparent"] != TRACEPARENT.encode(), "each worker adds a span of its own"
