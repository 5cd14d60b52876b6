"""How a command reaches the deployment: the Kafka bootstrap and the MongoDB
database named by the settings, and the operator's message (exit code 2) when
one is not configured. The workers' own commands get the database through
``CommandContext``, so they need nothing of the operator tooling."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer

from services.runtime.settings import Settings

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase


def kafka_bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        typer.echo("set CARTFLOW_KAFKA_BOOTSTRAP (printed by `cartflow up`)", err=True)
        raise typer.Exit(2)
    return settings.kafka_bootstrap


@asynccontextmanager
async def open_database(settings: Settings | None = None) -> AsyncIterator[AsyncDatabase]:
    """The deployment's database for the length of a command; the client is closed after."""
    settings = settings or Settings()
    if not settings.mongo_url:
        typer.echo("set CARTFLOW_MONGO_URL (printed by `cartflow up`)", err=True)
        raise typer.Exit(2)
    from services.runtime.mongo import connect

    client = connect(settings.mongo_url)
    try:
        yield client[settings.mongo_db]
    finally:
        await client.close()


@dataclass(frozen=True)
class CommandContext:
    """The click context object the root app hands every command: a worker's
    command opens the deployment's database with ``ctx.obj.database()`` (an
    async context manager)."""

    database: Callable[[], AbstractAsyncContextManager[AsyncDatabase]] = open_database
