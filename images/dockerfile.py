"""Dockerfile parsing: lines → instructions, Docker's word/variable rules, and HEALTHCHECK's value form.

Only the syntax lives here; what each instruction does is build.py's business.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from pklib.api.timefmt import parse_duration

from images.errors import BuildError

SUPPORTED = {"FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "EXPOSE", "LABEL", "ENTRYPOINT",
             "CMD", "VOLUME", "SHELL", "STOPSIGNAL", "MAINTAINER", "HEALTHCHECK", "ONBUILD"}
_FLAGS_ALLOWED = {"FROM": {"platform"}, "COPY": {"from", "chown", "chmod", "link"},
                  "ADD": {"chown", "chmod", "link", "checksum"}, "RUN": {"mount", "network"},
                  "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"}}
_REPEATABLE = {"mount"}
_BOOLEAN = {"link"}                # may be given without a value: `COPY --link src dst`
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_.-]*)\2")
_HEREDOC_CMDS = {"RUN", "COPY", "ADD"}


@dataclass
class Heredoc:
    """`<<EOF ... EOF` (Dockerfile 1.4): a RUN's script or stdin, a COPY/ADD source file named by the word."""
    name: str
    lines: list[str]              # as written
    strip_tabs: bool              # <<-EOF: leading tabs are dropped
    quoted: bool                  # <<"EOF": no variable expansion in COPY/ADD

    @property
    def body(self) -> str:
        return "".join((line.lstrip("\t") if self.strip_tabs else line) + "\n" for line in self.lines)


@dataclass
class Instruction:
    lineno: int
    cmd: str                      # upper-case instruction name
    args: str                     # the rest of the line, continuation lines joined
    flags: dict[str, str] = field(default_factory=dict)
    mounts: list[str] = field(default_factory=list)   # RUN --mount=... values, in order (the flag repeats)
    heredocs: list[Heredoc] = field(default_factory=list)

    def title(self) -> str:
        """The instruction on one line (heredoc bodies left out), as progress shows it."""
        flags = "".join(f"--{k}={v} " for k, v in self.flags.items())
        flags += "".join(f"--mount={m} " for m in self.mounts)
        return f"{self.cmd} {flags}{self.args}".rstrip()

    def __str__(self) -> str:
        """The whole instruction, heredocs included: what the build cache and the image history record."""
        return self.title() + "".join(f"\n{h.body}{h.name}" for h in self.heredocs)

    def error(self, message: str) -> BuildError:
        return BuildError(f"Dockerfile line {self.lineno}: {self.cmd}: {message}")


