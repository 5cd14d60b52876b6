"""The ``cartflow`` commands of the operator tooling, one module a job: running
the system, sending messages, dead letters, replay and offsets, status and the
AsyncAPI export. Each module's ``commands`` is merged into the root app; the
workers' own commands come from the composition root (``services.ops.workers``)."""
