"""The cartflow Grafana dashboard, written with grafanalib: `python -m deploy.grafana.dashboard`
writes deploy/grafana/cartflow.json (import it into Grafana, choosing the
Prometheus that scrapes the workers' /metrics). A unit test fails when the JSON
is stale or names a metric the workers do not export."""

from __future__ import annotations

import json
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, Target, Template, Templating, TimeSeries

OUTPUT = Path(__file__).with_name("cartflow.json")
DATASOURCE = "${datasource}"


def panel(title: str, x: int, y: int, *targets: tuple[str, str], unit: str = "short", description: str = "") -> TimeSeries:
    return TimeSeries(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=[Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + n)) for n, (expr, legend) in enumerate(targets)],
        unit=unit,
        gridPos=GridPos(h=8, w=12, x=x, y=y),
    )


def dashboard() -> Dashboard:
    return Dashboard(
        title="cartflow",
        uid="cartflow",
        description="Cart, stock and checkout workers: throughput, lag, outbox, dead letters, deadlines",
        tags=["cartflow"],
        timezone="utc",
        templating=Templating(list=[Template(name="datasource", query="prometheus", type="datasource", label="Prometheus")]),
        panels=[
            panel("Messages processed", 0, 0,
                  ("sum by (worker) (rate(cartflow_messages_processed_total[1m]))", "{{worker}}"), unit="ops"),
            panel("Consumer lag", 12, 0, ("max by (group) (cartflow_consumer_lag)", "{{group}}"),
                  description="Records not yet committed, per consumer group"),
            panel("Batch time, p99 per stage", 0, 8,
                  ("histogram_quantile(0.99, sum by (le, worker, stage) (rate(cartflow_batch_seconds_bucket[5m])))",
                   "{{worker}} {{stage}}"), unit="s"),
            panel("Outbox", 12, 8,
                  ("max by (job) (cartflow_outbox_backlog)", "backlog {{job}}"),
                  ("max by (job) (cartflow_outbox_parked)", "parked {{job}}"),
                  description="Records written and not yet published; parked ones wait for an operator"),
            panel("Oldest unpublished outbox record", 0, 16,
                  ("max by (job) (cartflow_outbox_oldest_age_seconds)", "{{job}}"), unit="s"),
            panel("Dead letters", 12, 16, ("max by (job) (cartflow_dead_letters)", "{{job}}"),
                  description="Records in the dead-letter topics of what each worker consumes"),
            panel("Checkouts awaiting payment", 0, 24,
                  ('max(cartflow_worker_gauge{name="pending_sagas"})', "pending"),
                  ('max(cartflow_worker_gauge{name="oldest_overdue_seconds"})', "oldest overdue (s)")),
            panel("Deadline lateness, p50 and p99", 12, 24,
                  ("histogram_quantile(0.5, sum by (le) (rate(cartflow_deadline_lateness_seconds_bucket[5m])))", "p50"),
                  ("histogram_quantile(0.99, sum by (le) (rate(cartflow_deadline_lateness_seconds_bucket[5m])))", "p99"),
                  unit="s"),
            panel("Background task failures and skipped records", 0, 32,
                  ("sum by (task) (increase(cartflow_background_task_failures_total[5m]))", "{{task}}"),
                  ("sum by (worker) (increase(cartflow_records_skipped_total[5m]))", "skipped {{worker}}")),
        ],
    ).auto_panel_ids()


def render() -> str:
    return json.dumps(dashboard().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
