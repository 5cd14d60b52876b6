"""The ``cartflow`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from contracts.topics import ALL_TOPICS
from services.ops.workers import WORKERS, load_spec, worker_groups
from services.runtime.settings import Settings

app = typer.Typer(help="cartflow: cart, stock and checkout workers on Kafka and MongoDB.", no_args_is_help=True, pretty_exceptions_enable=False)

def _configure_logging(settings: Settings, fmt: str | None = None) -> None:
    from services.runtime.observability import configure_logging

    configure_logging(settings.log_level, fmt or settings.log_format)


@app.command()
def worker(name: Annotated[str, typer.Argument(help="cart | stock | checkout")]) -> None:
    """Run one worker against the configured backends (for scaling out)."""
    settings = Settings()
    _configure_logging(settings)
    if name not in WORKERS:
        typer.echo(f"unknown worker {name!r}; choose one of: {', '.join(WORKERS)}", err=True)
        raise typer.Exit(2)
    from services.runtime.observability import configure_tracing
    from services.runtime.worker import build_app

    configure_tracing(f"cartflow-{name}-worker", settings.tracing_exporter)
    application = build_app(load_spec(name), settings)
    if settings.http_port is None:
        asyncio.run(application.run())
    else:
        # log_config None: uvicorn logs through the worker's (JSON) handler.
        options = {"host": settings.http_host, "port": settings.http_port, "access_log": "false", "log_config": None}
        asyncio.run(application.run(run_extra_options=options))


@app.command()
def up(
    workers: Annotated[str, typer.Option(help="Comma-separated workers to start.")] = ",".join(WORKERS),
    http_port: Annotated[
        int, typer.Option(help="First port for the workers' /metrics, /healthz and /readyz (one each); 0: none.")
    ] = 9101,
) -> None:
    """Start the backends and every worker; stop everything on Ctrl-C or SIGTERM."""
    settings = Settings()
    _configure_logging(settings, "text")
    from services.ops.backends import open_backends
    from services.runtime.kafka import ensure_topics

    names = [name.strip() for name in workers.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKERS]
    if unknown:
        typer.echo(f"unknown or unreleased worker(s): {', '.join(unknown)}", err=True)
        raise typer.Exit(2)
    home = Path(settings.data_dir)
    # The workers' logs go here whichever backends run (external ones make no folders).
    (home / "logs").mkdir(parents=True, exist_ok=True)
    stop = {"now": False}

    def request_stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with open_backends(settings, data_dir=home / "data", log_dir=home / "logs") as backends:
        asyncio.run(ensure_topics(settings, backends.kafka_bootstrap, ALL_TOPICS))
        env = dict(
            os.environ,
            CARTFLOW_KAFKA_BOOTSTRAP=backends.kafka_bootstrap,
            CARTFLOW_MONGO_URL=backends.mongo_url,
            CARTFLOW_TEST_BACKEND="external",
        )
        children: dict[str, subprocess.Popen] = {}

        ports = {name: http_port + index for index, name in enumerate(names)} if http_port else {}

        def spawn(name: str) -> None:
            log_file = open(home / "logs" / f"{name}-worker.log", "ab")  # noqa: SIM115 - owned by the child
            port = {"CARTFLOW_HTTP_PORT": str(ports[name]), "CARTFLOW_HTTP_HOST": "127.0.0.1"} if ports else {}
            children[name] = subprocess.Popen(
                [sys.executable, "-m", "services.ops.cli", "worker", name],
                env={**env, **port},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

        for name in names:
            spawn(name)
        typer.echo(f"cartflow is up ({backends.kind} backends)")
        typer.echo(f"  CARTFLOW_KAFKA_BOOTSTRAP={backends.kafka_bootstrap}")
        typer.echo(f"  CARTFLOW_MONGO_URL={backends.mongo_url}")
        typer.echo(f"  workers: {', '.join(names)} (logs in {home / 'logs'})")
        for name, port in ports.items():
            typer.echo(f"  {name} worker: http://127.0.0.1:{port}/metrics /healthz /readyz")
        typer.echo("Press Ctrl-C to stop.")
        try:
            while not stop["now"]:
                time.sleep(0.5)
                for name, child in list(children.items()):
                    if child.poll() is not None and not stop["now"]:
                        typer.echo(f"{name} worker exited with {child.returncode}; restarting it", err=True)
                        spawn(name)
        finally:
            typer.echo("stopping workers...")
            for child in children.values():
                if child.poll() is None:
                    child.terminate()
            for child in children.values():
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
            typer.echo("stopping backends...")
    typer.echo("cartflow stopped")


@app.command()
def send(
    topic: Annotated[str, typer.Argument(help="Topic, e.g. cart.commands (the deployment's prefix is added).")],
    payload: Annotated[str, typer.Argument(help="The message as JSON; envelope fields are filled in.")],
    wait: Annotated[bool, typer.Option(help="Wait for the CommandResult of a cart command.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply.")] = 30.0,
) -> None:
    """Publish one message and print the reply when it has one."""
    settings = Settings()
    if not settings.kafka_bootstrap:
        typer.echo("set CARTFLOW_KAFKA_BOOTSTRAP (printed by `cartflow up`)", err=True)
        raise typer.Exit(2)
    try:
        body = json.loads(payload)
    except ValueError as exc:
        typer.echo(f"not JSON: {exc}", err=True)
        raise typer.Exit(2) from exc
    from contracts.topics import CART_COMMANDS, CART_REPLIES
    from services.ops.client import CartflowClient

    async def run() -> None:
        async with CartflowClient(
            settings.kafka_bootstrap or "",
            reply_topic=settings.topic(CART_REPLIES),
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            **settings.kafka_client_options,
        ) as client:
            # Only cart commands are answered with a CommandResult; the others
            # (stock commands, catalog and payment events) are answered by events.
            if topic == CART_COMMANDS and wait:
                reply = await client.request(settings.topic(topic), body, timeout=timeout)
                typer.echo(json.dumps(reply, indent=2))
            else:
                sent = await client.publish(settings.topic(topic), body)
                typer.echo(json.dumps(sent, indent=2))

    try:
        asyncio.run(run())
    except TimeoutError:
        typer.echo(f"no reply within {timeout}s", err=True)
        raise typer.Exit(1) from None
    except LookupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


stock_app = typer.Typer(help="Stock levels and reservations.", no_args_is_help=True)
app.add_typer(stock_app, name="stock")


@stock_app.command("audit")
def stock_audit() -> None:
    """Recompute reserved and sold from the reservation records; report any drift from the counters."""
    settings = Settings()
    from services.stock_worker.audit import run_audit

    async def run() -> int:
        client, db = _database(settings)
        try:
            report = await run_audit(db)
        finally:
            await client.close()
        typer.echo(f"levels checked: {report.levels}, reservations read: {report.reservations}")
        if not report.drifts:
            typer.echo("no drift: every counter equals the sum of its reservation records")
            return 0
        typer.echo(f"{len(report.drifts)} level(s) drifted:")
        for drift in report.drifts:
            typer.echo(
                f"  {drift.key}: reserved {drift.recorded_reserved} recorded vs {drift.counted_reserved} counted, "
                f"sold {drift.recorded_sold} recorded vs {drift.counted_sold} counted"
            )
        return 1

    raise typer.Exit(asyncio.run(run()))


dlq_app = typer.Typer(help="Dead-letter topics: what is parked and why; send it back.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


def _bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        typer.echo("set CARTFLOW_KAFKA_BOOTSTRAP (printed by `cartflow up`)", err=True)
        raise typer.Exit(2)
    return settings.kafka_bootstrap


@dlq_app.command("list")
def dlq_list(topic: Annotated[str, typer.Argument(help="The source topic, e.g. cart.commands.")]) -> None:
    """Show what sits in TOPIC's dead-letter topic, and why."""
    from rich.console import Console
    from rich.table import Table

    from services.ops.dlq import read_dead_letters

    settings = Settings()
    letters = asyncio.run(read_dead_letters(_bootstrap(settings), settings.topic(topic), **settings.kafka_client_options))
    table = Table(title=f"{settings.topic(topic)}.dlq: {len(letters)} record(s)")
    for column in ("partition:offset", "message_id", "error", "reason", "redrives"):
        table.add_column(column)
    for letter in letters:
        table.add_row(
            f"{letter.partition}:{letter.offset}",
            letter.message_id or "-",
            letter.header("cartflow-error-code") or "-",
            (letter.header("cartflow-error") or "-")[:120],
            str(letter.redrive_count),
        )
    Console(width=200).print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    topic: Annotated[str, typer.Argument(help="The source topic, e.g. cart.commands.")],
    message_id: Annotated[list[str] | None, typer.Option(help="Only these message ids (repeatable).")] = None,
    max_redrives: Annotated[int, typer.Option(help="Skip records already sent back this many times.")] = 3,
) -> None:
    """Send dead-lettered records back to TOPIC, after the cause was fixed."""
    from services.ops.dlq import read_dead_letters, redrive

    settings = Settings()
    bootstrap, source = _bootstrap(settings), settings.topic(topic)
    letters = asyncio.run(read_dead_letters(bootstrap, source, **settings.kafka_client_options))
    chosen = [l for l in letters if not message_id or l.message_id in message_id]
    # The newest copy of each message only: an earlier, failed redrive is history.
    newest = {l.message_id or f"{l.partition}:{l.offset}": l for l in chosen}
    worn = [l for l in newest.values() if l.redrive_count >= max_redrives]
    ready = [l for l in newest.values() if l.redrive_count < max_redrives]

    async def send_back() -> int:
        from services.runtime.clock import SystemClock

        client, db = _database(settings)
        try:
            return await redrive(bootstrap, source, ready, db, SystemClock().now(), **settings.kafka_client_options)
        finally:
            await client.close()

    sent = asyncio.run(send_back())
    typer.echo(f"read {len(letters)}, re-published {sent} to {source}, skipped {len(worn)} sent back {max_redrives}+ times")


