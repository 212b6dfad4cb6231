"""Structural OpenAPI v3 schemas of CustomResourceDefinitions: the checks a CRD's schema must pass, and what
the schema does to a custom resource (pruning, defaulting, validation), as Kubernetes' apiextensions does.

A custom resource goes through prune → default → validate (Kubernetes' order). Validation is jsonschema's
Draft 4 (OpenAPI 3.0's `exclusiveMinimum: true` form) over the schema with Kubernetes' extensions turned into
plain JSON Schema (`nullable`, `x-kubernetes-int-or-string`, `x-kubernetes-embedded-resource`); its errors
are worded as Kubernetes' kube-openapi validator words them (`spec.replicas in body must be of type integer`).
"""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any, Callable

import fastjsonschema
import orjson
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from .fields import Cause, Path, duplicate, forbidden, invalid, not_supported, required, show

PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"
EMBEDDED = "x-kubernetes-embedded-resource"
_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
# What a structural schema may say about metadata at the root (Kubernetes: name and generateName only).
_META_ALLOWED = ("name", "generateName")


# -- the CRD's schema: is it structural? -------------------------------------------------------------

def structural_errors(schema: Any, path: Path) -> list[Cause]:
    """Kubernetes' structural schema rules, the ones users meet: types everywhere (except under
    x-kubernetes-int-or-string / preserve-unknown-fields), properties xor additionalProperties,
    preserve-unknown-fields only true, metadata at the root restricted to name/generateName."""
    if not isinstance(schema, dict):
        return [invalid(path, schema, "must be an object")]
    causes: list[Cause] = []
    if schema.get("type") in (None, ""):
        causes.append(required(path.child("type"), "must not be empty at the root"))
    elif schema.get("type") != "object":
        causes.append(invalid(path.child("type"), schema["type"], 'must be object at the root'))
    causes += _node_errors(schema, path, root=True)
    meta = (schema.get("properties") or {}).get("metadata") if isinstance(schema.get("properties"), dict) else None
    if isinstance(meta, dict):
        extra = set(meta) - {"type", "properties", "description"}
        names = set(meta.get("properties") or {}) if isinstance(meta.get("properties"), dict) else set()
        if extra or names - set(_META_ALLOWED):
            causes.append(forbidden(path.child("properties").key("metadata"),
                                    "must not specify anything other than name and generateName, but metadata is "
                                    "implicitly specified"))
    return causes


def _node_errors(node: dict[str, Any], path: Path, root: bool = False, in_junctor: bool = False) -> list[Cause]:
    causes: list[Cause] = []
    t = node.get("type")
    lenient = node.get(INT_OR_STRING) or node.get(PRESERVE)
    if t is not None and t not in _TYPES:
        causes.append(not_supported(path.child("type"), t, _TYPES))
    if not root and not in_junctor and not t and not lenient:
        causes.append(required(path.child("type"), "must not be empty for specified object fields"))
    if PRESERVE in node and node[PRESERVE] is not True:
        causes.append(invalid(path.child(PRESERVE), node[PRESERVE], "must be true or undefined"))
    if node.get(INT_OR_STRING) and t:
        causes.append(invalid(path.child("type"), t, f"must be empty if {INT_OR_STRING} is true"))
    if node.get(EMBEDDED) and t != "object":
        causes.append(invalid(path.child("type"), t, f"must be object if {EMBEDDED} is true"))
    props, additional = node.get("properties"), node.get("additionalProperties")
    if props is not None and additional not in (None, False):
        causes.append(forbidden(path.child("additionalProperties"),
                                "additionalProperties and properties are mutual exclusive"))
    if isinstance(props, dict):
        for name, sub in props.items():
            causes += _sub_errors(sub, path.child("properties").key(name), in_junctor)
    if isinstance(additional, dict):
        causes += _sub_errors(additional, path.child("additionalProperties"), in_junctor)
    if "items" in node:
        causes += _sub_errors(node["items"], path.child("items"), in_junctor)
    elif t == "array":
        causes.append(required(path.child("items"), "must be specified"))
    for j in _JUNCTORS:
        subs = node.get(j)
        for i, sub in enumerate(subs if isinstance(subs, list) else [subs] if isinstance(subs, dict) else []):
            causes += _sub_errors(sub, path.child(j).index(i) if j != "not" else path.child(j), True)
    return causes


