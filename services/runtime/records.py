"""Messages as the runtime moves them: raw records in, records to publish out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Incoming:
    """One consumed Kafka record, bytes untouched."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_record(cls, record: Any) -> Incoming:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple((k, bytes(v or b"")) for k, v in (record.headers or ())),
        )

    def header(self, name: str) -> str | None:
        """The last value of header ``name``, as text (whatever bytes a producer put there)."""
        for key, value in reversed(self.headers):
            if key == name:
                return value.decode("utf-8", errors="replace")[:200]
        return None

    @property
    def fingerprint(self) -> str:
        """A dedup key for a record that carries no usable message_id."""
        digest = hashlib.sha256()
        digest.update(self.key or b"")
        digest.update(b"\x00")
        digest.update(self.value or b"")
        return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class Outgoing:
    """One record to publish through the outbox."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    #: The inbox entry of the command points at its replies, which are sent
    #: again when the same command is delivered again; events are not.
    is_reply: bool = False
    #: For a reply produced after its command was taken in (a deferred answer):
    #: the dedup key of that command, whose inbox entry the reply joins.
    answers: str | None = None

    @property
    def size(self) -> int:
        """Bytes on the wire, as the broker's record size limit counts them."""
        return len(self.value) + len(self.key or b"") + sum(len(k) + len(v) for k, v in self.headers)

    def to_doc(self) -> dict[str, Any]:
        """What the outbox keeps: the record itself (how it was routed is the processor's business)."""
        return {
            "topic": self.topic,
            "key": self.key,
            "value": self.value,
            "headers": [[name, value] for name, value in self.headers],
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Outgoing:
        return cls(
            topic=doc["topic"],
            key=bytes(doc["key"]) if doc.get("key") is not None else None,
            value=bytes(doc["value"]),
            headers=tuple((name, bytes(value)) for name, value in doc.get("headers") or ()),
            is_reply=bool(doc.get("is_reply")),
            answers=doc.get("answers"),
        )