def _outboxes(worker: str | None) -> list[str]:
    if worker is not None and worker not in WORKERS:
        raise typer.BadParameter(f"unknown worker {worker!r}; choose one of: {', '.join(WORKERS)}")
    return [f"{name}.outbox" for name in ([worker] if worker else WORKERS)]


@dlq_app.command("parked")
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
        client, db = _database(settings)
        try:
            return [
                (outbox, doc)
                for outbox in _outboxes(worker)
                async for doc in db[outbox + PARKED_SUFFIX].find({}, {"value": 0}).sort("_id", 1).limit(1000)
            ]
        finally:
            await client.close()

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


@dlq_app.command("unpark")
def dlq_unpark(
    worker: Annotated[str, typer.Option(help="The worker whose parked records to send again.")],
    record_id: Annotated[list[int] | None, typer.Option("--id", help="Only these ids (repeatable).")] = None,
) -> None:
    """Put parked records back into the worker's outbox once the cause is fixed (the
    topic created, the broker's limit raised); still unpublishable, they are parked again."""
    from services.runtime.clock import SystemClock
    from services.runtime.outbox import unpark

    settings = Settings()

    async def run() -> int:
        client, db = _database(settings)
        try:
            return await unpark(db, _outboxes(worker)[0], SystemClock().now(), record_id or None)
        finally:
            await client.close()

    typer.echo(f"sent {asyncio.run(run())} parked record(s) back to the {worker} outbox")


