"""From a consumed record to the ``Work`` a worker's ``decode`` returns: the
message and its dedup key, or what a malformed record gets instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from contracts.cart import CommandResult
from contracts.envelope import is_identifier, message_id_for
from contracts.errors import ErrorCode
from services.runtime.clock import Clock
from services.runtime.codec import Malformed, parse
from services.runtime.dead_letters import dead_letter
from services.runtime.processing import Work
from services.runtime.records import Incoming, Outgoing
from services.runtime.settings import Settings

#: What a worker answers a malformed record with, if it can address an answer
#: (None: no one to answer, the record is dead-lettered).
Answer = Callable[[Incoming, Malformed], Outgoing | None]


def decode_record(
    record: Incoming,
    adapter: TypeAdapter[Any],
    known_types: frozenset[str],
    clock: Clock,
    *,
    settings: Settings | None = None,
    answer: Answer | None = None,
    wanted: Callable[[Any], bool] | None = None,
    namespace: str = "",
) -> Work:
    """``record`` parsed as one of ``known_types`` (within the limits of
    ``settings``, when given), keyed by its ``message_id``.

    A malformed record is keyed by its ``message_id`` when it has a usable one
    (a repeat is then answered from the inbox), else by its bytes; it gets the
    rejection ``answer`` makes, or else an ``INVALID_MESSAGE`` dead letter.

    ``namespace`` prefixes the dedup key: a topic whose producers are not those
    of the worker's other topics (queries beside commands) cannot make one of
    its records pass for a repeat of another topic's.

    With ``wanted``, the topic is one the worker reads for a few messages only:
    every other record, malformed ones included, is skipped, since whichever
    worker owns the topic dead-letters what is malformed on it.
    """
    parsed = parse(record, adapter, known_types, settings)
    if not isinstance(parsed, Malformed) and (wanted is None or wanted(parsed)):
        return Work(record, namespace + parsed.message_id, parsed)
    if wanted is not None:
        return Work(record, record.fingerprint, skip=True)
    key = namespace + parsed.message_id if parsed.message_id else record.fingerprint
    reply = answer(record, parsed) if answer is not None else None
    if reply is not None:
        return Work(record, key, None, (reply,))
    letter = dead_letter(record, error_code=ErrorCode.INVALID_MESSAGE, reason=parsed.reason, now=clock.now())
    return Work(record, key, None, (letter,))


def invalid_command_reply(
    settings: Settings,
    clock: Clock,
    default_topic: str,
    record: Incoming,
    malformed: Malformed,
    *,
    result_kind: str = "CommandResult",
) -> Outgoing | None:
    """An ``INVALID_MESSAGE`` ``CommandResult`` addressed to the sender of a
    malformed command, when the record says who that is (a usable ``message_id``):
    on its ``reply_to`` when that is an allowed reply topic, else on ``default_topic``."""
    message_id = malformed.message_id
    if message_id is None:
        return None
    fields = malformed.fields or {}
    correlation_id = fields.get("correlation_id")
    if not is_identifier(correlation_id):
        correlation_id = message_id
    user_id = fields.get("user_id") if is_identifier(fields.get("user_id")) else None
    reply_to = fields.get("reply_to")
    topic = reply_to if settings.reply_topic_allowed(reply_to) else default_topic
    result = CommandResult(
        message_id=message_id_for(message_id, result_kind),
        occurred_at=clock.now(),
        correlation_id=correlation_id,
        causation_id=message_id,
        command_type=str(fields.get("type"))[:100],
        command_message_id=message_id,
        user_id=user_id,
        success=False,
        error_code=ErrorCode.INVALID_MESSAGE,
        error_message=f"Invalid message: {malformed.reason}",
        suggested_action="Fix the message to match the cartflow contract v1 and send it with a new message_id",
    )
    key = user_id.encode() if user_id else record.key
    return Outgoing(topic, key, result.to_json_bytes(), is_reply=True)
