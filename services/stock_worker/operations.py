"""The stock worker's operator commands, ``cartflow stock ...``: the audit of
the stock counters against the reservation records.

The command line mounts ``commands`` under the worker's name and lends it the
deployment's database as the click context object (``ctx.obj.database()``,
an async context manager), so this module needs nothing of the operator tooling."""

from __future__ import annotations

import asyncio

import typer

commands = typer.Typer(help="Stock levels and reservations.", no_args_is_help=True)


@commands.command("audit")
def audit(ctx: typer.Context) -> None:
    """Recompute reserved and sold from the reservation records; report any drift from the counters."""
    from services.stock_worker.audit import run_audit

    async def run() -> int:
        async with ctx.obj.database() as db:
            report = await run_audit(db)
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
