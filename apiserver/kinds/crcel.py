"""`x-kubernetes-validations`: the CEL rules of CRD schemas, checked with cel-python as Kubernetes checks them.

Each rule is evaluated where it is declared, with `self` the value there (skipped when the value is absent);
a transition rule (one naming `oldSelf`) only on updates, with `oldSelf` the old object's value at the same
place, correlated through object properties, map keys and the keys of `x-kubernetes-list-type: map` lists.
A failed rule is a cause at that field (plus the rule's `fieldPath`) with the rule's `message`, the string its
`messageExpression` gives, or `failed rule: RULE`; its `reason` picks the cause's kind (Invalid by default).
Kubernetes' CEL libraries add functions (strings, lists, quantities, URLs, ...) that cel-python lacks: a rule
calling one is not enforced (logged once) rather than refusing every object.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from .fields import Cause, Path, forbidden, invalid, required

log = logging.getLogger("apiserver.cel")

VALIDATIONS = "x-kubernetes-validations"
MISSING = object()
_UNSUPPORTED: set[str] = set()
_VARIABLES = ("undeclared reference to 'self'", "undeclared reference to 'oldSelf'")


@lru_cache(maxsize=1)
def _env() -> Any:
    """cel-python's environment, made on first use: importing and setting it up takes over a second, which only
    API servers that meet a CEL rule should pay."""
    import celpy
    return celpy.Environment()


@lru_cache(maxsize=4096)
def _program(expression: str) -> Any:
    env = _env()
    return env.program(env.compile(expression))


def compile_error(expression: str) -> str:
    """Why `expression` does not compile ("" if it does)."""
    try:
        _program(expression)
    except Exception as e:  # celpy raises its parse errors as several types
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ""


def rule_errors(schema: Any, path: Path) -> list[Cause]:
    """Compilation errors of every rule in a CRD's schema (checked when the CRD is written)."""
    causes: list[Cause] = []
    if not isinstance(schema, dict):
        return causes
    for i, rule in enumerate(schema.get(VALIDATIONS) or []):
        p = path.child(VALIDATIONS).index(i)
        if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str) or not rule["rule"]:
            causes.append(required(p.child("rule")))
            continue
        why = compile_error(rule["rule"])
        if why:
            causes.append(invalid(p.child("rule"), rule["rule"], f"compilation failed: {why}"))
        expression = rule.get("messageExpression")
        if isinstance(expression, str) and expression and compile_error(expression):
            causes.append(invalid(p.child("messageExpression"), expression,
                                  f"compilation failed: {compile_error(expression)}"))
    for key in ("properties",):
        for name, sub in (schema.get(key) or {}).items() if isinstance(schema.get(key), dict) else ():
            causes += rule_errors(sub, path.child(key).key(name))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            causes += rule_errors(schema[key], path.child(key))
    return causes


def check(schema: dict[str, Any], value: Any, old: Any = MISSING, path: Path | None = None) -> list[Cause]:
    """The failed rules of `value` (and `old`, the stored object on an update) against `schema`."""
    path = path or Path()
    causes: list[Cause] = []
    if value is None or not isinstance(schema, dict):
        return causes
    for rule in schema.get(VALIDATIONS) or []:
        if isinstance(rule, dict) and isinstance(rule.get("rule"), str):
            cause = _evaluate(rule, schema, value, old, path)
            if cause is not None:
                causes.append(cause)
    if isinstance(value, dict):
        props: dict[str, Any] = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
        additional = schema.get("additionalProperties")
        old_map = old if isinstance(old, dict) else {}
        for key, sub in value.items():
            sub_schema = props.get(key)
            where = path.child(key)
            if sub_schema is None and isinstance(additional, dict):
                sub_schema, where = additional, path.key(key)
            if isinstance(sub_schema, dict):
                causes += check(sub_schema, sub, old_map.get(key, MISSING), where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys") if schema.get("x-kubernetes-list-type") == "map" else None
        for i, item in enumerate(value):
            causes += check(schema["items"], item, _correlated(item, old, keys), path.index(i))
    return causes


def _correlated(item: Any, old: Any, keys: Any) -> Any:
    """The old list's item with the same map keys (lists of type map), else none."""
    if not keys or not isinstance(old, list) or not isinstance(item, dict):
        return MISSING
    wanted = [item.get(k) for k in keys]
    return next((o for o in old if isinstance(o, dict) and [o.get(k) for k in keys] == wanted), MISSING)


def _evaluate(rule: dict[str, Any], schema: dict[str, Any], value: Any, old: Any, path: Path) -> Cause | None:
    expression = rule["rule"]
    transition = "oldSelf" in expression
    if transition and old is MISSING and not rule.get("optionalOldSelf"):
        return None
    import celpy
    from celpy import celtypes
    from celpy.evaluation import CELEvalError

    activation = {"self": celpy.json_to_cel(value)}
    if transition:
        activation["oldSelf"] = celpy.json_to_cel(None if old is MISSING else old)
    where = path
    for part in str(rule.get("fieldPath") or "").lstrip(".").split("."):
        if part:
            where = where.child(part)
    type_name = str(schema.get("type") or "object")
    try:
        result = _program(expression).evaluate(activation)
    except CELEvalError as e:
        text = (str(e.args[0]) if e.args else str(e)).split(" (in activation")[0]
        if text.startswith("undeclared reference to") and text not in _VARIABLES:
            if expression not in _UNSUPPORTED:
                _UNSUPPORTED.add(expression)
                log.warning("CEL rule %r uses a function pkube does not provide (%s): not enforced", expression,
                            text)
            return None
        return invalid(where, type_name, f"{text} evaluating rule: {expression}")
    except Exception as e:  # an evaluation that cel-python cannot do: never refuse on our own failure
        log.warning("CEL rule %r could not be evaluated: %s", expression, e)
        return None
    if isinstance(result, (bool, celtypes.BoolType)) and bool(result):
        return None  # anything but true (false, or a rule that is not boolean) fails
    message = _message(rule, activation) or f"failed rule: {expression}"
    reason = rule.get("reason") or "FieldValueInvalid"
    if reason == "FieldValueForbidden":
        return forbidden(where, message)
    if reason == "FieldValueRequired":
        return required(where, message)
    if reason == "FieldValueDuplicate":
        return {"type": "FieldValueDuplicate", "field": str(where), "message": f'Duplicate value: "{type_name}"'}
    return invalid(where, type_name, message)


def _message(rule: dict[str, Any], activation: dict[str, Any]) -> str:
    expression = rule.get("messageExpression")
    if isinstance(expression, str) and expression:
        try:
            text = _program(expression).evaluate(activation)
            if isinstance(text, str) and text.strip():
                return str(text)
        except Exception as e:  # Kubernetes falls back to the message when the expression fails
            log.info("messageExpression %r failed: %s", expression, e)
    message = rule.get("message")
    return str(message) if isinstance(message, str) else ""
