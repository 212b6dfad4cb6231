"""The Go text/template language as `kubectl get -o go-template=...` uses it, for JSON-like data (pure).

Covered: text and `{{ }}` actions with `{{-`/`-}}` trimming and comments; fields (`.metadata.name`, `$x.a`),
variables (`$`, `$x := ...`, `$i, $e := range ...`), string/number/bool/nil literals, parenthesised pipelines,
pipes (`.x | printf "%s"`); `if`/`else if`/`else`, `range` (lists and maps, with `else`), `with`, `end`;
the built-in functions `and or not len index print printf println eq ne lt le gt ge` and kubectl's
`base64decode` and `exists`. Values print as Go prints them (`map[a:1]`, `[x y]`, `<no value>`).
Not covered: `define`/`template`/`block`, `break`/`continue`, methods.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["TemplateError", "parse", "render"]


class TemplateError(Exception):
    """A template that does not parse or cannot run; `partial` holds what it printed before failing."""

    partial = ""


class _NoValue:
    """A missing map key: prints as `<no value>`, is false."""

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()


# --- lexing ----------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)')
  | (?P<declare>:=)
  | (?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<field>(?:\$[A-Za-z0-9_]*)?(?:\.[A-Za-z0-9_]+)+|\.)
  | (?P<variable>\$[A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[()|,=])
""", re.VERBOSE)


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int = 0


def _tokens(action: str) -> list[_Tok]:
    out, at = [], 0
    while at < len(action):
        m = _TOKEN.match(action, at)
        if m is None:
            raise TemplateError(f"unexpected {action[at]!r} in command")
        at = m.end()
        if m.lastgroup != "space":
            out.append(_Tok(str(m.lastgroup), m.group(), m.start()))
    return out


def _segments(template: str) -> list[tuple[bool, str]]:
    """(is_action, text) pieces, with `{{- ` and ` -}}` trimming the spaces next to them."""
    out: list[tuple[bool, str]] = []
    at = 0
    while True:
        start = template.find("{{", at)
        if start < 0:
            out.append((False, template[at:]))
            return out
        text = template[at:start]
        inner_start = start + 2
        if template.startswith("- ", inner_start) or template.startswith("-\t", inner_start) \
                or template.startswith("-\n", inner_start):
            text = text.rstrip()
            inner_start += 1
        end = template.find("}}", inner_start)
        if end < 0:
            raise TemplateError("unclosed action")
        inner, after = template[inner_start:end], end + 2
        if inner.endswith((" -", "\t-", "\n-")):
            inner = inner[:-1]
            rest = template[after:]
            after += len(rest) - len(rest.lstrip())
        out.append((False, text))
        out.append((True, inner.strip()))
        at = after


# --- parsing ---------------------------------------------------------------------------------------------------

@dataclass
class _Pipeline:
    decl: list[str]
    commands: list[list[Any]]  # each: operands (_Tok or _Pipeline, with trailing field chains)


@dataclass
class _Chained:
    """`(pipeline).field.path`."""
    pipe: _Pipeline
    names: list[str]


@dataclass
class _Node:
    kind: str  # text | action | if | range | with
    text: str = ""
    pipe: _Pipeline | None = None
    body: list["_Node"] = field(default_factory=list)
    otherwise: list["_Node"] = field(default_factory=list)