def _moment(text: str | None) -> datetime | None:
    """An ISO 8601 time; one without a zone is read as UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def replay(
    topic: Annotated[str, typer.Option(help="The topic to read, e.g. cart.commands.")],
    from_offset: Annotated[int | None, typer.Option(help="First offset, in every chosen partition.")] = None,
    from_time: Annotated[str | None, typer.Option(help="First record at or after this ISO time.")] = None,
    to_time: Annotated[str | None, typer.Option(help="Skip records stamped after this ISO time.")] = None,
    partition: Annotated[int | None, typer.Option(help="Only this partition.")] = None,
    into: Annotated[str | None, typer.Option(help="Publish to this topic instead of TOPIC.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and count; publish nothing.")] = False,
) -> None:
    """Re-publish a range of a topic, byte for byte. Consumers dedup on message_id,
    so replaying what was already processed changes nothing."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from services.ops.replay import replay as run_replay

    if from_offset is not None and from_time is not None:
        raise typer.BadParameter("give --from-offset or --from-time, not both")
    settings = Settings()
    bootstrap = _bootstrap(settings)
    source, target = settings.topic(topic), settings.topic(into) if into else None
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        transient=False,
    ) as progress:
        task = progress.add_task(f"replaying {source}", total=None)
        try:
            summary = asyncio.run(
                run_replay(
                    bootstrap, source, into=target, from_offset=from_offset, from_time=_moment(from_time),
                    to_time=_moment(to_time), partition=partition, dry_run=dry_run,
                    on_plan=lambda total: progress.update(task, total=total),
                    on_progress=lambda advanced: progress.advance(task, advanced),
                    **settings.kafka_client_options,
                )
            )
        except LookupError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    verb = "would re-publish" if dry_run else "re-published"
    typer.echo(
        f"read {summary.read}, {verb} {summary.republished} to {target or source}, "
        f"skipped {summary.skipped} (after --to-time)"
    )


offsets_app = typer.Typer(help="Consumer-group offsets.", no_args_is_help=True)
app.add_typer(offsets_app, name="offsets")


