"""Operator tooling above the workers: the ``cartflow`` command line, the ``up``
supervisor, the embedded servers, status, replay, offsets, dead letters, the
demo, the AsyncAPI export and the client. It may import the workers; nothing
below it imports it."""
