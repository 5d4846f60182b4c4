"""A small JSON Schema (2020-12) checker for the keywords prescreen's own schemas use, so exports
are validated where no third-party validator is installed. It reports every error with its path.

Keywords: $ref (local), type, enum, const, minLength, maxLength, pattern, minItems, maxItems,
uniqueItems, items, contains, required, properties, additionalProperties, anyOf, allOf, if/then.
Anything else in a schema is refused at load time rather than silently ignored.
"""

from __future__ import annotations

import json
import re
from typing import Any

KNOWN = {
    "$schema", "$id", "$defs", "$ref", "title", "description", "type", "enum", "const",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems", "items",
    "contains", "required", "properties", "additionalProperties", "anyOf", "allOf", "if", "then",
}  # fmt: skip
TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


class Checker:
    """Validates instances against one schema document."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.root = schema
        _check_keywords(schema)

    def errors(self, instance: Any) -> list[str]:
        found: list[str] = []
        self._check(self.root, instance, "$", found)
        return found

    def _check(self, schema: dict[str, Any], value: Any, path: str, out: list[str]) -> None:
        if "$ref" in schema:
            self._check(self._resolve(schema["$ref"]), value, path, out)
        expected = schema.get("type")
        if expected is not None and not _is_type(value, expected):
            out.append(f"{path}: expected {expected}")
            return
        if "enum" in schema and value not in schema["enum"]:
            out.append(f"{path}: {value!r} is not one of the allowed values")
        if "const" in schema and value != schema["const"]:
            out.append(f"{path}: must be {schema['const']!r}")
        if isinstance(value, str):
            self._string(schema, value, path, out)
        if isinstance(value, list):
            self._array(schema, value, path, out)
        if isinstance(value, dict):
            self._object(schema, value, path, out)
        if "anyOf" in schema and not any(self._ok(s, value, path) for s in schema["anyOf"]):
            out.append(f"{path}: matches none of the alternatives")
        for sub in schema.get("allOf", []):
            self._check(sub, value, path, out)
        if "if" in schema and self._ok(schema["if"], value, path) and "then" in schema:
            self._check(schema["then"], value, path, out)

    def _ok(self, schema: dict[str, Any], value: Any, path: str) -> bool:
        trial: list[str] = []
        self._check(schema, value, path, trial)
        return not trial

    def _string(self, schema: dict[str, Any], value: str, path: str, out: list[str]) -> None:
        if len(value) < schema.get("minLength", 0):
            out.append(f"{path}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: does not match {schema['pattern']}")

    def _array(self, schema: dict[str, Any], value: list, path: str, out: list[str]) -> None:
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{path}: more than {schema['maxItems']} items")
        if schema.get("uniqueItems"):
            seen = [json.dumps(v, sort_keys=True) for v in value]
            if len(set(seen)) != len(seen):
                out.append(f"{path}: items are not unique")
        if "items" in schema:
            for index, item in enumerate(value):
                self._check(schema["items"], item, f"{path}[{index}]", out)
        if "contains" in schema and not any(
            self._ok(schema["contains"], item, path) for item in value
        ):
            out.append(f"{path}: contains no matching item")

    def _object(self, schema: dict[str, Any], value: dict, path: str, out: list[str]) -> None:
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{path}: {name!r} is required")
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                self._check(properties[name], item, f"{path}.{name}", out)
            elif schema.get("additionalProperties") is False:
                out.append(f"{path}: unknown field {name!r}")

    def _resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/"):
            raise ValueError(f"only local references are supported, not {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return node


def _is_type(value: Any, expected: str) -> bool:
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected in ("object", "array", "string", "null"):
        return isinstance(value, TYPES[expected]) and not isinstance(value, bool)
    return isinstance(value, TYPES[expected])


def _check_keywords(schema: Any) -> None:
    if isinstance(schema, dict):
        for key, sub in schema.items():
            if key in ("properties", "$defs"):
                for child in sub.values():
                    _check_keywords(child)
            elif key in ("enum", "const", "required", "title", "description"):
                continue
            elif key not in KNOWN:
                raise ValueError(f"unsupported JSON Schema keyword {key!r}")
            else:
                _check_keywords(sub)
    elif isinstance(schema, list):
        for item in schema:
            _check_keywords(item)
