"""Plumbing shared by every cartflow worker: settings, clock, Kafka and MongoDB
access, the inbox and the transactional outbox, batch processing, dead letters,
the embedded servers and the ``cartflow`` command line."""
