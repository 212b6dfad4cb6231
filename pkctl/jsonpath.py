"""kubectl's JSONPath templates (`-o jsonpath=...`, `-o custom-columns=...`), the commonly used subset.

Template: text with `{actions}`; an action is a path (`.metadata.name`, `$.items[*].spec`, `@.x`),
a string literal (`{"\\n"}`), or `{range PATH}...{end}` repeating its body for each value. Paths:
`.field`, `['field.with.dots']`, `..field` (anywhere below), `[*]`/`.*`, `[n]`, `[a:b]`, `[n,m]`,
and filters `[?(@.type=="Ready")]` with == != < > <= >= or bare existence `[?(@.x)]`.
Missing fields give nothing, as `kubectl get` does (--allow-missing-template-keys defaults to true).
"""
from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Union


class JSONPathError(Exception):
    pass


@dataclass
class _Text:
    text: str


@dataclass
class _Path:
    steps: list[tuple[str, Any]]
    absolute: bool  # `$...` starts at the root, the rest at the current node (the range item)


@dataclass
class _Range:
    path: _Path
    body: list["_Node"] = field(default_factory=list)


_Node = Union[_Text, _Path, _Range]
_FILTER = re.compile(r"^\s*(@[^=!<>]*?)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*$")


def _split_actions(template: str) -> list[tuple[bool, str]]:
    """(is_action, text) pieces; braces inside quoted strings do not end an action."""
    out: list[tuple[bool, str]] = []
    i, text = 0, ""
    while i < len(template):
        ch = template[i]
        if ch != "{":
            text += ch
            i += 1
            continue
        if text:
            out.append((False, text))
            text = ""
        j, quote = i + 1, ""
        while j < len(template) and (quote or template[j] != "}"):
            if quote and template[j] == "\\":
                j += 1
            elif template[j] in "\"'" and (not quote or quote == template[j]):
                quote = "" if quote else template[j]
            j += 1
        if j >= len(template):
            raise JSONPathError(f"unclosed action in {template!r}")
        out.append((True, template[i + 1:j].strip()))
        i = j + 1
    if text:
        out.append((False, text))
    return out


def parse(template: str) -> list[_Node]:
    root: list[_Node] = []
    stack: list[list[_Node]] = [root]
    for is_action, text in _split_actions(template):
        if not is_action:
            stack[-1].append(_Text(text))
        elif text == "end":
            if len(stack) == 1:
                raise JSONPathError("not in range, nothing to end")
            stack.pop()
        elif text.startswith("range "):
            node = _Range(parse_path(text[len("range "):].strip()))
            stack[-1].append(node)
            stack.append(node.body)
        elif text[:1] in "\"'":
            stack[-1].append(_Text(_unquote(text)))
        else:
            stack[-1].append(parse_path(text))
    if len(stack) != 1:
        raise JSONPathError("unclosed range")
    return root


