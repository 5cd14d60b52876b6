"""Turning domain events into contract messages that carry their cause.

Each worker says which contract model each of its domain events is published
as, in one explicit map (its ``published.py``); nothing is matched by name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from contracts.envelope import Envelope, message_id_for
from services.runtime.records import Outgoing


def causal_envelope(cause_id: str, correlation_id: str | None, now: datetime) -> dict[str, Any]:
    return {"occurred_at": now, "correlation_id": correlation_id or cause_id, "causation_id": cause_id}


#: Domain event type to the contract model it is published as.
ContractMap = Mapping[type, type[Envelope]]


def contract_message(event: Any, models: ContractMap, message_id: str, envelope: dict[str, Any]) -> Envelope:
    """The contract message ``event`` is published as."""
    try:
        contract_type = models[type(event)]
    except KeyError:
        raise TypeError(f"{type(event).__name__} is published as nothing: add it to its worker's map") from None
    return contract_type(message_id=message_id, **envelope, **asdict(event))


#: Fields that name what an event is about, most specific first.
IDENTITY_FIELDS = ("order_id", "item_id", "reservation_id", "payment_id", "product_id", "size", "user_id")


def event_subject(event: Any) -> str:
    """What ``event`` is about, from its identifying fields."""
    return "|".join(f"{name}={getattr(event, name)}" for name in IDENTITY_FIELDS if getattr(event, name, None) is not None)


def event_records(
    events: Any,
    models: ContractMap,
    *,
    topic: str,
    key: Any,
    cause_id: str,
    envelope: dict[str, Any],
) -> list[Outgoing]:
    """One record per event, ids derived from the cause and what each event is
    about, so a retry repeats them exactly and no two share an id.

    ``key`` is the record key, or a function of the event that returns it.
    """
    records = []
    seen: dict[tuple[str, str], int] = {}
    for event in events:
        kind, subject = type(event).__name__, event_subject(event)
        repeat = seen[(kind, subject)] = seen.get((kind, subject), 0) + 1
        if repeat > 1:
            subject = f"{subject}#{repeat}"  # the same fact twice from one cause: still two messages
        message = contract_message(event, models, message_id_for(cause_id, kind, subject), envelope)
        record_key = key(event) if callable(key) else key
        records.append(Outgoing(topic, record_key.encode(), message.to_json_bytes()))
    return records