def parse(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    lines = iter(enumerate(text.splitlines(), 1))
    for lineno, raw in lines:
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue  # comments and parser directives
        if pending and line.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction
        if not pending:
            start = lineno
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        inst = _instruction(start, " ".join(p.strip() for p in pending if p.strip()))
        if inst.cmd in _HEREDOC_CMDS:
            for m in HEREDOC.finditer(inst.args):
                doc = Heredoc(m.group(3), [], m.group(1) == "-", bool(m.group(2)))
                for _, body_line in lines:
                    if (body_line.lstrip("\t") if doc.strip_tabs else body_line) == doc.name:
                        break
                    doc.lines.append(body_line)
                else:
                    raise inst.error(f"the here-document <<{doc.name} is not terminated by a {doc.name} line")
                inst.heredocs.append(doc)
        out.append(inst)
        pending = []
    if pending:
        out.append(_instruction(start, " ".join(p.strip() for p in pending if p.strip())))
    if not out:
        raise BuildError("Dockerfile has no instructions")
    if out[0].cmd not in ("FROM", "ARG"):
        raise out[0].error("a Dockerfile must begin with FROM (optionally preceded by ARG)")
    return out


def _instruction(lineno: int, line: str) -> Instruction:
    word, _, rest = line.partition(" ")
    cmd = word.upper()
    if cmd not in SUPPORTED:
        raise BuildError(f"Dockerfile line {lineno}: unsupported instruction {word!r}")
    inst = Instruction(lineno, cmd, rest.strip())
    allowed = _FLAGS_ALLOWED.get(cmd, set())
    while inst.args.startswith("--"):
        flag, _, inst.args = inst.args.partition(" ")
        inst.args = inst.args.strip()
        name, eq, value = flag[2:].partition("=")
        if name in _BOOLEAN and not eq:
            value, eq = "true", "="
        if name not in allowed or not eq:
            raise BuildError(f"Dockerfile line {lineno}: {cmd}: unsupported flag {flag!r}")
        if name in _REPEATABLE:
            inst.mounts.append(value)
        else:
            inst.flags[name] = value
    if not inst.args and cmd not in ("CMD", "ENTRYPOINT"):
        raise inst.error("missing arguments")
    if cmd == "ONBUILD":
        trigger = _instruction(lineno, inst.args)
        if trigger.cmd in ("ONBUILD", "FROM", "MAINTAINER"):
            raise inst.error(f"{trigger.cmd} isn't allowed as an ONBUILD trigger")
    return inst


def trigger(onbuild: str, lineno: int) -> Instruction:
    """An ONBUILD trigger stored in a base image, parsed as the instruction it is (at the FROM's line)."""
    return _instruction(lineno, onbuild)


def json_form(args: str) -> list[str] | None:
    """The exec form `["a", "b"]`, or None for the shell form."""
    if not args.startswith("["):
        return None
    try:
        value = json.loads(args)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def words(text: str, env: Mapping[str, str], lineno: int = 0) -> list[str]:
    """Split into words with shell-like quoting, expanding $VAR/${VAR}/${VAR:-x}/${VAR:+x} in each word.

    Expansion happens inside a word, so a value containing spaces stays one word (as in Docker).
    """
    out: list[str] = []
    cur: list[str] = []
    have_word = False
    i, n = 0, len(text)
    quote: str | None = None
    while i < n:
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = None
            else:
                cur.append(c)
            i += 1
            continue
        if c == "\\" and i + 1 < n and (quote is None or text[i + 1] in '"\\$'):
            cur.append(text[i + 1])
            have_word = True
            i += 2
            continue
        if c == "$":
            value, i = _expand_at(text, i, env, lineno)
            cur.append(value)
            have_word = True
            continue
        if quote == '"':
            if c == '"':
                quote = None
            else:
                cur.append(c)
            i += 1
            continue
        if c in "'\"":
            quote = c
            have_word = True
        elif c.isspace():
            if have_word:
                out.append("".join(cur))
                cur, have_word = [], False
        else:
            cur.append(c)
            have_word = True
        i += 1
    if quote:
        raise BuildError(f"Dockerfile line {lineno}: unterminated {quote} quote in {text!r}")
    if have_word:
        out.append("".join(cur))
    return out


def expand(text: str, env: Mapping[str, str], lineno: int = 0) -> str:
    """Expand variables in a whole string (no word splitting, quotes kept)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i] == "$":
            value, i = _expand_at(text, i, env, lineno)
            out.append(value)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _expand_at(text: str, i: int, env: Mapping[str, str], lineno: int) -> tuple[str, int]:
    """Expand the variable starting at text[i] == '$'; returns (value, index after it)."""
    if i + 1 < len(text) and text[i + 1] == "{":
        end = text.find("}", i + 2)
        if end < 0:
            raise BuildError(f"Dockerfile line {lineno}: missing '}}' in {text!r}")
        body = text[i + 2:end]
        m = VAR_NAME.match(body)
        if not m:
            raise BuildError(f"Dockerfile line {lineno}: bad variable substitution ${{{body}}}")
        name, rest = m.group(0), body[m.end():]
        value = env.get(name)
        if rest.startswith(":-"):
            value = value if value else expand(rest[2:], env, lineno)
        elif rest.startswith(":+"):
            value = expand(rest[2:], env, lineno) if value else ""
        elif rest:
            raise BuildError(f"Dockerfile line {lineno}: unsupported substitution ${{{body}}}")
        return value or "", end + 1
    m = VAR_NAME.match(text, i + 1)
    if not m:
        return "$", i + 1
    return env.get(m.group(0), ""), m.end()


def key_values(inst: Instruction, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """ENV/LABEL arguments: `k=v k2="v 2"` or the legacy `ENV k v w`."""
    parts = words(inst.args, env, inst.lineno)
    if inst.cmd == "ENV" and parts and "=" not in parts[0]:
        if len(parts) < 2:
            raise inst.error("needs a value: ENV NAME=VALUE")
        key, _, value = inst.args.partition(" ")
        return [(key, " ".join(words(value.strip(), env, inst.lineno)))]
    pairs = []
    for p in parts:
        key, eq, value = p.partition("=")
        if not eq or not key:
            raise inst.error(f"expected KEY=VALUE, got {p!r}")
        pairs.append((key, value))
    return pairs


def healthcheck(inst: Instruction) -> dict[str, Any]:
    """HEALTHCHECK [--interval=D --timeout=D --start-period=D --start-interval=D --retries=N] CMD ... | NONE,
    as Docker stores it: durations in nanoseconds, fields left out when not given (zero: inherit)."""
    word, _, rest = inst.args.partition(" ")
    if word.upper() == "NONE":
        if inst.flags or rest.strip():
            raise inst.error("HEALTHCHECK NONE takes no options or arguments")
        return {"Test": ["NONE"]}
    if word.upper() != "CMD" or not rest.strip():
        raise inst.error("expected HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE")
    exec_form = json_form(rest.strip())
    out: dict[str, Any] = {"Test": ["CMD", *exec_form] if exec_form is not None else ["CMD-SHELL", rest.strip()]}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        if flag in inst.flags:
            try:
                seconds = parse_duration(inst.flags[flag])
            except ValueError as e:
                raise inst.error(f"--{flag}: {e}") from None
            if seconds != 0 and seconds < 0.001:
                raise inst.error(f"--{flag} cannot be less than 1ms")
            if seconds:
                out[key] = int(round(seconds * 1e9))
    if "retries" in inst.flags:
        retries = inst.flags["retries"]
        if not retries.isdigit():
            raise inst.error(f"--retries must be a non-negative number, not {retries!r}")
        if int(retries):
            out["Retries"] = int(retries)
    return out
