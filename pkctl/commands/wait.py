"""`pkctl wait (KIND NAME... | KIND/NAME... | KIND -l SEL | KIND --all | -f FILE) --for=CONDITION [--timeout D]`:
kubectl's wait. CONDITION is `condition=TYPE[=VALUE]`, `delete`, `create` or `jsonpath={PATH}[=VALUE]`.

Each object is watched (from the resourceVersion of a first list) until the condition holds, printing
`KIND/NAME condition met`; what is still unmet when the timeout passes is named in
`timed out waiting for the condition on RESOURCE/NAME` and the command fails.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from pklib.api.timefmt import parse_duration
from pklib.errors import ApiError
from pklib.resources import Resource

from .. import jsonpath
from ..connect import Connection, run
from ..discovery import learn_custom_kinds_now, learn_kinds_of
from ..errors import CommandError, api_error_line
from ..manifests import ManifestError, add_file_flags, place, read_files
from ..printers import kind_name, plural_name
from ..targets import parse_targets
from pklib.timeouts import wait_for

# A week: what kubectl waits for when --timeout is negative.
FOREVER = 7 * 24 * 3600.0
# Seconds one watch request lasts before it is renewed (the server may end it earlier).
WATCH_SECONDS = 300

Obj = dict[str, Any]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("wait", help="wait for a condition on one or many objects",
                       description="Wait until objects meet a condition: --for=condition=TYPE[=VALUE], "
                                   "--for=delete, --for=create or --for=jsonpath='{PATH}'[=VALUE].")
    p.add_argument("targets", nargs="*", metavar="KIND NAME... | KIND/NAME...")
    add_file_flags(p, required=False)
    p.add_argument("--for", dest="for_", metavar="CONDITION", help="the condition to wait for")
    p.add_argument("--timeout", default="30s",
                   help="how long to wait (a duration; 0: check once, negative: a week), default 30s")
    p.add_argument("-l", "--selector", help="the objects of KIND matching this label selector")
    p.add_argument("--all", action="store_true", help="every object of KIND in the namespace")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="with -l/--all: in every namespace")
    p.set_defaults(func=command)


@dataclass(frozen=True)
class Condition:
    """A parsed --for: `met(obj)` says whether an existing object meets it (deletion is told apart)."""
    kind: str  # condition | delete | create | jsonpath
    met: Callable[[Obj], bool]


def parse_for(text: str | None) -> Condition:
    if not text:
        raise CommandError("--for must be set to one of: condition=..., delete, create, jsonpath=...")
    if text.lower() == "delete":
        return Condition("delete", lambda obj: False)
    if text.lower() == "create":
        return Condition("create", lambda obj: True)
    head, _, rest = text.partition("=")
    if head.lower() == "condition" and rest:
        ctype, eq, value = rest.partition("=")
        return Condition("condition", lambda obj: condition_met(obj, ctype, value if eq else "true"))
    if head.lower() == "jsonpath" and rest:
        return _jsonpath_condition(rest)
    raise CommandError(f"unrecognized condition: {text!r}")


def condition_met(obj: Obj, ctype: str, value: str) -> bool:
    """status.conditions holds TYPE with status VALUE (both case-insensitive), for the object's generation."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    for cond in status.get("conditions") or []:
        if not isinstance(cond, dict) or str(cond.get("type", "")).lower() != ctype.lower():
            continue
        observed = cond.get("observedGeneration")
        if observed is not None and meta.get("generation") is not None and observed < meta["generation"]:
            return False  # about an older spec
        return str(cond.get("status", "")).lower() == value.lower()
    return False


def _jsonpath_condition(spec: str) -> Condition:
    """`{.status.phase}=Running`, `.status.phase=Running` or `{.status.ready}` (the field exists)."""
    if spec.startswith("{"):
        end = spec.find("}")
        if end < 0:
            raise CommandError(f"jsonpath wait format must be --for=jsonpath='{{.status.readyReplicas}}'=3: {spec!r}")
        path, rest = spec[1:end], spec[end + 1:]
        if rest and not rest.startswith("="):
            raise CommandError(f"jsonpath wait format must be --for=jsonpath='{{.status.readyReplicas}}'=3: {spec!r}")
        has_value, value = bool(rest), rest[1:]
    else:
        path, eq, value = spec.partition("=")
        has_value = bool(eq)
    try:
        parsed = jsonpath.parse_path(path if path[:1] in ".$@[" else "." + path)
    except jsonpath.JSONPathError as e:
        raise CommandError(f"jsonpath wait format: {e}") from None

    def met(obj: Obj) -> bool:
        found = jsonpath.evaluate(parsed, obj, obj)
        if not has_value:
            return bool(found)
        return any(not isinstance(v, (dict, list)) and jsonpath.text_of(v) == value for v in found)
    return Condition("jsonpath", met)


