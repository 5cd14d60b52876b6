"""``cartflow up`` as an operator with their own Kafka and MongoDB runs it: the
servers are started elsewhere, their addresses come through the environment,
and the data folder is empty (no logs folder made by embedded servers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.ops.embedded import EmbeddedKafka, EmbeddedMongo
from services.runtime.mongo import connect
from harness.support import ROOT, Publisher, Tap, command

pytestmark = pytest.mark.integration

#: Seconds to wait for anything to happen; generous, since the machine may be busy.
PATIENCE = 120.0


@dataclass
class ExternalServers:
    kafka: EmbeddedKafka
    mongo: EmbeddedMongo


@pytest.fixture
def external_servers(tmp_path: Path) -> Iterator[ExternalServers]:
    """A fresh Tansu broker and SecantusDB server in processes of their own, not
    the session's backends, as an operator's servers would be."""
    kafka = EmbeddedKafka(log_path=tmp_path / "servers" / "kafka.log")
    mongo = EmbeddedMongo(storage_path=tmp_path / "servers" / "mongo", log_path=tmp_path / "servers" / "mongo.log")
    try:
        kafka.start(timeout=PATIENCE)
        mongo.start(timeout=PATIENCE)
        yield ExternalServers(kafka, mongo)
    finally:
        mongo.stop()
        kafka.stop()


def group_is_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member exists but belongs to someone else
        return True
    return True


async def wait_for_output(process: subprocess.Popen, output: Path, text: str) -> None:
    async with asyncio.timeout(PATIENCE):
        while text not in output.read_text(errors="replace"):
            assert process.poll() is None, f"cartflow up exited with {process.returncode}:\n{output.read_text()}"
            await asyncio.sleep(0.1)


async def test_cartflow_up_on_servers_started_elsewhere_serves_carts_and_stops_cleanly_on_ctrl_c(
    external_servers: ExternalServers, tmp_path: Path
):
    home = tmp_path / "home"
    home.mkdir()
    prefix = f"up{uuid.uuid4().hex[:8]}."
    db_name = f"cartflow_up{uuid.uuid4().hex[:8]}"
    bootstrap = external_servers.kafka.bootstrap
    env = {
        **os.environ,
        "CARTFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "CARTFLOW_MONGO_URL": external_servers.mongo.url,
        "CARTFLOW_MONGO_DB": db_name,
        "CARTFLOW_TOPIC_PREFIX": prefix,
        "CARTFLOW_DATA_DIR": str(home),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("CARTFLOW_TEST_BACKEND", None)  # let `up` see the two URLs and choose external backends itself
    output = tmp_path / "up.out"
    with open(output, "wb") as sink:
        up = subprocess.Popen(
            [sys.executable, "-m", "services.ops.cli", "up", "--http-port", "0"],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    publisher, replies, mongo = None, None, connect(external_servers.mongo.url)
    try:
        await wait_for_output(up, output, "cartflow is up")
        assert "external backends" in output.read_text()

        publisher = Publisher(bootstrap)
        await publisher.start()
        replies = await Tap(bootstrap, f"{prefix}cart.replies").start()
        db = mongo[db_name]
        product, buyer = f"product-{uuid.uuid4().hex[:8]}", f"user-{uuid.uuid4().hex[:8]}"
        await publisher.send(
            f"{prefix}catalog.events",
            command("ProductUpserted", product_id=product, name="Trail shoe", price="74.99"),
            "product_id",
        )
        await publisher.send(
            f"{prefix}stock.commands", command("SetStock", product_id=product, on_hand=5), "product_id"
        )
        async with asyncio.timeout(PATIENCE):
            while not (
                await db["cart.catalog"].find_one({"_id": product})
                and await db["stock.levels"].find_one({"product_id": product})
            ):
                await asyncio.sleep(0.1)

        add = await publisher.send(
            f"{prefix}cart.commands", command("AddItem", user_id=buyer, product_id=product, quantity=2)
        )
        reply = await replies.reply(add, timeout=PATIENCE)

        assert reply["success"] is True, reply
        assert reply["command_type"] == "AddItem" and reply["data"]["line_total"] == "149.98"
        assert {"cart-worker.log", "stock-worker.log", "checkout-worker.log"} <= {
            log.name for log in (home / "logs").iterdir()
        }

        up.send_signal(signal.SIGINT)
        returncode = await asyncio.to_thread(up.wait, PATIENCE)

        assert returncode == 0, output.read_text()
        assert "cartflow stopped" in output.read_text()
        deadline = time.monotonic() + PATIENCE  # the group's last members may still be on their way out
        while group_is_alive(up.pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not group_is_alive(up.pid), "a worker outlived cartflow up"
    finally:
        if replies:
            await replies.stop()
        if publisher:
            await publisher.stop()
        await mongo.close()
        if group_is_alive(up.pid):
            os.killpg(up.pid, signal.SIGKILL)
        if up.poll() is None:
            up.kill()
        up.wait()