def _sub_errors(sub: Any, path: Path, in_junctor: bool) -> list[Cause]:
    if not isinstance(sub, dict):
        return [invalid(path, sub, "must be an object")]
    return _node_errors(sub, path, in_junctor=in_junctor)


# -- pruning and defaulting ----------------------------------------------------------------------------

def prune(obj: Any, schema: dict[str, Any], root: bool = True) -> None:
    """Drop fields the schema does not know (in place), and nulls where the schema does not allow them."""
    if not isinstance(obj, dict) and not isinstance(obj, list):
        return
    if schema.get(INT_OR_STRING):
        return
    if isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in obj:
                prune(item, items, root=False)
        return
    props: dict[str, Any] = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
    additional = schema.get("additionalProperties")
    keep_meta = root or schema.get(EMBEDDED)
    for key in list(obj):
        if keep_meta and key in ("apiVersion", "kind", "metadata"):
            continue
        sub = props.get(key)
        if sub is None and isinstance(additional, dict):
            sub = additional
        if sub is None:
            if not schema.get(PRESERVE) and additional is not True:
                del obj[key]
            continue
        if obj[key] is None and not sub.get("nullable"):
            del obj[key]
            continue
        prune(obj[key], sub, root=False)


def apply_defaults(obj: Any, schema: dict[str, Any]) -> None:
    """Fill in `default`s of absent fields (in place), top down, as Kubernetes' structural defaulting."""
    if isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in obj:
                apply_defaults(item, items)
        return
    if not isinstance(obj, dict):
        return
    props: dict[str, Any] = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
    for key, sub in props.items():
        if not isinstance(sub, dict):
            continue
        if key not in obj and "default" in sub:
            obj[key] = copy.deepcopy(sub["default"])
        if key in obj:
            apply_defaults(obj[key], sub)
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        for key in obj:
            if key not in props:
                apply_defaults(obj[key], additional)


# -- validation ----------------------------------------------------------------------------------------

