"""Talking to a running system through its topics: one message (``send``), or
the scripted shopping session that shows every worker at work (``demo``)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from services.ops.commands.connections import kafka_bootstrap
from services.runtime.settings import Settings

commands = typer.Typer()


@commands.command()
def send(
    topic: Annotated[str, typer.Argument(help="Topic, e.g. cart.commands (the deployment's prefix is added).")],
    payload: Annotated[str, typer.Argument(help="The message as JSON; envelope fields are filled in.")],
    wait: Annotated[bool, typer.Option(help="Wait for the CommandResult of a cart command.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply.")] = 30.0,
) -> None:
    """Publish one message and print the reply when it has one."""
    settings = Settings()
    bootstrap = kafka_bootstrap(settings)
    try:
        body = json.loads(payload)
    except ValueError as exc:
        typer.echo(f"not JSON: {exc}", err=True)
        raise typer.Exit(2) from exc
    from contracts.topics import CART_COMMANDS, CART_REPLIES
    from services.ops.client import CartflowClient

    async def run() -> None:
        async with CartflowClient(
            bootstrap,
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


@commands.command()
def demo(
    expiry_wait: Annotated[float, typer.Option(help="Seconds to wait for the unpaid checkout to expire.")] = 120.0,
) -> None:
    """Run a scripted shopping session against a running system and print its timeline."""
    from services.ops.demo import Demo

    settings = Settings()
    kafka_bootstrap(settings)
    try:
        code = asyncio.run(Demo(settings, echo=typer.echo, expiry_wait=expiry_wait).run())
    except (LookupError, RuntimeError, TimeoutError) as exc:
        typer.echo(f"demo stopped: {exc or type(exc).__name__}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)
