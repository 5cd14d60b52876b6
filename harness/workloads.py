"""A reproducible cart workload, for the crash test and the replay-equivalence test."""

from __future__ import annotations

import random
from collections import defaultdict

from harness.support import command
from contracts.derived_ids import new_item_id

USERS = [f"crash-user-{n}" for n in range(15)]
PRODUCTS = {
    "crash-shoe": {"name": "Shoe", "price": "74.99"},
    "crash-sock": {"name": "Sock", "price": "3.25"},
    "crash-shirt": {"name": "Shirt", "price": "30.00", "sizes": [{"size": "M", "price": "30.00"}]},
}


def workload(count: int, seed: int = 7) -> list[dict]:
    """A reproducible stream of adds, updates, removes, clears and reads."""
    rng = random.Random(seed)
    lines: dict[str, list[str]] = defaultdict(list)
    stream = []
    for n in range(count):
        user = rng.choice(USERS)
        roll = rng.random()
        if roll < 0.45 or not lines[user]:
            pid = rng.choice(list(PRODUCTS))
            extra = {"size": "M"} if pid == "crash-shirt" else {}
            message = command("AddItem", user_id=user, product_id=pid, quantity=rng.randint(1, 4), **extra)
            lines[user].append(new_item_id(message["message_id"]))
        elif roll < 0.65:
            message = command("UpdateItemQuantity", user_id=user, item_id=rng.choice(lines[user]), quantity=rng.randint(1, 9))
        elif roll < 0.8:
            message = command("RemoveItem", user_id=user, item_id=lines[user].pop(rng.randrange(len(lines[user]))))
        elif roll < 0.85:
            message = command("ClearCart", user_id=user)
            lines[user].clear()
        else:
            message = command("GetCart", user_id=user)
        message["message_id"] = f"crash-{seed}-{n}"
        message["correlation_id"] = message["message_id"]
        stream.append(message)
    return stream