class _Parser:
    def __init__(self, template: str):
        self.pieces = _segments(template)
        self.at = 0

    def parse(self) -> list[_Node]:
        nodes, end = self.nodes()
        if end is not None:
            raise TemplateError(f"unexpected {{{{{end}}}}}")
        return nodes

    def nodes(self) -> tuple[list[_Node], str | None]:
        """Nodes up to an `end` or `else...` (returned) or the end of the template (None)."""
        out: list[_Node] = []
        while self.at < len(self.pieces):
            is_action, text = self.pieces[self.at]
            self.at += 1
            if not is_action:
                if text:
                    out.append(_Node("text", text))
                continue
            if text.startswith("/*"):
                continue  # a comment
            word = text.split(None, 1)[0] if text else ""
            if word in ("end", "else"):
                return out, text
            if word in ("if", "range", "with"):
                out.append(self.block(word, text[len(word):]))
            elif word in ("define", "template", "block", "break", "continue"):
                raise TemplateError(f"{{{{{word}}}}} is not supported by pkctl's go-template")
            else:
                out.append(_Node("action", pipe=_pipeline(_tokens(text))))
        return out, None

    def block(self, kind: str, rest: str) -> _Node:
        node = _Node(kind, pipe=_pipeline(_tokens(rest)))
        node.body, end = self.nodes()
        if end is None:
            raise TemplateError(f"unexpected EOF: {{{{{kind}}}}} has no {{{{end}}}}")
        if end != "end":
            tail = end[len("else"):].strip()
            if tail.startswith("if ") and kind == "if":  # else if: a nested if that shares our end
                node.otherwise = [self.block("if", tail[2:])]
                return node
            node.otherwise, end = self.nodes()
            if end != "end":
                raise TemplateError(f"expected {{{{end}}}} in {{{{{kind}}}}}")
        return node


def _pipeline(toks: list[_Tok]) -> _Pipeline:
    decl: list[str] = []
    if toks and toks[0].kind == "variable":
        names = [toks[0].text]
        i = 1
        if len(toks) > 3 and toks[1].text == "," and toks[2].kind == "variable":
            names.append(toks[2].text)
            i = 3
        if i < len(toks) and (toks[i].kind == "declare" or toks[i].text == "="):
            decl, toks = names, toks[i + 1:]
    commands: list[list[Any]] = [[]]
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.text == "(":
            depth, j = 1, i + 1
            while j < len(toks) and depth:
                depth += {"(": 1, ")": -1}.get(toks[j].text, 0)
                j += 1
            if depth:
                raise TemplateError("unclosed left paren")
            inner = _pipeline(toks[i + 1:j - 1])
            after = toks[j] if j < len(toks) else None
            if after is not None and after.kind == "field" and after.text.startswith(".") and \
                    after.pos == toks[j - 1].pos + 1:
                commands[-1].append(_Chained(inner, [n for n in after.text.split(".") if n]))
                j += 1
            else:
                commands[-1].append(inner)
            i = j
            continue
        if t.text == ")":
            raise TemplateError("unexpected right paren")
        if t.text == "|":
            commands.append([])
        else:
            commands[-1].append(t)
        i += 1
    if any(not c for c in commands):
        raise TemplateError("missing value for command")
    return _Pipeline(decl, commands)


def parse(template: str) -> list[_Node]:
    """The parsed template; TemplateError names what is wrong."""
    return _Parser(template).parse()


# --- evaluation ------------------------------------------------------------------------------------------------

def _truth(v: Any) -> bool:
    """Go's: false, 0, nil, an empty string, list or map are false."""
    if v is None or v is NO_VALUE:
        return False
    if isinstance(v, (bool, int, float, str, list, dict)):
        return bool(v)
    return True


