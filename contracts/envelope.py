"""The flat envelope every message carries, and the field types the contract shares."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

SCHEMA_VERSION = 1

#: Identifiers: non-empty, bounded, no surrounding white space.
Identifier = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")
]
_IDENTIFIER = re.compile(r"^\S(.*\S)?$", re.DOTALL)


def is_identifier(value: object) -> bool:
    """Whether ``value`` would pass as an ``Identifier``."""
    return isinstance(value, str) and 0 < len(value) <= 200 and bool(_IDENTIFIER.match(value))


#: Integers stay within 64 bits; anything larger is malformed, not merely invalid.
BoundedInt = Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]


def _parse_money(value: Any) -> Decimal:
    # Money travels as a decimal string so that no JSON reader turns it into a
    # binary float on the way.
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str):
        raise ValueError("money must be a decimal string such as \"74.99\"")
    try:
        parsed = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal amount: {value!r}") from exc
    if not parsed.is_finite():
        raise ValueError("money must be finite")
    return parsed


def _check_money(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("money cannot be negative")
    if value.as_tuple().exponent < -4 or value.adjusted() > 12:  # type: ignore[operator]
        raise ValueError("money has at most 13 integer digits and 4 decimals")
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_parse_money),
    AfterValidator(_check_money),
    PlainSerializer(lambda d: str(d), return_type=str),
    Field(json_schema_extra={"type": "string", "pattern": r"^\d+(\.\d+)?$"}),
]


def new_message_id() -> str:
    return str(uuid.uuid4())


def derived_message_id(cause: str, index: int) -> str:
    """A message id that is a pure function of its cause and position.

    Messages produced while handling a command get ids derived from the
    command's id, so handling the same command again yields the same ids and a
    consumer's dedup sees a repeat, not a new message.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cartflow:{cause}:{index}"))


def utc_now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """Fields common to every message on every topic."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    message_id: Identifier
    type: str
    schema_version: Literal[1] = SCHEMA_VERSION
    occurred_at: AwareDatetime
    correlation_id: Identifier | None = None
    causation_id: Identifier | None = None

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class Command(Envelope):
    """A request to do something; answered by a ``CommandResult`` on ``reply_to``."""

    reply_to: Annotated[str, Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")] | None = None

    @model_validator(mode="after")
    def _correlation_defaults_to_own_id(self) -> Command:
        if self.correlation_id is None:
            object.__setattr__(self, "correlation_id", self.message_id)
        return self


class Event(Envelope):
    """A fact that happened, named in the past tense."""
