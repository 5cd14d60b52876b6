"""The flat envelope every message carries, and the field types the contract shares."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

SCHEMA_VERSION = 1

#: The one identifier rule, for every id of the contract (users, products, items,
#: payments, message ids, Idempotency-Keys, a token's ``sub``), checked alike by
#: the contract models, the workers and the gateway: 1 to ``IDENTIFIER_MAX_LENGTH``
#: characters, no control character (C0 with NUL, DEL, C1), no line or paragraph
#: separator, no byte-order mark, and no white space at either end.
IDENTIFIER_MAX_LENGTH = 200
_UNPRINTABLE = r"\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff"
#: The rule as a regular expression both Python and JSON Schema (ECMA-262) read alike.
IDENTIFIER_PATTERN = rf"^[^\s{_UNPRINTABLE}](?:[^{_UNPRINTABLE}]*[^\s{_UNPRINTABLE}])?$"
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)

Identifier = Annotated[
    str, Field(min_length=1, max_length=IDENTIFIER_MAX_LENGTH, pattern=IDENTIFIER_PATTERN)
]


def is_identifier(value: object) -> bool:
    """Whether ``value`` would pass as an ``Identifier``."""
    if not (isinstance(value, str) and 0 < len(value) <= IDENTIFIER_MAX_LENGTH and _IDENTIFIER.fullmatch(value)):
        return False
    try:
        value.encode("utf-8")  # a lone surrogate from a JSON escape is not text any store accepts
    except UnicodeEncodeError:
        return False
    return True


#: Integers stay within 64 bits; anything larger is malformed, not merely invalid.
BoundedInt = Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]


def _integer_as_text(value: Any) -> Any:
    """The original app's clients send numeric ids (``"product_id": 123``): read as ``"123"``."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _digits_as_integer(value: Any) -> Any:
    """A quantity sent as a numeric string (``"2"``, as a form field gives it) is that number."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    return value


_DIGITS = re.compile(r"-?\d{1,19}", re.ASCII)

#: An identifier a client may also send as a JSON integer (read as its decimal string).
LooseIdentifier = Annotated[Identifier, BeforeValidator(_integer_as_text)]
#: A count a client may also send as a string of digits.
LooseInt = Annotated[BoundedInt, BeforeValidator(_digits_as_integer)]


def _format_money(value: Decimal) -> str:
    # Fixed-point, so that a Decimal such as Decimal("1E+2") is written "100".
    return format(value, "f")


def _amount(integer_digits: int) -> Any:
    """A decimal amount on the wire: plain ASCII digits, at most ``integer_digits``
    of them, and an optional dot followed by one or two decimals. No sign,
    exponent, separator or white space."""
    pattern = rf"^\d{{1,{integer_digits}}}(\.\d{{1,2}})?$"
    text = re.compile(pattern, re.ASCII)

    def parse(value: Any) -> Decimal:
        # Money travels as a decimal string so that no JSON reader turns it into a
        # binary float on the way. Decimal() itself is lenient ("7_499", "1E+2",
        # " 1.00", "-0" all parse), so the text is held to the pattern first.
        if isinstance(value, Decimal):
            return value  # built in code; check holds it to the same rule
        if not isinstance(value, str):
            raise ValueError('money must be a decimal string such as "74.99"')
        if not text.fullmatch(value):
            raise ValueError(
                f'not a plain decimal amount with at most two decimals, such as "74.99": {value[:40]!r}'
            )
        return Decimal(value)

    def check(value: Decimal) -> Decimal:
        if not value.is_finite():
            raise ValueError("money must be finite")
        if value.is_signed():  # also refuses -0
            raise ValueError("money cannot be negative")
        if value.as_tuple().exponent < -2:  # type: ignore[operator]
            raise ValueError("money has at most 2 decimals")
        if value.adjusted() > integer_digits - 1:
            raise ValueError(f"money has at most {integer_digits} integer digits")
        return value

    return Annotated[
        Decimal,
        BeforeValidator(parse),
        AfterValidator(check),
        PlainSerializer(_format_money, return_type=str),
        # The whole schema, not an addition to Decimal's (which would also offer a JSON number).
        WithJsonSchema({"type": "string", "pattern": pattern}),
    ]


#: Prices and payments: at most 13 integer digits.
Money = _amount(13)
#: Totals cartflow computes (a line's quantity times its price, a cart's sum of
#: lines): room for 18 integer digits.
Total = _amount(18)


def new_message_id() -> str:
    return str(uuid.uuid4())


def message_id_for(cause: str, kind: str, subject: str = "") -> str:
    """The id of what ``cause`` produced: the ``kind`` of thing (a message type,
    or an identifier such as ``Order``) about ``subject`` (the identity of what
    it is about, such as a reservation or item id).

    A pure function of its meaning: handling the same cause again yields the
    same ids, so a consumer's dedup sees a repeat, and two different things
    produced by one cause never share an id, however many there are.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cartflow:{cause}|{kind}|{subject}"))


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
