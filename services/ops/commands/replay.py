"""Going back in a topic: re-publish a range of it (``replay``), or move a
stopped worker group's offsets so it reads again from there (``offsets reset``).
Both are safe because every consumer dedups on message_id."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from services.ops.commands.connections import kafka_bootstrap
from services.ops.workers import worker_groups
from services.runtime.settings import Settings

offsets = typer.Typer(help="Consumer-group offsets.", no_args_is_help=True)

commands = typer.Typer()
commands.add_typer(offsets, name="offsets")


def _moment(text: str | None) -> datetime | None:
    """An ISO 8601 time; one without a zone is read as UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@commands.command()
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
    bootstrap = kafka_bootstrap(settings)
    source, target = settings.topic(topic), settings.topic(into) if into else None
    _warn_beyond_the_dedup_window(settings, _moment(from_time))
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


def _warn_beyond_the_dedup_window(settings: Settings, start: datetime | None) -> None:
    """Records older than the dedup window were forgotten by the inboxes: replayed, they take effect again."""
    hours = settings.inbox_retention_hours
    edge = datetime.now(UTC) - timedelta(hours=hours)
    if start is None:
        typer.echo(
            f"note: records processed before {edge.isoformat(timespec='seconds')} are beyond the dedup window "
            f"(CARTFLOW_INBOX_RETENTION_HOURS={hours:g}) and take effect again if replayed",
            err=True,
        )
    elif start < edge:
        typer.echo(
            f"warning: --from-time is before {edge.isoformat(timespec='seconds')}, beyond the dedup window "
            f"(CARTFLOW_INBOX_RETENTION_HOURS={hours:g}): records processed that long ago take effect again",
            err=True,
        )


@offsets.command("reset")
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
                kafka_bootstrap(settings), group_id, [settings.topic(t) for t in topics[group]],
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
