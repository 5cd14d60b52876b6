"""From raw record bytes to a contract message, or to a precise reason why not;
and the dead-letter record for what cannot be processed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from contracts.envelope import SCHEMA_VERSION, is_identifier
from contracts.topics import dead_letter_topic
from services.runtime.records import Incoming, Outgoing

MAX_REASON = 1000


@dataclass(frozen=True)
class Malformed:
    """A record that is not a valid message of its topic."""

    reason: str
    #: The JSON object, when the record was one, so a reply can still be addressed.
    fields: dict[str, Any] | None = None

    @property
    def message_id(self) -> str | None:
        value = (self.fields or {}).get("message_id")
        return value if is_identifier(value) else None


def parse(record: Incoming, adapter: TypeAdapter[Any], known_types: frozenset[str]) -> Any | Malformed:
    if not record.value:
        return Malformed("empty record")
    try:
        fields = json.loads(record.value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Malformed("not UTF-8 JSON")
    if not isinstance(fields, dict):
        return Malformed("not a JSON object")
    kind = fields.get("type")
    if kind not in known_types:
        return Malformed(f"unknown message type {kind!r} on this topic", fields)
    version = fields.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        return Malformed(f"unsupported schema_version {version!r} for {kind} (supported: {SCHEMA_VERSION})", fields)
    try:
        return adapter.validate_json(record.value)
    except ValidationError as exc:
        return Malformed(describe(exc), fields)


def describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"][1:]) or "message"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)[:MAX_REASON]


def dead_letter(record: Incoming, *, error_code: str, reason: str, now: datetime) -> Outgoing:
    """The original bytes and headers, with headers that say where they came from and why."""
    headers = (
        *record.headers,
        ("cartflow-error-code", error_code.encode()),
        ("cartflow-error", reason[:MAX_REASON].encode()),
        ("cartflow-source-topic", record.topic.encode()),
        ("cartflow-source-partition", str(record.partition).encode()),
        ("cartflow-source-offset", str(record.offset).encode()),
        ("cartflow-dead-lettered-at", now.isoformat().encode()),
    )
    return Outgoing(dead_letter_topic(record.topic), record.key, record.value or b"", headers)