@offsets_app.command("reset")
def offsets_reset(
    group: Annotated[str, typer.Option(help="A worker's group: cart, stock, checkout or checkout-timeouts.")],
    to_time: Annotated[str | None, typer.Option(help="Move to the first record at or after this ISO time.")] = None,
    to_earliest: Annotated[bool, typer.Option("--to-earliest", help="Move to the beginning.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the moves; commit nothing.")] = False,
) -> None:
    """Rewind (or advance) a stopped worker group: it re-reads from there when started.
    Re-read messages are deduped, so nothing changes twice."""
    from services.ops.offsets import GroupIsRunning, reset_group_offsets

    if (to_time is None) == (not to_earliest):
        raise typer.BadParameter("give exactly one of --to-time or --to-earliest")
    settings = Settings()
    topics = worker_groups()
    if group not in topics:
        raise typer.BadParameter(f"unknown group {group!r}; choose one of: {', '.join(topics)}")
    group_id = settings.group_id(group)
    try:
        moves = asyncio.run(
            reset_group_offsets(
                _bootstrap(settings), group_id, [settings.topic(t) for t in topics[group]],
                to_time=_moment(to_time), dry_run=dry_run, **settings.kafka_client_options,
            )
        )
    except GroupIsRunning as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    for move in moves:
        typer.echo(f"  {move.topic}[{move.partition}]: {move.current if move.current is not None else '-'} -> {move.target}")
    verb = "would move" if dry_run else "moved"
    typer.echo(f"{verb} {group_id} on {len(moves)} partition(s); start its workers to resume from there")


@app.command()
def status() -> None:
    """Per worker: consumer lag, outbox backlog, dead letters, open checkouts and overdue deadlines."""
    from rich.console import Console
    from rich.table import Table

    from services.runtime.clock import SystemClock
    from services.runtime.status import worker_status

    settings = Settings()
    _bootstrap(settings)

    async def gather():
        client, db = _database(settings)
        try:
            return [await worker_status(load_spec(name), settings, db, SystemClock().now()) for name in WORKERS]
        finally:
            await client.close()

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


@app.command()
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


@app.command()
def demo(
    expiry_wait: Annotated[float, typer.Option(help="Seconds to wait for the unpaid checkout to expire.")] = 120.0,
) -> None:
    """Run a scripted shopping session against a running system and print its timeline."""
    from services.ops.demo import Demo

    settings = Settings()
    _bootstrap(settings)
    try:
        code = asyncio.run(Demo(settings, echo=typer.echo, expiry_wait=expiry_wait).run())
    except (LookupError, RuntimeError, TimeoutError) as exc:
        typer.echo(f"demo stopped: {exc or type(exc).__name__}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


checkout_app = typer.Typer(help="Checkout sagas.", no_args_is_help=True)
app.add_typer(checkout_app, name="checkout")


def _database(settings: Settings):
    if not settings.mongo_url:
        typer.echo("set CARTFLOW_MONGO_URL (printed by `cartflow up`)", err=True)
        raise typer.Exit(2)
    from services.runtime.mongo import connect

    client = connect(settings.mongo_url)
    return client, client[settings.mongo_db]


@checkout_app.command("show")
def checkout_show(payment_id: Annotated[str, typer.Argument(help="The checkout's payment id.")]) -> None:
    """Print the state of one checkout: orders, payment, deadline."""
    from services.checkout_worker.repository import SAGAS

    async def run() -> int:
        client, db = _database(Settings())
        try:
            saga = await db[SAGAS].find_one({"_id": payment_id})
        finally:
            await client.close()
        if saga is None:
            typer.echo(f"no checkout with payment id {payment_id}", err=True)
            return 1
        saga["payment_id"] = saga.pop("_id")
        typer.echo(json.dumps(saga, indent=2, default=str))
        return 0

    raise typer.Exit(asyncio.run(run()))


@checkout_app.command("stuck")
def checkout_stuck(
    grace: Annotated[float, typer.Option(help="Seconds past the deadline before a saga counts as stuck.")] = 60.0,
) -> None:
    """List unpaid checkouts still open past their deadline plus a grace period (expected: none)."""
    from datetime import timedelta

    from services.checkout_worker.repository import awaiting_past
    from services.runtime.clock import SystemClock

    async def run() -> int:
        client, db = _database(Settings())
        try:
            stuck = await awaiting_past(db, SystemClock().now() - timedelta(seconds=grace))
        finally:
            await client.close()
        if not stuck:
            typer.echo(f"no checkout is open more than {grace:g}s past its deadline")
            return 0
        for saga in stuck:
            typer.echo(f"{saga.payment_id}  user {saga.user_id}  deadline {saga.deadline.isoformat()}  {saga.total_amount}")
        return 1

    raise typer.Exit(asyncio.run(run()))


if __name__ == "__main__":
    app()
