"""Label and field selectors: parse the query-string syntax once, match objects many times.

Label selector syntax (as Kubernetes): comma-separated requirements
`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (does not exist).
Field selectors: `path=v`, `path==v`, `path!=v` over dotted field paths.
Both raise `SelectorError` with a readable message on bad syntax.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                  r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # != and notin also match objects without the label, as in Kubernetes.
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            if r.op == "exists":
                parts.append(r.key)
            elif r.op == "!":
                parts.append("!" + r.key)
            elif r.op in ("in", "notin"):
                parts.append(f"{r.key} {r.op} ({','.join(sorted(r.values))})")
            else:
                parts.append(f"{r.key}{r.op}{next(iter(r.values))}")
        return ",".join(parts)


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parenthesis in {text!r}")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise SelectorError(f"unbalanced parenthesis in {text!r}")
    parts.append(cur)
    return parts


def _check_key(key: str, text: str) -> str:
    if not _KEY.match(key) or len(key.split("/")[-1]) > 63:
        raise SelectorError(f"invalid label key {key!r} in selector {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if not _VALUE.match(value) or len(value) > 63:
        raise SelectorError(f"invalid label value {value!r} in selector {text!r}")
    return value


_SET = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")


def parse_label_selector(text: str | None) -> LabelSelector:
    if text is None or not text.strip():
        return LabelSelector()
    reqs: list[Requirement] = []
    for part in _split_top(text):
        part = part.strip()
        if not part:
            raise SelectorError(f"empty requirement in selector {text!r}")
        m = _SET.match(part)
        if m:
            values = frozenset(_check_value(v.strip(), text) for v in m.group(3).split(","))
            reqs.append(Requirement(_check_key(m.group(1), text), m.group(2), values))
            continue
        for op in ("!=", "==", "="):
            if op in part:
                key, value = (s.strip() for s in part.split(op, 1))
                reqs.append(Requirement(_check_key(key, text), "!=" if op == "!=" else "=",
                                        frozenset([_check_value(value, text)])))
                break
        else:
            if part.startswith("!"):
                reqs.append(Requirement(_check_key(part[1:].strip(), text), "!"))
            elif " " in part:
                raise SelectorError(f"unable to parse requirement {part!r} in selector {text!r}")
            else:
                reqs.append(Requirement(_check_key(part, text), "exists"))
    return LabelSelector(tuple(reqs))


def selector_from_match(selector: Mapping[str, Any] | None) -> LabelSelector:
    """A metav1.LabelSelector ({matchLabels, matchExpressions}) as a LabelSelector."""
    if not selector:
        return LabelSelector()
    reqs = [Requirement(k, "=", frozenset([str(v)])) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(expr.get("operator", ""))
        if op is None:
            raise SelectorError(f"unknown selector operator {expr.get('operator')!r}")
        reqs.append(Requirement(expr["key"], op, frozenset(str(v) for v in expr.get("values") or [])))
    return LabelSelector(tuple(reqs))


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    value: str
    negate: bool


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all((fields.get(r.field, "") == r.value) != r.negate for r in self.requirements)

    def fields(self) -> set[str]:
        return {r.field for r in self.requirements}

    def value_of(self, field: str) -> str | None:
        """The value an `=` requirement pins `field` to, if any (lets lists narrow by namespace)."""
        for r in self.requirements:
            if r.field == field and not r.negate:
                return r.value
        return None


def parse_field_selector(text: str | None) -> FieldSelector:
    if text is None or not text.strip():
        return FieldSelector()
    reqs = []
    for part in text.split(","):
        part = part.strip()
        for op in ("!=", "==", "="):
            if op in part:
                field, value = (s.strip() for s in part.split(op, 1))
                if not field:
                    raise SelectorError(f"invalid field selector {text!r}: empty field name")
                reqs.append(FieldRequirement(field, value, op == "!="))
                break
        else:
            raise SelectorError(f"invalid field selector {text!r}: {part!r} is not field=value")
    return FieldSelector(tuple(reqs))


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field path (missing → ""), as field selectors compare it."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)
