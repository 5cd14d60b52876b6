"""What a deployment is doing and what it speaks: every worker's lag, backlog
and gauges (``status``), the contract as an AsyncAPI document (``asyncapi``),
and the Kafka ACLs each principal needs (``acls``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from services.ops.commands.connections import kafka_bootstrap, open_database
from services.ops.workers import WORKERS, load_spec
from services.runtime.settings import Settings

commands = typer.Typer()


@commands.command()
def status() -> None:
    """Per worker: consumer lag, outbox backlog, dead letters, open checkouts and overdue deadlines."""
    from rich.console import Console
    from rich.table import Table

    from services.runtime.clock import SystemClock
    from services.runtime.status import worker_status

    settings = Settings()
    kafka_bootstrap(settings)

    async def gather():
        async with open_database(settings) as db:
            return [await worker_status(load_spec(name), settings, db, SystemClock().now()) for name in WORKERS]

    table = Table(title="cartflow status")
    for column in ("worker", "consumer lag", "outbox backlog", "oldest outbox record", "parked", "dead letters", "gauges"):
        table.add_column(column)
    for row in asyncio.run(gather()):
        table.add_row(
            row.worker,
            "\n".join(f"{group}: {lag}" for group, lag in row.lag.items()),
            str(row.outbox_backlog),
            f"{row.outbox_age_seconds:.1f}s" if row.outbox_backlog else "-",
            str(row.parked),
            str(row.dead_letters),
            "\n".join(f"{name.replace('_', ' ')}: {value:g}" for name, value in row.figures.items()) or "-",
        )
    Console(width=160).print(table)


@commands.command()
def asyncapi(
    output: Annotated[Path, typer.Option(help="Where to write the document.")] = Path("docs/asyncapi.yaml"),
    check: Annotated[bool, typer.Option("--check", help="Only report whether OUTPUT is current.")] = False,
) -> None:
    """Write the contract as an AsyncAPI 3.0 document generated from contracts/."""
    from services.ops.asyncapi import render

    document = render()
    if check:
        current = output.exists() and output.read_text() == document
        typer.echo(f"{output} is {'current' if current else 'stale: run `cartflow asyncapi`'}")
        raise typer.Exit(0 if current else 1)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(document)
    typer.echo(f"wrote {output}")


@commands.command()
def acls(
    prefix: Annotated[str | None, typer.Option(help="Topic prefix (default: CARTFLOW_TOPIC_PREFIX).")] = None,
    bootstrap: Annotated[str, typer.Option(help="The --bootstrap-server of the commands.")] = "kafka:9092",
) -> None:
    """Print the kafka-acls.sh commands that grant each principal exactly what docs/security.md's table says."""
    from services.ops.access import kafka_acls

    typer.echo(kafka_acls(Settings().topic_prefix if prefix is None else prefix, bootstrap))


@commands.command()
def openapi(
    output: Annotated[Path, typer.Option(help="Where to write the document.")] = Path("docs/openapi.json"),
) -> None:
    """Write the HTTP gateway's OpenAPI 3.1 document (what /openapi.json serves, for a production gateway)."""
    from services.gateway.openapi import published_document

    output.write_text(published_document())
    typer.echo(f"wrote {output}")