def go_str(v: Any) -> str:
    """A value as Go's fmt prints it (%v)."""
    if v is None:
        return "<nil>"
    if v is NO_VALUE:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else repr(v)
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_str(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    return str(v)


def _printf(fmt: str, *args: Any) -> str:
    out, i, n = [], 0, 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        m = re.match(r"%([-+# 0]*)(\d*)(?:\.(\d+))?([a-zA-Z%])", fmt[i:])
        if not m:
            out.append(c)
            i += 1
            continue
        flags, width, prec, verb = m.groups()
        i += m.end()
        if verb == "%":
            out.append("%")
            continue
        if n >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg, n = args[n], n + 1
        if verb == "q":
            text = json.dumps(go_str(arg) if not isinstance(arg, str) else arg, ensure_ascii=False)
        elif verb in "dfegx" and isinstance(arg, (int, float)) and not isinstance(arg, bool):
            text = ("%" + flags.replace("#", "") + width + (f".{prec}" if prec else "") + verb) % arg
            width = ""  # already applied
        else:
            text = go_str(arg)
            if prec and verb == "s":
                text = text[:int(prec)]
        if width:
            text = text.ljust(int(width)) if "-" in flags else text.rjust(int(width), "0" if "0" in flags else " ")
        out.append(text)
    return "".join(out)


def _print(*args: Any) -> str:
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_str(a))
    return "".join(out)


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k, NO_VALUE) if isinstance(k, str) else NO_VALUE
        elif isinstance(v, list) and isinstance(k, int) and not isinstance(k, bool):
            if not 0 <= k < len(v):
                raise TemplateError(f"error calling index: index out of range: {k}")
            v = v[k]
        elif v is None or v is NO_VALUE:
            raise TemplateError("error calling index: index of untyped nil")
        else:
            raise TemplateError(f"error calling index: cannot index {go_str(v)} with {go_str(k)}")
    return v


def _compare(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, b: Any) -> bool:
        if isinstance(a, (int, float)) != isinstance(b, (int, float)) or isinstance(a, bool) != isinstance(b, bool):
            raise TemplateError(f"error calling comparison: incompatible types {go_str(a)} and {go_str(b)}")
        return op(a, b)
    return compare


def _eq(a: Any, *others: Any) -> bool:
    return any(_compare(lambda x, y: bool(x == y))(a, b) for b in others)


def _base64decode(text: Any) -> str:
    if not isinstance(text, str):
        raise TemplateError("error calling base64decode: invalid value; expected string")
    try:
        return base64.b64decode(str(text), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError) as e:
        raise TemplateError(f"base64decode: {e}") from None


def _exists(v: Any, *keys: Any) -> bool:
    try:
        return _index(v, *keys) is not NO_VALUE
    except TemplateError:
        return False


def _len(v: Any) -> int:
    if isinstance(v, (str, list, dict)):
        return len(v)
    raise TemplateError(f"error calling len: len of type {type(v).__name__}")


FUNCS: dict[str, Callable[..., Any]] = {
    "index": _index, "len": _len, "printf": _printf, "print": _print, "println": lambda *a: _print(*a) + "\n",
    "eq": _eq, "ne": lambda a, b: not _eq(a, b), "lt": _compare(lambda a, b: bool(a < b)),
    "le": _compare(lambda a, b: bool(a <= b)), "gt": _compare(lambda a, b: bool(a > b)),
    "ge": _compare(lambda a, b: bool(a >= b)), "not": lambda a: not _truth(a),
    "base64decode": _base64decode, "exists": _exists,
}


