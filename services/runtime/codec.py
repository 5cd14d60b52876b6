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
from services.runtime import headers as h
from services.runtime.records import Incoming, Outgoing
from services.runtime.settings import Settings

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


#: Fields that hold free-form objects a producer fills as it likes.
FREE_FORM_FIELDS = ("properties", "shipping_address")


def parse(
    record: Incoming, adapter: TypeAdapter[Any], known_types: frozenset[str], settings: Settings | None = None
) -> Any | Malformed:
    """The contract message in ``record``, or why it is not one. With ``settings``,
    also the deployment's limits: an allowed ``reply_to`` and bounded free-form objects."""
    if not record.value:
        return Malformed("empty record")
    try:
        fields = json.loads(record.value.decode("utf-8"))
    except RecursionError:
        return Malformed("JSON nested too deeply")
    except (UnicodeDecodeError, ValueError):
        return Malformed("not UTF-8 JSON")
    if not isinstance(fields, dict):
        return Malformed("not a JSON object")
    kind = fields.get("type")
    if not isinstance(kind, str) or kind not in known_types:
        return Malformed(f"unknown message type {repr(kind)[:100]} on this topic", fields)
    version = fields.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        return Malformed(f"unsupported schema_version {version!r} for {kind} (supported: {SCHEMA_VERSION})", fields)
    try:
        message = adapter.validate_json(record.value)
    except ValidationError as exc:
        return Malformed(describe(exc), fields)
    problem = beyond_limits(message, settings) if settings is not None else None
    if problem is not None:
        # Answered on the default reply topic: the one asked for may be the problem.
        return Malformed(problem, {name: value for name, value in fields.items() if name != "reply_to"})
    return message


def beyond_limits(message: Any, settings: Settings) -> str | None:
    """Why a valid message still exceeds what this deployment accepts, if it does."""
    reply_to = getattr(message, "reply_to", None)
    if reply_to is not None and not settings.reply_topic_allowed(reply_to):
        return (
            f"reply_to {reply_to[:260]!r} is not an allowed reply topic "
            f"(a topic name matching {settings.reply_topic_regex.pattern!r})"
        )
    for name in FREE_FORM_FIELDS:
        value = getattr(message, name, None)
        if value is None:
            continue
        if isinstance(value, dict) and len(value) > settings.properties_max_keys:
            return f"{name}: more than {settings.properties_max_keys} keys"
        if nesting_depth(value) > settings.properties_max_depth:
            return f"{name}: nested deeper than {settings.properties_max_depth} levels"
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())
        if size > settings.properties_max_bytes:
            return f"{name}: {size} bytes as JSON, more than {settings.properties_max_bytes}"
    return None


def nesting_depth(value: Any) -> int:
    """Levels of objects and arrays in a JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"][1:]) or "message"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)[:MAX_REASON]


def dead_letter(record: Incoming, *, error_code: str, reason: str, now: datetime) -> Outgoing:
    """The original bytes and headers, with headers that say where they came from and why."""
    # A producer's own copies of these annotations would be read as the reason.
    own = {h.ERROR_CODE, h.ERROR, h.SOURCE_TOPIC, h.SOURCE_PARTITION, h.SOURCE_OFFSET, h.DEAD_LETTERED_AT}
    headers = (
        *((name, value) for name, value in record.headers if name not in own),
        (h.ERROR_CODE, error_code.encode()),
        (h.ERROR, reason[:MAX_REASON].encode()),
        (h.SOURCE_TOPIC, record.topic.encode()),
        (h.SOURCE_PARTITION, str(record.partition).encode()),
        (h.SOURCE_OFFSET, str(record.offset).encode()),
        (h.DEAD_LETTERED_AT, now.isoformat().encode()),
    )
    return Outgoing(dead_letter_topic(record.topic), record.key, record.value or b"", headers)
