"""Turning domain events into contract messages that carry their cause."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from types import ModuleType
from typing import Any

from contracts.envelope import Envelope, derived_message_id
from services.runtime.records import Outgoing


def causal_envelope(cause_id: str, correlation_id: str | None, now: datetime) -> dict[str, Any]:
    return {"occurred_at": now, "correlation_id": correlation_id or cause_id, "causation_id": cause_id}


def contract_message(event: Any, contracts: ModuleType, message_id: str, envelope: dict[str, Any]) -> Envelope:
    """The contract message of the same name as the domain event ``event``."""
    contract_type = getattr(contracts, type(event).__name__)
    return contract_type(message_id=message_id, **envelope, **asdict(event))


def event_records(
    events: Any,
    contracts: ModuleType,
    *,
    topic: str,
    key: Any,
    cause_id: str,
    envelope: dict[str, Any],
    first_index: int = 1,
) -> list[Outgoing]:
    """One record per event, ids derived from the cause so a retry repeats them exactly.

    ``key`` is the record key, or a function of the event that returns it.
    """
    records = []
    for index, event in enumerate(events, start=first_index):
        message = contract_message(event, contracts, derived_message_id(cause_id, index), envelope)
        record_key = key(event) if callable(key) else key
        records.append(Outgoing(topic, record_key.encode(), message.to_json_bytes()))
    return records
