"""From raw record bytes to a contract message, or to a precise reason why not
(the dead-letter record for what cannot be processed is ``dead_letters.py``'s)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import bson
from bson.errors import InvalidDocument
from pydantic import TypeAdapter, ValidationError

from contracts.envelope import SCHEMA_VERSION, is_identifier
from services.runtime.records import Incoming
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


def parse(
    record: Incoming, adapter: TypeAdapter[Any], known_types: frozenset[str], settings: Settings | None = None
) -> Any | Malformed:
    """The contract message in ``record``, or why it is not one: also when what
    it holds could not be stored. With ``settings``, also the deployment's
    limits: an allowed ``reply_to`` and bounded free-form objects."""
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
    if settings is not None and (problem := unusable_reply_to(message, settings)) is not None:
        # Answered on the default reply topic: the one asked for is the problem.
        return Malformed(problem, {name: value for name, value in fields.items() if name != "reply_to"})
    problem = settings.free_form_limits.first_problem(message) if settings is not None else None
    if problem is None:
        problem = unstorable(message)
    if problem is not None:
        return Malformed(problem, fields)
    return message


def unusable_reply_to(message: Any, settings: Settings) -> str | None:
    """Why a valid message's ``reply_to`` is not one this deployment answers on, if it is not."""
    reply_to = getattr(message, "reply_to", None)
    if reply_to is not None and not settings.reply_topic_allowed(reply_to):
        return (
            f"reply_to {reply_to[:260]!r} is not an allowed reply topic "
            f"(a topic name matching {settings.reply_topic_regex.pattern!r})"
        )
    return None


def unstorable(message: Any) -> str | None:
    """Why what ``message`` holds could not be written to the database, if it could not.

    Checked once per record at decoding, on the message as the workers keep it
    (the JSON form a cart stores a queued command in): a batch's transaction
    then never fails on what a producer sent, and the one record is refused
    alone instead of sending its whole batch one message per transaction.
    """
    try:
        bson.encode(message.model_dump(mode="json"), check_keys=True)
    except (InvalidDocument, UnicodeEncodeError, OverflowError) as exc:
        return f"not storable: {exc}"[:MAX_REASON]
    return None


def describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"][1:]) or "message"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)[:MAX_REASON]
