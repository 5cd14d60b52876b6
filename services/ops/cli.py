"""The ``cartflow`` command line: the root app and its wiring. The commands
live in ``services.ops.commands`` (one module a job) and, for a worker's own
state, in the worker's ``operations`` module, listed by the composition root."""

from __future__ import annotations

import typer

from services.ops.commands import dead_letters, describe, messages, replay, run
from services.ops.commands.connections import CommandContext
from services.ops.workers import OPERATOR_COMMANDS

app = typer.Typer(
    help="cartflow: cart, stock and checkout workers on Kafka and MongoDB.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # The workers' commands may not import the operator tooling: they open the
    # database through the context object, which every sub-command inherits.
    context_settings={"obj": CommandContext()},
)

for module in (run, messages, replay, describe, dead_letters):
    app.add_typer(module.commands)
for name, commands in OPERATOR_COMMANDS.items():
    app.add_typer(commands, name=name)


if __name__ == "__main__":
    app()
