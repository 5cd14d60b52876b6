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
        # A message is read by some and written by others: neither side may lose anything.
        compare = Comparison(Resolver(schema), Resolver(new[name]))
        yield from compare(f"message {name}", schema, new[name], BOTH)


def _openapi(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    compare = Comparison(Resolver(old), Resolver(new))
    for path, item in old.get("paths", {}).items():
        if path not in new.get("paths", {}):
            problems.append(f"path {path}: removed")
            continue
        for method in METHODS:
            if method in item:
                now = new["paths"][path].get(method)
                where = f"{method.upper()} {path}"
                if now is None:
                    problems.append(f"{where}: removed")
                else:
                    problems += _operation(where, item[method], now, compare)
    return problems


def _operation(where: str, old: dict[str, Any], new: dict[str, Any], compare: Comparison) -> list[str]:
    problems = []
    for status, response in old.get("responses", {}).items():
        after = new.get("responses", {}).get(status)
        if after is None:
            problems.append(f"{where}: status {status} removed")
            continue
        for media, content in response.get("content", {}).items():
            if media not in after.get("content", {}):
                problems.append(f"{where} {status}: {media} no longer answered")
            elif "schema" in content:
                problems += compare(f"{where} {status}", content["schema"], after["content"][media].get("schema", {}),
                                    RESPONSE)
    before, now = old.get("requestBody"), new.get("requestBody")
    if now is not None and now.get("required") and not (before or {}).get("required"):
        problems.append(f"{where}: the request body became required")
    if before is not None:
        for media, content in before.get("content", {}).items():
            if now is None or media not in now.get("content", {}):
                problems.append(f"{where}: a {media} request body is no longer taken")
            elif "schema" in content:
                problems += compare(f"{where} request", content["schema"], now["content"][media].get("schema", {}),
                                    REQUEST)
    was = {(p["in"], p["name"]): p for p in old.get("parameters", [])}
    has = {(p["in"], p["name"]): p for p in new.get("parameters", [])}
    for key, parameter in has.items():
        if parameter.get("required") and not was.get(key, {}).get("required"):
            problems.append(f"{where}: parameter {key[1]} became required")
    for key, parameter in was.items():
        if key not in has:
            problems.append(f"{where}: parameter {key[1]} removed")
        else:
            problems += compare(f"{where} parameter {key[1]}", parameter.get("schema", {}),
                                has[key].get("schema", {}), REQUEST)
    if old.get("security") != new.get("security"):
        problems.append(f"{where}: security changed from {old.get('security')} to {new.get('security')}")
    return problems


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


#: Who writes what a schema describes: clients (a request must accept all it did),
#: the service (a response must send nothing it did not), or both (a message).
REQUEST, RESPONSE, BOTH = "request", "response", "both"
#: Keywords whose lower value accepts less, and whose higher value accepts less.
UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")


class Comparison:
    """Compares two schemas, each resolved in its own document."""

    def __init__(self, old_refs: Resolver, new_refs: Resolver) -> None:
        self.old_refs, self.new_refs = old_refs, new_refs

    def __call__(self, where: str, old: Any, new: Any, role: str, depth: int = 0) -> list[str]:
        old, new = self.old_refs(old), self.new_refs(new)
        if depth > 25 or not isinstance(old, dict) or not isinstance(new, dict):
            return []
        if old == new and '"$ref"' not in json.dumps(old):  # the same, and naming nothing that may differ
            return []
        old_choices, new_choices = _choices(old), _choices(new)
        if len(old_choices) > 1 or len(new_choices) > 1:
            return self._unions(where, old_choices, new_choices, role, depth)
        problems = self._value(where, old, new, role)
        problems += self._object(where, old, new, role, depth)
        for keyword in ("items", "additionalProperties"):
            if isinstance(old.get(keyword), dict) and isinstance(new.get(keyword), dict):
                problems += self(f"{where}[]" if keyword == "items" else f"{where}{{*}}", old[keyword], new[keyword],
                                 role, depth + 1)
        for index, (before, after) in enumerate(zip(old.get("prefixItems", []), new.get("prefixItems", []))):
            problems += self(f"{where}[{index}]", before, after, role, depth + 1)
        return problems

    def _unions(self, where: str, old: list[Any], new: list[Any], role: str, depth: int) -> list[str]:
        """A union keeps every choice clients may send (requests) and adds none they may receive (responses)."""
        problems = []
        if role in (REQUEST, BOTH):
            for choice in old:
                if all(self(where, choice, candidate, REQUEST, depth + 1) for candidate in new):
                    problems.append(f"{where}: {_describe(self.old_refs(choice))} no longer accepted")
        if role in (RESPONSE, BOTH):
            for choice in new:
                if all(self(where, candidate, choice, RESPONSE, depth + 1) for candidate in old):
                    problems.append(f"{where}: {_describe(self.new_refs(choice))} may now be sent")
        return problems

    def _value(self, where: str, old: dict[str, Any], new: dict[str, Any], role: str) -> list[str]:
        problems = []
        before, after = _types(old), _types(new)
        if role in (REQUEST, BOTH) and before is not None and after is not None and not before <= _widened(after):
            problems.append(f"{where}: type narrowed from {sorted(before)} to {sorted(after)}")
        if role in (RESPONSE, BOTH) and after is not None and (before is None or not after <= _widened(before)):
            if before is not None:
                problems.append(f"{where}: type widened from {sorted(before)} to {sorted(after)}")
        old_values, new_values = _values(old), _values(new)
        if role in (REQUEST, BOTH) and old_values is not None and new_values is not None and not old_values <= new_values:
            problems.append(f"{where}: values {sorted(old_values - new_values)} no longer accepted")
        if role in (RESPONSE, BOTH) and old_values is not None and (new_values is None or not new_values <= old_values):
            problems.append(f"{where}: values beyond {sorted(old_values)} may now be sent")
        if role in (REQUEST, BOTH):
            for keyword in UPPER_BOUNDS:
                if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
                    problems.append(f"{where}: {keyword} lowered to {new[keyword]}")
            for keyword in LOWER_BOUNDS:
                if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
                    problems.append(f"{where}: {keyword} raised to {new[keyword]}")
            if "pattern" in new and new["pattern"] != old.get("pattern"):
                problems.append(f"{where}: pattern changed")
            if new.get("additionalProperties") is False and old.get("additionalProperties") is not False:
                problems.append(f"{where}: other fields no longer accepted")
        return problems

    def _object(self, where: str, old: dict[str, Any], new: dict[str, Any], role: str, depth: int) -> list[str]:
        problems = []
        old_properties, new_properties = _properties(old, self.old_refs), _properties(new, self.new_refs)
        for name, schema in old_properties.items():
            if name not in new_properties:
                problems.append(f"{where}: field {name} removed or renamed")
            else:
                problems += self(f"{where}.{name}", schema, new_properties[name], role, depth + 1)
        if role in (REQUEST, BOTH):
            added = _required(new, self.new_refs) - _required(old, self.old_refs)
            problems += [f"{where}: required field {name} added" for name in sorted(added)]
        if role in (RESPONSE, BOTH):
            dropped = _required(old, self.old_refs) - _required(new, self.new_refs)
            problems += [f"{where}: field {name} no longer always sent" for name in sorted(dropped)]
        return problems


def _choices(schema: dict[str, Any]) -> list[Any]:
    """A schema's alternatives: its ``anyOf``/``oneOf`` choices, or itself; a list of
    types counts as one choice per type."""
    choices = schema.get("anyOf") or schema.get("oneOf")
    if choices:
        return list(choices)
    if isinstance(schema.get("type"), list):
        rest = {key: value for key, value in schema.items() if key != "type"}
        return [{**rest, "type": kind} for kind in schema["type"]]
    return [schema]


def _describe(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "a choice"
    return "a " + "/".join(sorted(_types(schema) or {"value"})) + " choice"


def _types(schema: dict[str, Any]) -> set[str] | None:
    """The JSON types a (union-free) schema admits; None: any."""
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        return {_json_type(value) for value in values}
    if "type" in schema:
        return set(schema["type"] if isinstance(schema["type"], list) else [schema["type"]])
    return None


def _values(schema: dict[str, Any]) -> set[str] | None:
    """The values an enum or const admits (as JSON), None when not restricted so."""
    if "const" in schema:
        return {json.dumps(schema["const"], sort_keys=True)}
    if "enum" in schema:
        return {json.dumps(value, sort_keys=True) for value in schema["enum"]}
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


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