def to_json_schema(node: Any) -> Any:
    """OpenAPI v3 (with Kubernetes' extensions) → JSON Schema Draft 4 that jsonschema checks."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in ("properties", "patternProperties"):
            out[k] = {name: to_json_schema(sub) for name, sub in v.items()} if isinstance(v, dict) else v
        elif k in ("items", "additionalProperties", "not") or k in _JUNCTORS:
            out[k] = to_json_schema(v)
        elif k in ("default", "example", "description", "format", "nullable") or k.startswith("x-kubernetes-"):
            continue  # formats are not checked; the rest says nothing about validity
        else:
            out[k] = v
    if node.get(INT_OR_STRING):
        out.pop("type", None)
        out["anyOf"] = [*out.get("anyOf", []), {"type": "integer"}, {"type": "string"}]
    if node.get(EMBEDDED):
        out["required"] = sorted({*out.get("required", []), "apiVersion", "kind"})
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string", "minLength": 1})
        props.setdefault("kind", {"type": "string", "minLength": 1})
        props.setdefault("metadata", {"type": "object"})
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def list_errors(schema: Any, value: Any, path: Path | None = None) -> list[Cause]:
    """`x-kubernetes-list-type`: a `set` holds no item twice, a `map` no two items with the same keys."""
    path = path or Path()
    if not isinstance(schema, dict) or value is None:
        return []
    causes: list[Cause] = []
    if isinstance(value, dict):
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        additional = schema.get("additionalProperties")
        for key, sub in value.items():
            sub_schema = props.get(key) if isinstance(props, dict) else None
            if sub_schema is None and isinstance(additional, dict):
                sub_schema = additional
            causes += list_errors(sub_schema, sub, path.child(key))
    elif isinstance(value, list):
        list_type, keys = schema.get("x-kubernetes-list-type"), schema.get("x-kubernetes-list-map-keys") or []
        seen: list[Any] = []
        for i, item in enumerate(value):
            ident = {k: item.get(k) for k in keys} if list_type == "map" and isinstance(item, dict) else item
            if list_type in ("set", "map") and ident in seen:
                causes.append(duplicate(path.index(i), ident))
            seen.append(ident)
            causes += list_errors(schema.get("items"), item, path.index(i))
    return causes


class Validator:
    """A CRD version's schema compiled twice: fastjsonschema answers "valid?" quickly (every write pays it),
    jsonschema then finds every error with its path (only for refused writes)."""

    def __init__(self, schema: dict[str, Any]):
        top = to_json_schema(schema)
        # The root's metadata is ObjectMeta, checked by the generic metadata rules instead.
        if isinstance(top.get("properties"), dict):
            top["properties"].pop("metadata", None)
        self.full = Draft4Validator(top)
        try:
            self.fast: Callable[[Any], Any] | None = fastjsonschema.compile(
                dict(top, **{"$schema": "http://json-schema.org/draft-04/schema#"}), detailed_exceptions=False)
        except Exception:  # a schema the compiler does not take: jsonschema alone will do
            self.fast = None

    def causes(self, obj: dict[str, Any]) -> list[Cause]:
        if self.fast is not None:
            try:
                self.fast(obj)
                return []
            except fastjsonschema.JsonSchemaException:
                pass
        return validate(self.full, obj)


@lru_cache(maxsize=256)
def _compiled(schema_json: bytes) -> Validator:
    return Validator(orjson.loads(schema_json))


def validator(schema: dict[str, Any]) -> Validator:
    """The compiled validator of a schema, shared by every strategy made for the same schema (the CRD registry
    makes new strategies whenever any CRD changes)."""
    return _compiled(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))


def _field(err: ValidationError) -> Path:
    p = Path()
    for part in err.absolute_path:
        p = p.index(part) if isinstance(part, int) else p.child(str(part))
    return p


def to_cause(err: ValidationError) -> Cause:
    path = _field(err)
    where = f"{path or 'body'} in body"
    value, rule = err.instance, err.validator_value
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else ""
        return required(path.child(missing) if missing else path)
    if err.validator == "type":
        names = rule if isinstance(rule, str) else "/".join(t for t in rule if t != "null")
        return invalid(path, value, f"{where} must be of type {names}: {show(value)}")
    if err.validator == "enum":
        return not_supported(path, value, [x if isinstance(x, str) else show(x) for x in rule])
    if err.validator == "anyOf" and all(s.get("type") in ("integer", "string") for s in rule[-2:]):
        return invalid(path, value, f"{where} must be of type integer or string: {show(value)}")
    words = {
        "maximum": lambda: f"should be less than {'' if err.schema.get('exclusiveMaximum') else 'or equal to '}{rule}",
        "minimum": lambda: f"should be greater than {'' if err.schema.get('exclusiveMinimum') else 'or equal to '}"
                           f"{rule}",
        "maxLength": lambda: f"should be at most {rule} chars long",
        "minLength": lambda: f"should be at least {rule} chars long",
        "pattern": lambda: f"should match '{rule}'",
        "maxItems": lambda: f"should have at most {rule} items",
        "minItems": lambda: f"should have at least {rule} items",
        "uniqueItems": lambda: "shouldn't contain duplicates",
        "multipleOf": lambda: f"should be a multiple of {rule}",
        "maxProperties": lambda: f"should have at most {rule} properties",
        "minProperties": lambda: f"should have at least {rule} properties",
    }
    if err.validator in words:
        detail = words[err.validator]()
        if err.validator == "maxLength":
            return {"type": "FieldValueTooLong", "field": str(path),
                    "message": f"Too long: may not be more than {rule} bytes"}
        if err.validator == "maxItems":
            return {"type": "FieldValueTooMany", "field": str(path),
                    "message": f"Too many: {len(value)}: must have at most {rule} items"}
        return invalid(path, value, f"{where} {detail}")
    return invalid(path, value, err.message)


def validate(v: Draft4Validator, obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[tuple[str, str]] = set()
    for err in sorted(v.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
        cause = to_cause(err)
        if (cause["field"], cause["type"]) not in seen:
            seen.add((cause["field"], cause["type"]))
            causes.append(cause)
    return causes
