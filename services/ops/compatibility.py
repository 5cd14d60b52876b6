"""The breaking-change guard: this release's contracts against the v1 baseline.

Both contracts are committed as they were when v1 was fixed
(``docs/contract/v1/``): the JSON Schema of every Kafka message of
``contracts/`` and the gateway's OpenAPI document. Within v1, fields may be
added, never renamed or removed; a type may widen, never narrow; a request may
gain optional fields, never required ones; a path, a method or a status may be
added, never removed. ``breaking_changes`` lists what breaks a consumer or a
producer; ``tests/unit/test_compatibility.py`` fails on any.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contracts.channels import CHANNELS

BASELINE = Path(__file__).resolve().parents[2] / "docs" / "contract" / "v1"
MESSAGES = "messages.json"
OPENAPI = "openapi.json"
METHODS = ("get", "put", "post", "delete", "patch", "options", "head")


def message_schemas() -> dict[str, Any]:
    """The JSON Schema of every message type of the contract, by type."""
    models = {model.__name__: model for channel in CHANNELS for model in channel.messages}
    return {name: models[name].model_json_schema() for name in sorted(models)}


def current() -> dict[str, Any]:
    from services.gateway.openapi import published_document

    return {MESSAGES: message_schemas(), OPENAPI: json.loads(published_document())}


def baseline() -> dict[str, Any]:
    return {name: json.loads((BASELINE / name).read_text()) for name in (MESSAGES, OPENAPI)}


def write_baseline(folder: Path = BASELINE) -> None:
    """Fix this release's contracts as the baseline (done once per major version)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, document in current().items():
        (folder / name).write_text(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in ``new`` breaks a client written against ``old`` (both as ``current()`` returns)."""
    problems = list(_messages(old[MESSAGES], new[MESSAGES]))
    problems += _openapi(old[OPENAPI], new[OPENAPI])
    return problems


def _messages(old: dict[str, Any], new: dict[str, Any]) -> Iterator[str]:
    for name, schema in old.items():
        if name not in new:
            yield f"message {name}: removed"
            continue
        # A message is read by some and written by others: neither may lose anything.
        yield from _schema(f"message {name}", schema, new[name], Resolver(schema), Resolver(new[name]), "both")


def _openapi(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    problems = []
    old_refs, new_refs = Resolver(old), Resolver(new)
    for path, item in old.get("paths", {}).items():
        if path not in new.get("paths", {}):
            problems.append(f"path {path}: removed")
            continue
        for method in METHODS:
            if method not in item:
                continue
            where = f"{method.upper()} {path}"
            now = new["paths"][path].get(method)
            if now is None:
                problems.append(f"{where}: removed")
                continue
            for status, response in item[method].get("responses", {}).items():
                if status not in now.get("responses", {}):
                    problems.append(f"{where}: status {status} removed")
                    continue
                before = _json_schema(response)
                after = _json_schema(now["responses"][status])
                if before is not None and after is not None:
                    problems += _schema(f"{where} {status}", before, after, old_refs, new_refs, "response")
            before = _json_schema(item[method].get("requestBody") or {})
            after = _json_schema(now.get("requestBody") or {})
            if after is not None and before is None and (now.get("requestBody") or {}).get("required"):
                problems.append(f"{where}: a required request body added")
            elif before is not None and after is not None:
                problems += _schema(f"{where} request", before, after, old_refs, new_refs, "request")
            was = {(p["in"], p["name"]) for p in item[method].get("parameters", [])}
            for parameter in now.get("parameters", []):
                if parameter.get("required") and (parameter["in"], parameter["name"]) not in was:
                    problems.append(f"{where}: required parameter {parameter['name']} added")
    return problems


def _json_schema(holder: dict[str, Any]) -> dict[str, Any] | None:
    content = holder.get("content", {}).get("application/json")
    return content.get("schema") if content else None


class Resolver:
    """``$ref`` targets within one document (OpenAPI components or JSON Schema ``$defs``)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def __call__(self, schema: Any) -> Any:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 50:
            node: Any = self.document
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema, seen = node, seen + 1
        return schema


def _types(schema: dict[str, Any], refs: Resolver) -> set[str] | None:
    """The JSON types a schema admits (None: any)."""
    schema = refs(schema)
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        return {json.dumps(value) for value in values}
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return set(kinds)
    choices = schema.get("anyOf") or schema.get("oneOf")
    if choices:
        union: set[str] = set()
        for choice in choices:
            kinds = _types(choice, refs)
            if kinds is None:
                return None
            union |= kinds
        return union
    return None


def _schema(where: str, old: Any, new: Any, old_refs: Resolver, new_refs: Resolver, role: str, depth: int = 0) -> list[str]:
    """``role``: "request" (written by clients), "response" (read by them), or "both"."""
    if depth > 20:
        return []
    old, new = old_refs(old), new_refs(new)
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    problems = []
    before, after = _types(old, old_refs), _types(new, new_refs)
    if before is not None and (after is not None and not before <= _widened(after)):
        problems.append(f"{where}: type narrowed from {sorted(before)} to {sorted(after)}")
    old_properties, new_properties = _properties(old, old_refs), _properties(new, new_refs)
    for name, schema in old_properties.items():
        if name not in new_properties:
            problems.append(f"{where}: field {name} removed or renamed")
            continue
        problems += _schema(f"{where}.{name}", schema, new_properties[name], old_refs, new_refs, role, depth + 1)
    if role in ("request", "both"):
        added = _required(new, new_refs) - _required(old, old_refs)
        problems += [f"{where}: required field {name} added" for name in sorted(added)]
    if role in ("response", "both"):
        dropped = _required(old, old_refs) - _required(new, new_refs)
        problems += [f"{where}: field {name} no longer always sent" for name in sorted(dropped)]
    if "items" in old and "items" in new:
        problems += _schema(f"{where}[]", old["items"], new["items"], old_refs, new_refs, role, depth + 1)
    old_object, new_object = _object_choice(old, old_refs), _object_choice(new, new_refs)
    if old_object is not None and new_object is not None:  # an optional object: compare the object
        problems += _schema(where, old_object, new_object, old_refs, new_refs, role, depth + 1)
    return problems


def _object_choice(schema: dict[str, Any], refs: Resolver) -> dict[str, Any] | None:
    """The object among a union's choices (``Model | None``), if there is one."""
    for choice in schema.get("anyOf") or schema.get("oneOf") or ():
        resolved = refs(choice)
        if isinstance(resolved, dict) and "properties" in resolved:
            return resolved
    return None


def _widened(kinds: set[str]) -> set[str]:
    # An integer is a number: a number field may have held only integers before.
    return kinds | ({"integer"} if "number" in kinds else set())


def _properties(schema: dict[str, Any], refs: Resolver) -> dict[str, Any]:
    properties = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        properties.update(refs(part).get("properties", {}))
    return properties


def _required(schema: dict[str, Any], refs: Resolver) -> set[str]:
    required = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        required |= set(refs(part).get("required", []))
    return required
