"""The composition root: every worker cartflow runs, with its spec and its own
operator commands. The command line, the ``up`` supervisor, status and the test
harnesses find the workers here and nowhere else."""

from __future__ import annotations

import typer

from services.cart_worker.app import SPEC as CART
from services.checkout_worker import operations as checkout_operations
from services.checkout_worker.app import SPEC as CHECKOUT
from services.runtime.spec import WorkerSpec
from services.stock_worker import operations as stock_operations
from services.stock_worker.app import SPEC as STOCK

#: Every worker, by name, in the order ``cartflow up`` starts them.
WORKERS: dict[str, WorkerSpec] = {spec.name: spec for spec in (CART, STOCK, CHECKOUT)}

#: The commands a worker offers operators about its own state, mounted as
#: ``cartflow NAME ...``; each queries the worker's collections through the
#: worker's own functions.
OPERATOR_COMMANDS: dict[str, typer.Typer] = {
    STOCK.name: stock_operations.commands,
    CHECKOUT.name: checkout_operations.commands,
}


def load_spec(name: str) -> WorkerSpec:
    return WORKERS[name]


def worker_groups() -> dict[str, tuple[str, ...]]:
    """Every consumer group of every worker (without the deployment's affixes), with the topics it reads."""
    return dict(group for spec in WORKERS.values() for group in spec.groups())