def _unquote(text: str) -> str:
    if len(text) < 2 or text[-1] != text[0]:
        raise JSONPathError(f"unterminated string {text}")
    return text[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")


def parse_path(text: str) -> _Path:
    absolute = text.startswith("$")
    s = text[1:] if text[:1] in "$@" else text
    steps: list[tuple[str, Any]] = []
    i = 0
    while i < len(s):
        if s.startswith("..", i):
            m = re.match(r"[^.\[\]]+", s[i + 2:])
            if not m:
                raise JSONPathError(f"expected a field name after .. in {text!r}")
            steps.append(("recurse", m.group()))
            i += 2 + m.end()
        elif s[i] == ".":
            m = re.match(r"[^.\[\]]*", s[i + 1:])
            name = m.group() if m else ""
            if name == "*":
                steps.append(("all", None))
            elif name:
                steps.append(("field", name))
            i += 1 + len(name)
        elif s[i] == "[":
            end = _closing_bracket(s, i, text)
            steps.append(_bracket(s[i + 1:end].strip(), text))
            i = end + 1
        else:
            raise JSONPathError(f"unrecognized character {s[i]!r} in {text!r}")
    return _Path(steps, absolute)


def _closing_bracket(s: str, start: int, text: str) -> int:
    depth, quote = 0, ""
    for j in range(start, len(s)):
        ch = s[j]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return j
    raise JSONPathError(f"unclosed [ in {text!r}")


def _bracket(inner: str, text: str) -> tuple[str, Any]:
    if inner == "*":
        return ("all", None)
    if inner.startswith("?(") and inner.endswith(")"):
        m = _FILTER.match(inner[2:-1])
        if not m:
            raise JSONPathError(f"bad filter {inner!r} in {text!r}")
        left, op, right = m.groups()
        return ("filter", (parse_path(left), op, _operand(right) if op else None))
    if inner[:1] in "\"'":
        return ("field", _unquote(inner))
    if ":" in inner:
        try:
            parts = [int(p) if p.strip() else None for p in inner.split(":")]
        except ValueError:
            raise JSONPathError(f"bad slice [{inner}] in {text!r}") from None
        return ("slice", slice(*parts))
    try:
        return ("indexes", [int(p) for p in inner.split(",")])
    except ValueError:
        return ("fields", [_unquote(p.strip()) if p.strip()[:1] in "\"'" else p.strip() for p in inner.split(",")])


def _operand(text: str) -> Any:
    if text[:1] in "\"'":
        return _unquote(text)
    if text.startswith("@") or text.startswith("$"):
        return parse_path(text)
    if text in ("true", "false"):
        return text == "true"
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        raise JSONPathError(f"bad value {text!r} in filter") from None


def evaluate(path: _Path, root: Any, current: Any) -> list[Any]:
    values = [root if path.absolute else current]
    for kind, arg in path.steps:
        values = [v for value in values for v in _step(kind, arg, value, root)]
    return values


def _step(kind: str, arg: Any, value: Any, root: Any) -> list[Any]:
    if kind == "field":
        return [value[arg]] if isinstance(value, dict) and arg in value else []
    if kind == "fields":
        return [value[k] for k in arg if isinstance(value, dict) and k in value]
    if kind == "all":
        return list(value.values()) if isinstance(value, dict) else list(value) if isinstance(value, list) else []
    if kind == "indexes":
        return [value[i] for i in arg if isinstance(value, list) and -len(value) <= i < len(value)]
    if kind == "slice":
        return list(value[arg]) if isinstance(value, list) else []
    if kind == "recurse":
        return _recurse(value, arg)
    path, op, right = arg
    items = value if isinstance(value, list) else [value]
    return [item for item in items if _matches(item, path, op, right, root)]


def _recurse(value: Any, name: str) -> list[Any]:
    found: list[Any] = []
    if isinstance(value, dict):
        if name in value:
            found.append(value[name])
        for v in value.values():
            found.extend(_recurse(v, name))
    elif isinstance(value, list):
        for v in value:
            found.extend(_recurse(v, name))
    return found


def _matches(item: Any, path: _Path, op: str | None, right: Any, root: Any) -> bool:
    lefts = evaluate(path, root, item)
    if op is None:
        return bool(lefts)
    rights = evaluate(right, root, item) if isinstance(right, _Path) else [right]
    compare = _OPERATORS[op]
    for a in lefts:
        for b in rights:
            try:
                if compare(a, b):
                    return True
            except TypeError:  # e.g. a string against a number: not a match
                continue
    return False


_OPERATORS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt, "<=": operator.le,
              ">=": operator.ge}


def text_of(value: Any) -> str:
    """How kubectl prints one result: strings as they are, maps and lists as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def render(nodes: list[_Node], root: Any, current: Any | None = None) -> str:
    current = root if current is None else current
    out: list[str] = []
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Path):
            out.append(" ".join(text_of(v) for v in evaluate(node, root, current)))
        else:
            for item in evaluate(node.path, root, current):
                out.append(render(node.body, root, item))
    return "".join(out)


def parse_columns(spec: str) -> list[tuple[str, _Path]]:
    """`NAME:.metadata.name,IMAGE:.spec.containers[*].image` -> [(header, path)] (`{...}` around paths allowed)."""
    columns = []
    for part in spec.split(","):
        header, sep, path = part.partition(":")
        if not sep or not header or not path.strip():
            raise JSONPathError(f'expected HEADER:PATH, got "{part}"')
        path = path.strip()
        if path.startswith("{") and path.endswith("}"):
            path = path[1:-1]
        columns.append((header, parse_path(path if path[:1] in ".$@[" else "." + path)))
    return columns


def column_cells(columns: list[tuple[str, _Path]], obj: Any) -> list[str]:
    return [",".join(text_of(v) for v in evaluate(path, obj, obj)) or "<none>" for _, path in columns]


def sort_key(path: _Path, obj: Any) -> tuple[int, Any]:
    """Order of --sort-by: objects missing the field first, then numbers by value, then the rest as text."""
    values = evaluate(path, obj, obj)
    if not values:
        return (0, "")
    v = values[0]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (1, v)
    return (2, text_of(v))
