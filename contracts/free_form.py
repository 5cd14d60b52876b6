"""Free-form objects a producer fills as it likes (an item's ``properties``, a
shipping address): which keys they may have, and how large they may grow.

Both are spelled here once; the workers' decoding and the HTTP gateway apply
the same rule and the same limits, so what the gateway lets through no worker
refuses, and a refusal comes at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field

#: The default limits of a deployment (``CARTFLOW_PROPERTIES_MAX_*``).
MAX_KEYS = 50
MAX_BYTES = 1024
MAX_DEPTH = 5

#: The fields of contract commands that hold free-form values.
FREE_FORM_FIELDS = ("properties", "shipping_address")

#: What a key may be, at any depth: not empty, no NUL byte (no BSON document can
#: hold it), no leading ``$`` (an operator to MongoDB) and no ``.`` (a path).
KEY_PATTERN = r"^[^$.\x00][^.\x00]*$"


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a key of a free-form object, if it cannot."""
    if key == "":
        return "a key is empty"
    if "\x00" in key:
        return f"key {key[:40]!r} contains a NUL byte"
    if key.startswith("$"):
        return f"key {key[:40]!r} starts with '$'"
    if "." in key:
        return f"key {key[:40]!r} contains '.'"
    return None


def _keys_storable(value: dict[str, Any]) -> dict[str, Any]:
    stack: list[Any] = [value]
    while stack:  # no recursion: nesting is bounded by the limits only later
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if (problem := key_problem(key)) is not None:
                    raise ValueError(f"{problem}; keys must be non-empty, without NUL, '.' or a leading '$'")
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return value


_KEYS_SCHEMA = {"propertyNames": {"pattern": KEY_PATTERN}}

#: A free-form JSON object whose keys, at every depth, follow ``KEY_PATTERN``.
FreeFormObject = Annotated[dict[str, Any], Field(json_schema_extra=_KEYS_SCHEMA), AfterValidator(_keys_storable)]
#: The same, with at most ``MAX_KEYS`` keys at its top (what a producer may send).
BoundedFreeFormObject = Annotated[
    dict[str, Any], Field(max_length=MAX_KEYS, json_schema_extra=_KEYS_SCHEMA), AfterValidator(_keys_storable)
]


def nesting_depth(value: Any) -> int:
    """Levels of objects and arrays in a JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


@dataclass(frozen=True)
class FreeFormLimits:
    """How large a free-form value may be: keys of its top object, bytes as
    compact UTF-8 JSON, levels of nesting."""

    max_keys: int = MAX_KEYS
    max_bytes: int = MAX_BYTES
    max_depth: int = MAX_DEPTH

    def problem(self, name: str, value: Any) -> str | None:
        """Why the free-form field ``name`` holding ``value`` exceeds these limits, if it does."""
        if value is None:
            return None
        if isinstance(value, dict) and len(value) > self.max_keys:
            return f"{name}: more than {self.max_keys} keys"
        if nesting_depth(value) > self.max_depth:
            return f"{name}: nested deeper than {self.max_depth} levels"
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())
        if size > self.max_bytes:
            return f"{name}: {size} bytes as JSON, more than {self.max_bytes}"
        return None

    def first_problem(self, fields: Any) -> str | None:
        """The first free-form field of a message (a model or a dict of fields) beyond these limits."""
        for name in FREE_FORM_FIELDS:
            value = fields.get(name) if isinstance(fields, dict) else getattr(fields, name, None)
            if (problem := self.problem(name, value)) is not None:
                return problem
        return None
