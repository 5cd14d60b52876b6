"""Logs, traces and metrics, the same way for every worker.

- Logs are JSON lines (python-json-logger) carrying the ``correlation_id``,
  ``message_id`` and ``type`` of the message being handled; credentials in
  URLs are masked, and message bodies (addresses, payment details) are never
  logged.
- Trace context travels in the W3C ``traceparent`` header of every record: each
  message is handled in a span whose parent is the context of the record that
  caused it, and every record it produces carries the handling span's context,
  so one checkout is one trace across the three workers. Spans are exported
  only when ``CARTFLOW_TRACING_EXPORTER`` is set; otherwise the context is
  passed through unchanged.
- Metrics are Prometheus metrics: FastStream's middleware for consumption, and
  cartflow's own gauges (lag, outbox, dead letters, worker gauges) refreshed on
  a timer, plus the deadline-lateness histogram.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from pythonjsonlogger.json import JsonFormatter

from services.runtime.records import Outgoing

#: The message being handled, for log records.
current_message: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("current_message", default=None)

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<secret>[^@/\s]+)@", re.IGNORECASE)


def mask_credentials(text: str) -> str:
    """``mongodb://app:s3cret@db`` -> ``mongodb://app:***@db``."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


class MessageContext(logging.Filter):
    """Adds the handled message's ids to every record and masks credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (current_message.get() or {}).items():
            setattr(record, name, value)
        if isinstance(record.msg, str) and "://" in record.msg:
            record.msg = mask_credentials(record.msg)
        if record.args:
            record.args = tuple(mask_credentials(a) if isinstance(a, str) else a for a in record.args)  # type: ignore[assignment]
        return True


def configure_logging(level: str, fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(MessageContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # FastStream logs every batch received and processed: only when debugging.
    logging.getLogger("cartflow.broker").setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)


# --- tracing ------------------------------------------------------------------------


def configure_tracing(service: str, exporter: str) -> None:
    """Export spans of ``service`` with ``exporter`` ("otlp" or "console"); "none" exports nothing."""
    if exporter == "none":
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if exporter == "otlp":
        # Endpoint, headers and TLS come from the standard OTEL_EXPORTER_OTLP_* variables.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter: Any = OTLPSpanExporter()
    else:
        span_exporter = ConsoleSpanExporter(out=sys.stderr)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)


def _header_getter(headers: tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    return {name: value.decode(errors="replace") for name, value in headers if name in ("traceparent", "tracestate")}


@contextlib.contextmanager
def handling(worker: str, record_headers: tuple[tuple[str, bytes], ...], message: Any) -> Iterator[Callable[[list[Outgoing]], list[Outgoing]]]:
    """Handle ``message`` inside a span and a log context; yields a function that
    stamps the produced records with the span's trace context."""
    kind = getattr(message, "type", None) or type(message).__name__
    ids = {"type": kind}
    for name in ("message_id", "correlation_id"):
        value = getattr(message, name, None)
        if isinstance(value, str):
            ids[name] = value
    token = current_message.set(ids)
    tracer = trace.get_tracer("cartflow")
    parent = propagate.extract(_header_getter(record_headers))
    try:
        with tracer.start_as_current_span(
            f"{worker} handle {kind}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "kafka", "messaging.message.id": ids.get("message_id", ""), "cartflow.type": kind},
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            stamp = [(name, value.encode()) for name, value in carrier.items()]

            def stamped(outputs: list[Outgoing]) -> list[Outgoing]:
                if not stamp:
                    return outputs
                return [
                    dataclasses.replace(o, headers=(*[h for h in o.headers if h[0] not in carrier], *stamp))
                    for o in outputs
                ]

            yield stamped
    finally:
        current_message.reset(token)


# --- metrics ------------------------------------------------------------------------

CONSUMER_LAG = Gauge("cartflow_consumer_lag", "Records not yet committed by the worker's consumer group", ["group"])
OUTBOX_BACKLOG = Gauge("cartflow_outbox_backlog", "Records written to the outbox and not yet published")
OUTBOX_AGE = Gauge("cartflow_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox record")
DEAD_LETTERS = Gauge("cartflow_dead_letters", "Records in the dead-letter topics of the topics the worker consumes")
OUTBOX_PARKED = Gauge("cartflow_outbox_parked", "Outbox records that cannot be published, set aside for an operator")
OUTBOX_PARKED_TOTAL = Counter("cartflow_outbox_parked_records", "Outbox records parked by this process")
SKIPPED = Counter("cartflow_records_skipped", "Records that could be neither processed nor dead-lettered", ["worker"])
TASK_FAILURES = Counter("cartflow_background_task_failures", "Exceptions caught in background tasks", ["task"])
WORKER_GAUGE = Gauge("cartflow_worker_gauge", "Worker gauges: pending_sagas, oldest_overdue_seconds, active_reservations", ["name"])
PROCESSED = Counter("cartflow_messages_processed", "Messages (and timer tasks) processed, replays included", ["worker"])
BATCH_SECONDS = Histogram(
    "cartflow_batch_seconds",
    "Time a batch spent in each stage: read (inbox, state), handle (the worker's rules), write (the transaction)",
    ["worker", "stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DEADLINE_LATENESS = Histogram(
    "cartflow_deadline_lateness_seconds",
    "How long after its payment deadline a checkout was cancelled",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
METRICS_REGISTRY = REGISTRY
