"""The Kafka header names cartflow writes, in one place.

Headers that arrive on consumed records are input like any other field: none
of these is trusted for what it claims (a redrive is proven by a token kept in
MongoDB, not by the header that carries it).
"""

#: On dead letters: why and where from.
ERROR_CODE = "cartflow-error-code"
ERROR = "cartflow-error"
SOURCE_TOPIC = "cartflow-source-topic"
SOURCE_PARTITION = "cartflow-source-partition"
SOURCE_OFFSET = "cartflow-source-offset"
DEAD_LETTERED_AT = "cartflow-dead-lettered-at"

#: On records an operator sent back from a dead-letter topic.
REDRIVE_COUNT = "cartflow-redrive-count"
REDRIVEN_FROM = "cartflow-redriven-from"
#: The token ``cartflow dlq redrive`` stored in MongoDB for this record.
REDRIVE_TOKEN = "cartflow-redrive-token"

#: On records re-published by ``cartflow replay``.
REPLAYED_FROM = "cartflow-replayed-from"

#: Every header cartflow adds starts with this.
PREFIX = "cartflow-"
