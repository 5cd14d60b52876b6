"""Where a record is dead-lettered: the record for its topic's ``.dlq``, with the
original bytes and headers and headers that say where it came from and why.
(Which records go there is the processor's and the decoders' to decide.)"""

from __future__ import annotations

from datetime import datetime

from contracts.topics import dead_letter_topic
from services.runtime import headers as h
from services.runtime.codec import MAX_REASON
from services.runtime.records import Incoming, Outgoing


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
