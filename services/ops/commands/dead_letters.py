"""``cartflow dlq``: what the workers set aside, and sending it back once the
cause is fixed. Two kinds: dead-lettered input records (on each topic's
``.dlq`` topic) and parked outbox records (output a worker could never publish)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from services.ops.commands.connections import kafka_bootstrap, open_database
from services.ops.workers import WORKERS
from services.runtime import headers as h
from services.runtime.settings import Settings

dlq = typer.Typer(help="Dead-letter topics: what is parked and why; send it back.", no_args_is_help=True)

commands = typer.Typer()
commands.add_typer(dlq, name="dlq")


@dlq.command("list")
def dlq_list(topic: Annotated[str, typer.Argument(help="The source topic, e.g. cart.commands.")]) -> None:
    """Show what sits in TOPIC's dead-letter topic, and why."""
    from rich.console import Console
    from rich.table import Table

    from services.ops.dlq import read_dead_letters

    settings = Settings()
    letters = asyncio.run(read_dead_letters(kafka_bootstrap(settings), settings.topic(topic), **settings.kafka_client_options))
    table = Table(title=f"{settings.topic(topic)}.dlq: {len(letters)} record(s)")
    for column in ("partition:offset", "message_id", "error", "reason", "redrives"):
        table.add_column(column)
    for letter in letters:
        table.add_row(
            f"{letter.partition}:{letter.offset}",
            letter.message_id or "-",
            letter.header(h.ERROR_CODE) or "-",
            (letter.header(h.ERROR) or "-")[:120],
            str(letter.redrive_count),
        )
    Console(width=200).print(table)


@dlq.command("redrive")
def dlq_redrive(
    topic: Annotated[str, typer.Argument(help="The source topic, e.g. cart.commands.")],
    message_id: Annotated[list[str] | None, typer.Option(help="Only these message ids (repeatable).")] = None,
    max_redrives: Annotated[int, typer.Option(help="Skip records already sent back this many times.")] = 3,
) -> None:
    """Send dead-lettered records back to TOPIC, after the cause was fixed."""
    from services.ops.dlq import read_dead_letters, redrive

    settings = Settings()
    bootstrap, source = kafka_bootstrap(settings), settings.topic(topic)
    letters = asyncio.run(read_dead_letters(bootstrap, source, **settings.kafka_client_options))
    chosen = [l for l in letters if not message_id or l.message_id in message_id]
    # The newest copy of each message only: an earlier, failed redrive is history.
    newest = {l.message_id or f"{l.partition}:{l.offset}": l for l in chosen}
    worn = [l for l in newest.values() if l.redrive_count >= max_redrives]
    ready = [l for l in newest.values() if l.redrive_count < max_redrives]

    async def send_back() -> int:
        from services.runtime.clock import SystemClock

        async with open_database(settings) as db:
            return await redrive(bootstrap, source, ready, db, SystemClock().now(), **settings.kafka_client_options)

    sent = asyncio.run(send_back())
    typer.echo(f"read {len(letters)}, re-published {sent} to {source}, skipped {len(worn)} sent back {max_redrives}+ times")


def _outboxes(worker: str | None) -> list[str]:
    if worker is not None and worker not in WORKERS:
        raise typer.BadParameter(f"unknown worker {worker!r}; choose one of: {', '.join(WORKERS)}")
    return [f"{name}.outbox" for name in ([worker] if worker else WORKERS)]


@dlq.command("parked")
def dlq_parked(
    worker: Annotated[str | None, typer.Option(help="Only this worker's records (cart, stock, checkout).")] = None,
) -> None:
    """Show records a worker wrote but could never publish (an illegal or missing topic,
    a record over the size limit, a topic it may not write), and why."""
    from rich.console import Console
    from rich.table import Table

    from services.runtime.outbox import PARKED_SUFFIX

    settings = Settings()

    async def gather() -> list[tuple[str, dict]]:
        async with open_database(settings) as db:
            return [
                (outbox, doc)
                for outbox in _outboxes(worker)
                async for doc in db[outbox + PARKED_SUFFIX].find({}, {"value": 0})
                .sort([("chunk", 1), ("index", 1), ("_id", 1)]).limit(1000)
            ]

    rows = asyncio.run(gather())
    table = Table(title=f"parked outbox records: {len(rows)}")
    for column in ("worker", "id", "topic", "parked at", "reason"):
        table.add_column(column)
    for outbox, doc in rows:
        table.add_row(
            outbox.split(".")[0], str(doc["_id"]), str(doc.get("topic"))[:80], str(doc.get("parked_at")),
            str(doc.get("reason"))[:120],
        )
    Console(width=200).print(table)


@dlq.command("unpark")
def dlq_unpark(
    worker: Annotated[str, typer.Option(help="The worker whose parked records to send again.")],
    record_id: Annotated[list[str] | None, typer.Option("--id", help="Only these ids (repeatable).")] = None,
) -> None:
    """Put parked records back into the worker's outbox once the cause is fixed (the
    topic created, the broker's limit raised); still unpublishable, they are parked again."""
    from services.runtime.clock import SystemClock
    from services.runtime.outbox import unpark

    settings = Settings()

    async def run() -> int:
        async with open_database(settings) as db:
            # Records parked by earlier releases have numeric ids.
            ids = [int(i) if i.isdigit() else i for i in record_id or ()]
            return await unpark(db, _outboxes(worker)[0], SystemClock().now(), ids or None)

    typer.echo(f"sent {asyncio.run(run())} parked record(s) back to the {worker} outbox")
