"""The compose file and the README's settings table say only what the code knows."""

from __future__ import annotations

import re
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


def test_the_compose_file_parses_and_passes_only_settings_that_exist():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    workers = {name: service for name, service in compose["services"].items() if name.endswith("-worker")}
    assert set(workers) == {"cart-worker", "stock-worker", "checkout-worker"}
    for name, service in workers.items():
        passed = {key for key in service["environment"] if key.startswith("CARTFLOW_")}
        assert passed and passed <= known_variables(), (name, passed - known_variables())
        assert service["command"] == ["worker", name.removesuffix("-worker")]


def test_every_setting_is_documented_in_the_readme_and_every_documented_one_exists():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(CARTFLOW_[A-Z_]+)`", readme, flags=re.MULTILINE))
    documented |= {
        f"CARTFLOW_KAFKA_SASL_{suffix}" for suffix in ("USERNAME", "PASSWORD")
    } if "CARTFLOW_KAFKA_SASL_USERNAME" in readme else set()
    assert documented == known_variables()