class _Eval:
    def __init__(self, root: Any):
        self.vars: list[dict[str, Any]] = [{"$": root}]

    def var(self, name: str) -> Any:
        for scope in reversed(self.vars):
            if name in scope:
                return scope[name]
        raise TemplateError(f'undefined variable "{name}"')

    def set_var(self, name: str, value: Any) -> None:
        self.vars[-1][name] = value

    def fields(self, v: Any, names: list[str]) -> Any:
        for name in names:
            if isinstance(v, dict):
                v = v.get(name, NO_VALUE)
            elif v is None or v is NO_VALUE:
                v = NO_VALUE  # Go: a field of a missing value is missing too
            else:
                raise TemplateError(f"can't evaluate field {name} in type {type(v).__name__}")
        return v

    def operand(self, op: Any, dot: Any) -> Any:
        if isinstance(op, _Pipeline):
            return self.pipeline(op, dot)
        if isinstance(op, _Chained):
            return self.fields(self.pipeline(op.pipe, dot), op.names)
        t: _Tok = op
        if t.kind == "field":
            head, *names = t.text.split(".")
            base = self.var(head) if head else dot
            return self.fields(base, [n for n in names if n])
        if t.kind == "variable":
            return self.var(t.text)
        if t.kind == "string":
            return json.loads(t.text)
        if t.kind == "raw":
            return t.text[1:-1]
        if t.kind == "char":
            return ord(json.loads('"' + t.text[1:-1] + '"'))
        if t.kind == "number":
            return float(t.text) if any(c in t.text for c in ".eE") else int(t.text)
        if t.kind == "ident":
            if t.text in ("true", "false"):
                return t.text == "true"
            if t.text == "nil":
                return None
            if t.text in FUNCS:
                return FUNCS[t.text]()
            raise TemplateError(f'function "{t.text}" not defined')
        raise TemplateError(f"unexpected {t.text!r} in operand")

    def command(self, cmd: list[Any], dot: Any, piped: tuple[Any, ...]) -> Any:
        first = cmd[0]
        if isinstance(first, _Tok) and first.kind == "ident" and first.text in ("and", "or"):
            v: Any = None
            for o in [*cmd[1:], *piped]:  # evaluated only as far as needed, as Go does
                v = o if len(piped) and o is piped[0] else self.operand(o, dot)
                if _truth(v) != (first.text == "and"):
                    return v
            return v
        if isinstance(first, _Tok) and first.kind == "ident" and first.text in FUNCS:
            args = [self.operand(o, dot) for o in cmd[1:]] + list(piped)
            try:
                return FUNCS[first.text](*args)
            except TypeError:
                raise TemplateError(f"wrong number of args for {first.text}") from None
        if isinstance(first, _Tok) and first.kind == "ident" and first.text not in ("true", "false", "nil"):
            raise TemplateError(f'function "{first.text}" not defined')
        if len(cmd) > 1 or piped:
            raise TemplateError(f"can't give argument to non-function {getattr(first, 'text', '(...)')}")
        return self.operand(first, dot)

    def pipeline(self, pipe: _Pipeline, dot: Any) -> Any:
        value: Any = None
        for i, cmd in enumerate(pipe.commands):
            value = self.command(cmd, dot, (value,) if i else ())
        for name in pipe.decl[:1]:
            self.set_var(name, value)
        return value

    def run(self, nodes: list[_Node], dot: Any, out: list[str]) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
                continue
            assert node.pipe is not None
            if node.kind == "action":
                value = self.pipeline(node.pipe, dot)
                if not node.pipe.decl:
                    out.append(go_str(value))
            elif node.kind in ("if", "with"):
                self.vars.append({})
                value = self.pipeline(node.pipe, dot)
                if _truth(value):
                    self.run(node.body, value if node.kind == "with" else dot, out)
                else:
                    self.run(node.otherwise, dot, out)
                self.vars.pop()
            else:
                self.range(node, dot, out)

    def range(self, node: _Node, dot: Any, out: list[str]) -> None:
        assert node.pipe is not None
        decl = node.pipe.decl
        collection = self.pipeline(_Pipeline([], node.pipe.commands), dot)
        if isinstance(collection, dict):
            pairs: list[tuple[Any, Any]] = [(k, collection[k]) for k in sorted(collection)]
        elif isinstance(collection, list):
            pairs = list(enumerate(collection))
        elif collection is None or collection is NO_VALUE:
            pairs = []
        else:
            raise TemplateError(f"range can't iterate over {go_str(collection)}")
        if not pairs:
            self.run(node.otherwise, dot, out)
            return
        for key, item in pairs:
            self.vars.append({})
            if len(decl) == 2:
                self.set_var(decl[0], key)
                self.set_var(decl[1], item)
            elif decl:
                self.set_var(decl[0], item)
            self.run(node.body, item, out)
            self.vars.pop()


def render(nodes: list[_Node], data: Any) -> str:
    out: list[str] = []
    try:
        _Eval(data).run(nodes, data, out)
    except TemplateError as e:
        e.partial = "".join(out)
        raise
    return "".join(out)
