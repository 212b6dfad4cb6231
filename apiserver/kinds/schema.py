"""Structural validation: one JSON Schema per kind (schemas/<kind>.json), compiled once.

The schemas check structure, types and required fields; the kind modules add the
semantic rules. Unknown fields are not rejected here (Kubernetes drops or warns about
them rather than failing a request), so clients that send newer fields still work.

Two engines read the same files: `fastjsonschema` compiles each schema to Python code and
answers "valid?" in microseconds (every write pays this, so it is the hot path), and only
when that says no does `jsonschema` walk the object again to report every error with
its field path.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path as FsPath
from typing import Any, Callable

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from .fields import Cause, Path, invalid, not_supported, required

SCHEMA_DIR = FsPath(__file__).with_name("schemas")
_JSON_TYPES = {"integer": "integer", "string": "string", "boolean": "boolean", "object": "object",
               "array": "array", "number": "number", "null": "null"}


@lru_cache(maxsize=1)
def _registry() -> Registry:
    resources = []
    for f in sorted(SCHEMA_DIR.glob("*.json")):
        doc = json.loads(f.read_text())
        resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


@lru_cache(maxsize=None)
def validator(kind: str) -> Draft202012Validator | None:
    """The compiled validator of a kind, None when the kind has no schema file."""
    f = SCHEMA_DIR / f"{kind.lower()}.json"
    if not f.exists():
        return None
    schema = json.loads(f.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


@lru_cache(maxsize=None)
def _fast(kind: str, without_spec: bool = False) -> Callable[[Any], Any] | None:
    """The compiled check of a kind: the kind's schema with the shared $defs inlined; `without_spec`: all but
    its spec (neither checked nor required)."""
    f = SCHEMA_DIR / f"{kind.lower()}.json"
    if not f.exists():
        return None
    shared = json.loads((SCHEMA_DIR / "defs.json").read_text())["$defs"]
    text = f.read_text().replace('"defs.json#/$defs/', '"#/$defs/')
    schema = json.loads(text)
    schema["$defs"] = {**shared, **schema.get("$defs", {})}
    schema.pop("$id", None)
    schema.pop("$schema", None)  # the compiler's default draft (7) covers the keywords used here
    if without_spec:
        schema.get("properties", {}).pop("spec", None)
        schema["required"] = [r for r in schema.get("required", []) if r != "spec"]
    return fastjsonschema.compile(schema, detailed_exceptions=False)


def check(kind: str, obj: dict[str, Any], spec_unchanged: bool = False) -> list[Cause]:
    """Schema errors of `obj` as causes, in document order, one per field. `spec_unchanged`: obj's spec is the
    stored one, which passed this check when it was written (a status write, a label change): only the rest is
    checked, as the errors would all be elsewhere."""
    fast = _fast(kind, spec_unchanged)
    if fast is None:
        return []
    try:
        fast(obj)
        return []
    except fastjsonschema.JsonSchemaValueException:
        pass
    v = validator(kind)
    assert v is not None
    causes: list[Cause] = []
    seen: set[str] = set()
    for err in sorted(v.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
        cause = _to_cause(err)
        if cause["field"] not in seen:
            seen.add(cause["field"])
            causes.append(cause)
    return causes


def _path(err: ValidationError) -> Path:
    """The instance path, rendering map keys (reached through additionalProperties) as [key]."""
    instance = list(err.absolute_path)
    maps = [k for k in err.absolute_schema_path if k in ("properties", "additionalProperties", "items")]
    p = Path()
    for i, part in enumerate(instance):
        how = maps[i] if i < len(maps) else "properties"
        if isinstance(part, int):
            p = p.index(part)
        elif how == "additionalProperties":
            p = p.key(part)
        else:
            p = p.child(part)
    return p


def _to_cause(err: ValidationError) -> Cause:
    path = _path(err)
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else ""
        return required(path.child(missing) if missing else path)
    if err.validator == "type":
        expected = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        names = " or ".join(_JSON_TYPES.get(t, str(t)) for t in expected if t != "null")
        return invalid(path, err.instance, f"must be of type {names}")
    if err.validator == "enum":
        return not_supported(path, err.instance, [str(x) for x in err.validator_value])
    return invalid(path, err.instance, err.message)
