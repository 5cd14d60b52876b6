"""The public contract of cartflow: every message that crosses a Kafka topic.

One module per topic family. Each message is a flat JSON object whose ``type``
field names it and whose ``schema_version`` says which version of that shape it
is. The contract is the public API: fields may be added, never renamed; a
rename is a new ``schema_version``.
"""
