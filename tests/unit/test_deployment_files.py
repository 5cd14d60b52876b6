"""The compose file and the settings table of docs/settings.md say only what the code knows."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from services.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def known_variables() -> set[str]:
    names = set()
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        names.add(alias if isinstance(alias, str) else f"CARTFLOW_{name.upper()}")
    return names


def worker_services() -> dict[str, dict]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {name: service for name, service in compose["services"].items() if name.endswith("-worker")}


def test_the_compose_file_parses_and_passes_only_settings_that_exist():
    workers = worker_services()
    assert set(workers) == {"cart-worker", "stock-worker", "checkout-worker"}
    for name, service in workers.items():
        passed = {key for key in service["environment"] if key.startswith("CARTFLOW_")}
        assert passed and passed <= known_variables(), (name, passed - known_variables())
        assert service["command"] == ["worker", name.removesuffix("-worker")]


def test_every_setting_is_documented_in_the_settings_page_and_every_documented_one_exists():
    page = (ROOT / "docs" / "settings.md").read_text()
    documented = re.findall(r"^\| `(CARTFLOW_[A-Z_]+)` \|", page, flags=re.MULTILINE)
    assert len(documented) == len(set(documented)), "a setting documented twice"
    assert set(documented) == known_variables()


def test_every_worker_container_is_healthy_only_while_both_alive_and_ready():
    workers = worker_services()
    assert workers
    for name, service in workers.items():
        probe = service["healthcheck"]["test"]
        assert probe[0] == "CMD", name
        assert any("/healthz" in part for part in probe), (name, probe)
        assert any("/readyz" in part for part in probe), (name, probe)


@contextmanager
def worker_endpoints(statuses: dict[str, int]) -> Iterator[str]:
    """An HTTP server answering each path with the given status, as a worker's /healthz and /readyz do."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses.get(self.path, 404))
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(service: dict, address: str) -> int:
    """Run a service's healthcheck command here, pointed at ``address`` instead of the container's port."""
    _, program, *arguments = service["healthcheck"]["test"]
    assert program == "python"
    arguments = [part.replace("http://127.0.0.1:9100", address) for part in arguments]
    return subprocess.run([sys.executable, *arguments], capture_output=True, timeout=60).returncode


def test_the_worker_healthcheck_fails_when_either_healthz_or_readyz_fails():
    service = worker_services()["cart-worker"]
    for healthz, readyz, healthy in [(200, 200, True), (503, 200, False), (200, 503, False)]:
        with worker_endpoints({"/healthz": healthz, "/readyz": readyz}) as address:
            assert (run_healthcheck(service, address) == 0) is healthy, (healthz, readyz)