@dataclass
class Waited:
    res: Resource
    name: str
    namespace: str | None

    @property
    def ref(self) -> str:
        return f"{kind_name(self.res)}/{self.name}"


def command(args: argparse.Namespace) -> int:
    cond = parse_for(args.for_)
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as e:
        raise CommandError(f'invalid argument "{args.timeout}" for "--timeout" flag: {e}') from None
    if timeout < 0:
        timeout = FOREVER
    if args.filename and args.targets:
        raise CommandError("there is no need to specify a resource type as a separate argument when passing -f")
    manifests = read_files(args.filename, args.recursive, "no objects passed to wait") if args.filename else []
    targets = [] if args.filename else parse_targets(args.targets, learn=lambda: learn_custom_kinds_now(args))
    if not args.filename:
        if not targets:
            raise CommandError("You must provide one or more resources by argument or filename.")
        named = any(t.names for t in targets)
        if named and (args.selector or args.all):
            raise CommandError("name cannot be provided when a selector or --all is specified")
        if not named and not (args.selector or args.all):
            raise CommandError("resource(s) were provided, but no name was specified")

    async def go(conn: Connection) -> int:
        waited: list[Waited] = []
        if manifests:
            learn_kinds_of(conn.api, [m.obj for m in manifests])
            for m in manifests:
                try:
                    p = place(m, conn.namespace, conn.namespace_given)
                except ManifestError as e:
                    raise CommandError(str(e)) from None
                waited.append(Waited(p.res, p.name, p.namespace))
        for t in targets:
            ns = conn.namespace if t.res.namespaced else None
            if t.names:
                waited.extend(Waited(t.res, n, ns) for n in t.names)
                continue
            listed = await conn.client.list(t.res, None if args.all_namespaces else ns, label_selector=args.selector)
            for item in listed.get("items") or []:
                meta = item.get("metadata") or {}
                waited.append(Waited(t.res, meta.get("name", ""), meta.get("namespace") if t.res.namespaced else None))
        if not waited:
            if cond.kind == "delete":
                return 0
            raise CommandError("no matching resources found")
        deadline = time.monotonic() + timeout
        results = await asyncio.gather(*(wait_one(conn, w, cond, deadline) for w in waited))
        return 0 if all(results) else 1
    return run(args, go)


async def wait_one(conn: Connection, w: Waited, cond: Condition, deadline: float) -> bool:
    """Watch one object until `cond` holds (printing `condition met`) or the deadline passes (printing why not)."""
    try:
        once = deadline <= time.monotonic()  # --timeout=0: look once
        await wait_for(_until(conn, w, cond, once), None if once else deadline - time.monotonic())
    except asyncio.TimeoutError:
        print(f"error: timed out waiting for the condition on {plural_name(w.res)}/{w.name}", file=sys.stderr)
        return False
    except ApiError as e:
        print(api_error_line(e), file=sys.stderr)
        return False
    except _Gone:
        print(f'Error from server (NotFound): {plural_name(w.res)} "{w.name}" not found', file=sys.stderr)
        return False
    print(f"{w.ref} condition met")
    sys.stdout.flush()
    return True


class _Gone(Exception):
    """The object waited on for a condition does not exist."""


async def _until(conn: Connection, w: Waited, cond: Condition, once: bool) -> None:
    selector = f"metadata.name={w.name}"
    first = True
    while True:
        listed = await conn.client.list(w.res, w.namespace, field_selector=selector)
        items = listed.get("items") or []
        if _done(cond, items[0] if items else None, first):
            return
        if once:
            raise asyncio.TimeoutError()
        first = False
        rv = (listed.get("metadata") or {}).get("resourceVersion")
        try:
            async for event in conn.client.watch(w.res, w.namespace, resource_version=rv, field_selector=selector,
                                                 timeout_seconds=WATCH_SECONDS, allow_bookmarks=False):
                obj = None if event.get("type") == "DELETED" else event.get("object")
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED") and _done(cond, obj, False):
                    return
        except ApiError as e:
            if e.code != 410:  # an expired resourceVersion: list again
                raise


def _done(cond: Condition, obj: Obj | None, first: bool) -> bool:
    if cond.kind == "delete":
        return obj is None
    if obj is None:
        if first and cond.kind != "create":
            raise _Gone()
        return False
    return cond.met(obj)
