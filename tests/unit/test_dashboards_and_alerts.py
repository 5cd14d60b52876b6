"""The Grafana dashboard and the Prometheus alert rules in deploy/: current,
naming only metrics the workers export, and (with Debian's promtool) valid
rules whose unit tests pass."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.grafana.dashboard import OUTPUT, render
from services.runtime import observability

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "cartflow-alerts.yml"
PROMTOOL = shutil.which("promtool")


def exported() -> set[str]:
    """Every series name the workers' /metrics can serve."""
    names = set()
    for metric in observability.METRICS_REGISTRY.collect():
        if metric.name.startswith("cartflow_"):
            kinds = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
            names |= {metric.name + suffix for suffix in kinds.get(metric.type, ("",))}
    return names


def named_in(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in re.findall(r"\bcartflow_[a-z_]+", expr)}


def test_the_committed_dashboard_is_the_one_grafanalib_writes():
    assert OUTPUT.read_text() == render(), "deploy/grafana/cartflow.json is stale: run `python -m deploy.grafana.dashboard`"


def test_the_dashboard_and_the_alerts_name_only_metrics_the_workers_export():
    import json

    panels = json.loads(OUTPUT.read_text())["panels"]
    dashboard = [target["expr"] for panel in panels for target in panel["targets"]]
    alerts = [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]

    assert named_in(dashboard) and named_in(dashboard) <= exported()
    assert named_in(alerts) and named_in(alerts) <= exported()


def test_there_is_an_alert_for_each_thing_an_operator_must_act_on():
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}

    assert {"CartflowOutboxParked", "CartflowDeadLettersRising", "CartflowConsumerLag", "CartflowCheckoutPastDeadline",
            "CartflowDeadlineLateness", "CartflowBackgroundTaskFailing"} <= alerts


@pytest.mark.skipif(PROMTOOL is None, reason="Debian's prometheus package (promtool) is not installed (make test installs it)")
def test_promtool_finds_the_rules_valid_and_their_unit_tests_pass():
    checked = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", "cartflow-alerts.test.yml"], cwd=RULES.parent, capture_output=True, text=True,
        timeout=60,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tested.returncode == 0, tested.stdout + tested.stderr
