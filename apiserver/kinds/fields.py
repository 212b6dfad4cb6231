"""Field errors ("causes") worded as Kubernetes' field.ErrorList words them.

A cause is `{"type": ..., "field": "spec.containers[0].image", "message": ...}`; the
handlers turn `type` into the Status cause's `reason`. Messages carry the value the
way Go's field errors print it (`Invalid value: "abc": ...`, `Invalid value: 0: ...`).
"""
from __future__ import annotations

import json

from pklib import validation
from typing import Any, Iterable

Cause = dict[str, str]


class Path:
    """A field path that renders as Kubernetes renders it: `spec.containers[0].resources.limits[cpu]`."""

    __slots__ = ("_text",)

    def __init__(self, text: str = ""):
        self._text = text

    def child(self, name: str) -> "Path":
        return Path(f"{self._text}.{name}" if self._text else name)

    def index(self, i: int) -> "Path":
        return Path(f"{self._text}[{i}]")

    def key(self, k: str) -> "Path":
        return Path(f"{self._text}[{k}]")

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Path({self._text!r})"


def show(value: Any) -> str:
    """A value as Go's field errors print it: strings quoted, numbers bare, the rest as JSON."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _cause(type_: str, path: Path | str, message: str) -> Cause:
    return {"type": type_, "field": str(path), "message": message}


def required(path: Path | str, detail: str = "") -> Cause:
    return _cause("FieldValueRequired", path, "Required value" + (f": {detail}" if detail else ""))


def invalid(path: Path | str, value: Any, detail: str) -> Cause:
    return _cause("FieldValueInvalid", path, f"Invalid value: {show(value)}: {detail}")


def duplicate(path: Path | str, value: Any) -> Cause:
    return _cause("FieldValueDuplicate", path, f"Duplicate value: {show(value)}")


def not_supported(path: Path | str, value: Any, supported: Iterable[str]) -> Cause:
    values = ", ".join(show(s) for s in supported)
    return _cause("FieldValueNotSupported", path, f"Unsupported value: {show(value)}: supported values: {values}")


def not_found(path: Path | str, value: Any) -> Cause:
    return _cause("FieldValueNotFound", path, f"Not found: {show(value)}")


def forbidden(path: Path | str, detail: str) -> Cause:
    return _cause("FieldValueForbidden", path, f"Forbidden: {detail}")


def too_long(path: Path | str, limit: int) -> Cause:
    return _cause("FieldValueTooLong", path, f"Too long: must have at most {limit} bytes")


def immutable(path: Path | str, value: Any) -> Cause:
    return invalid(path, value, "field is immutable")


def non_negative(path: Path, value: Any) -> list[Cause]:
    """Kubernetes' ValidateNonnegativeField for optional integers (the schema checked the type)."""
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


def positive(path: Path, value: Any) -> list[Cause]:
    if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
        return [invalid(path, value, "must be greater than 0")]
    return []


def one_of(path: Path, value: Any, supported: tuple[str, ...]) -> list[Cause]:
    """An optional enum field: absent is fine, anything else must be one of `supported`."""
    if value is None or value in supported:
        return []
    return [not_supported(path, value, supported)]


def port_name(path: Path, name: str, seen: set[str], needed: bool) -> list[Cause]:
    """A port's `name` (Services, Endpoints): required when `needed` (several ports), a DNS label, and unique
    among the names `seen` so far, which it joins."""
    if not name:
        return [required(path)] if needed else []
    causes = [invalid(path, name, e) for e in validation.is_dns1123_label(name)]
    if name in seen:
        causes.append(duplicate(path, name))
    seen.add(name)
    return causes
