"""The checkout worker's operator commands, ``cartflow checkout ...``: one saga
as stored, and the unpaid sagas the deadline machinery failed to close.

The command line mounts ``commands`` under the worker's name and lends it the
deployment's database as the click context object (``ctx.obj.database()``,
an async context manager), so this module needs nothing of the operator tooling."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from pymongo.asynchronous.database import AsyncDatabase

from services.checkout_worker.domain import Checkout
from services.checkout_worker.repository import SAGAS, awaiting_past

commands = typer.Typer(help="Checkout sagas.", no_args_is_help=True)


async def stored_saga(db: AsyncDatabase, payment_id: str) -> dict[str, Any] | None:
    """The saga document as stored, its key named ``payment_id`` (and moved last)."""
    saga = await db[SAGAS].find_one({"_id": payment_id})
    if saga is not None:
        saga["payment_id"] = saga.pop("_id")
    return saga


async def stuck_sagas(db: AsyncDatabase, now: datetime, grace: timedelta) -> list[Checkout]:
    """Unpaid checkouts open more than ``grace`` past their deadline: the deadline
    message and the safety-net sweep should both have closed them by now."""
    return await awaiting_past(db, now - grace)


@commands.command("show")
def show(ctx: typer.Context, payment_id: Annotated[str, typer.Argument(help="The checkout's payment id.")]) -> None:
    """Print the state of one checkout: orders, payment, deadline."""

    async def run() -> int:
        async with ctx.obj.database() as db:
            saga = await stored_saga(db, payment_id)
        if saga is None:
            typer.echo(f"no checkout with payment id {payment_id}", err=True)
            return 1
        typer.echo(json.dumps(saga, indent=2, default=str))
        return 0

    raise typer.Exit(asyncio.run(run()))


@commands.command("stuck")
def stuck(
    ctx: typer.Context,
    grace: Annotated[float, typer.Option(help="Seconds past the deadline before a saga counts as stuck.")] = 60.0,
) -> None:
    """List unpaid checkouts still open past their deadline plus a grace period (expected: none)."""
    from services.runtime.clock import SystemClock

    async def run() -> int:
        async with ctx.obj.database() as db:
            sagas = await stuck_sagas(db, SystemClock().now(), timedelta(seconds=grace))
        if not sagas:
            typer.echo(f"no checkout is open more than {grace:g}s past its deadline")
            return 0
        for saga in sagas:
            typer.echo(f"{saga.payment_id}  user {saga.user_id}  deadline {saga.deadline.isoformat()}  {saga.total_amount}")
        return 1

    raise typer.Exit(asyncio.run(run()))
