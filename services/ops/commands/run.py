"""Running cartflow: one worker for scaling out (``worker``), or the backends
and every worker under one supervisor that restarts a worker that exits (``up``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from contracts.topics import ALL_TOPICS, GATEWAY_REPLIES
from services.ops.workers import WORKERS, load_spec
from services.runtime.settings import Settings

commands = typer.Typer()
GATEWAY = "gateway"


def _configure_logging(settings: Settings, fmt: str | None = None) -> None:
    from services.runtime.observability import configure_logging

    configure_logging(settings.log_level, fmt or settings.log_format)


@commands.command()
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


@commands.command()
def gateway() -> None:
    """Run the HTTP gateway (the original carts app's REST API) against the configured Kafka."""
    settings = Settings()
    _configure_logging(settings)
    from services.gateway.server import serve

    try:
        serve(settings)
    except RuntimeError as error:  # a setting that must not serve: said, not a traceback
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None


@commands.command()
def token(
    user_id: Annotated[str, typer.Argument(help="The user the token names (its sub).")],
    hours: Annotated[int, typer.Option(help="How long the token is valid.")] = 24,
) -> None:
    """Print a bearer token for USER_ID, signed with the gateway's HS256 secret
    (the configured one, else the development secret under the data folder)."""
    from services.gateway.auth import verifier

    try:
        typer.echo(verifier(Settings()).issue(user_id, ttl_seconds=hours * 3600))
    except RuntimeError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None


@commands.command()
def up(
    workers: Annotated[str, typer.Option(help="Comma-separated workers to start.")] = ",".join(WORKERS),
    http_port: Annotated[
        int, typer.Option(help="First port for the workers' /metrics, /healthz and /readyz (one each); 0: none.")
    ] = 9101,
    gateway_port: Annotated[
        int, typer.Option(help="Port of the HTTP gateway (default CARTFLOW_GATEWAY_PORT); -1: no gateway.")
    ] = -2,
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
        # Every topic of the contract, its dead letters and the gateway's replies: what an
        # operator creates once where the components' ACLs do not let them.
        asyncio.run(ensure_topics(settings, backends.kafka_bootstrap, (*ALL_TOPICS, GATEWAY_REPLIES)))
        env = dict(
            os.environ,
            CARTFLOW_KAFKA_BOOTSTRAP=backends.kafka_bootstrap,
            CARTFLOW_MONGO_URL=backends.mongo_url,
            CARTFLOW_TEST_BACKEND="external",
        )
        children: dict[str, subprocess.Popen] = {}

        ports = {name: http_port + index for index, name in enumerate(names)} if http_port else {}

        gateway_at = settings.gateway_port if gateway_port == -2 else gateway_port
        gateway_env = {"CARTFLOW_GATEWAY_PORT": str(gateway_at)}

        def spawn(name: str) -> None:
            if name == GATEWAY:
                log_file = open(home / "logs" / "gateway.log", "ab")  # noqa: SIM115 - owned by the child
                command, extra = ["gateway"], gateway_env
            else:
                log_file = open(home / "logs" / f"{name}-worker.log", "ab")  # noqa: SIM115 - owned by the child
                command = ["worker", name]
                extra = {"CARTFLOW_HTTP_PORT": str(ports[name]), "CARTFLOW_HTTP_HOST": "127.0.0.1"} if ports else {}
            children[name] = subprocess.Popen(
                [sys.executable, "-m", "services.ops.cli", *command],
                env={**env, **extra},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

        if gateway_at >= 0:
            from services.gateway.auth import loopback, verifier

            if settings.payment_simulator and not loopback(settings.gateway_host):
                typer.echo("CARTFLOW_PAYMENT_SIMULATOR serves on a loopback CARTFLOW_GATEWAY_HOST only", err=True)
                raise typer.Exit(2)
            development = verifier(settings).development  # makes the development secret before the gateway reads it
            names.append(GATEWAY)
        for name in names:
            spawn(name)
        typer.echo(f"cartflow is up ({backends.kind} backends)")
        typer.echo(f"  CARTFLOW_KAFKA_BOOTSTRAP={backends.kafka_bootstrap}")
        typer.echo(f"  CARTFLOW_MONGO_URL={backends.mongo_url}")
        typer.echo(f"  workers: {', '.join(names)} (logs in {home / 'logs'})")
        for name, port in ports.items():
            typer.echo(f"  {name} worker: http://127.0.0.1:{port}/metrics /healthz /readyz")
        if GATEWAY in children:
            typer.echo(f"  gateway: http://{settings.gateway_host}:{gateway_at}/ (the storefront; API docs at /docs)")
            if development:
                typer.echo("  a token for the gateway: .venv/bin/cartflow token USER_ID")
            if settings.payment_simulator:
                typer.echo("  payment simulator on: POST /api/payments/<payment_id>/simulate/")
            else:
                typer.echo("  payments: POST /api/payments/webhook/ (Stripe; CARTFLOW_STRIPE_WEBHOOK_SECRET), "
                           "or CARTFLOW_PAYMENT_SIMULATOR=true to pay from the payment page")
        typer.echo("Press Ctrl-C to stop.")
        try:
            while not stop["now"]:
                time.sleep(0.5)
                for name, child in list(children.items()):
                    if child.poll() is not None and not stop["now"]:
                        typer.echo(f"{name} exited with {child.returncode}; restarting it", err=True)
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

