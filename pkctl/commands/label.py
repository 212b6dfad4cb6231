"""`pkctl label|annotate KIND NAME... | KIND/NAME... KEY=VALUE... KEY-... [--overwrite] [-l SEL | --all]
[--list] [--resource-version RV]`: kubectl's label and annotate, as one merge patch of the object's metadata."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from pklib import validation as v
from pklib.errors import ApiError

from ..connect import Connection, call
from ..discovery import learn_custom_kinds_now
from ..errors import CommandError, api_error_line
from ..printers import kind_name
from ..targets import parse_targets


@dataclass(frozen=True)
class Verb:
    name: str  # label | annotate
    field: str  # metadata.labels | metadata.annotations
    done: str  # labeled | annotated
    noun: str  # label | annotation


LABEL = Verb("label", "labels", "labeled", "label")
ANNOTATE = Verb("annotate", "annotations", "annotated", "annotation")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for verb, help_text in ((LABEL, "update the labels on a resource"),
                            (ANNOTATE, "update the annotations on a resource")):
        p = sub.add_parser(verb.name, help=help_text, description=f"{help_text[0].upper()}{help_text[1:]}: "
                           f"KEY=VALUE sets a {verb.noun}, KEY- removes it.")
        p.add_argument("args", nargs="+", metavar="KIND NAME... | KIND/NAME... KEY=VALUE... KEY-...")
        p.add_argument("--overwrite", action="store_true", help=f"allow replacing a {verb.noun} that has a value")
        p.add_argument("-l", "--selector", help="every object of the kind matching this label selector")
        p.add_argument("--all", action="store_true", help="every object of the kind in the namespace")
        p.add_argument("--list", action="store_true", help=f"print each object's {verb.field} instead of changing them")
        p.add_argument("--resource-version", help="only change the object if it still has this resourceVersion")
        p.set_defaults(func=lambda args, verb=verb: command(args, verb), intermixed="args")


def parse_changes(words: list[str], verb: Verb) -> tuple[dict[str, str], list[str]]:
    """(KEY=VALUE settings, KEY- removals), checked as Kubernetes checks label keys and values."""
    sets: dict[str, str] = {}
    removes: list[str] = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            key = word[:-1]
        problems = v.is_qualified_name(key)
        if eq and verb is LABEL:
            problems += v.is_label_value(value)
        if problems:
            raise CommandError(f"invalid {verb.noun} spec: {word}, {'; '.join(problems)}")
        if eq:
            if key in sets or key in removes:
                raise CommandError(f"can not both modify and remove the same {verb.noun}: {key!r}")
            sets[key] = value
        else:
            if key in sets:
                raise CommandError(f"can not both modify and remove the same {verb.noun}: {key!r}")
            removes.append(key)
    return sets, removes


def command(args: argparse.Namespace, verb: Verb) -> int:
    # kubectl's split: a word with "=" or ending in "-" is a change, the rest name the objects
    words = [w for w in args.args if "=" in w or w.endswith("-")]
    resource_args = [w for w in args.args if w not in words]
    if not resource_args:
        raise CommandError("one or more resources must be specified as <resource> <name> or <resource>/<name>")
    if not words and not args.list:
        raise CommandError(f"at least one {verb.noun} update is required")
    sets, removes = parse_changes(words, verb)
    targets = parse_targets(resource_args, learn=lambda: learn_custom_kinds_now(args))
    named = any(t.names for t in targets)
    if named and (args.selector or args.all):
        raise CommandError("name cannot be provided when a selector or --all is specified")
    if not named and not (args.selector or args.all):
        raise CommandError("resource(s) were provided, but no name was specified")

    def run(conn: Connection) -> int:
        failed = False
        for t in targets:
            ns = conn.namespace if t.res.namespaced else None
            try:
                objs = ([conn.api.get(t.res, name, ns) for name in t.names] if t.names else
                        conn.api.list(t.res, ns, label_selector=args.selector).get("items") or [])
            except ApiError as e:
                print(api_error_line(e), file=sys.stderr)
                failed = True
                continue
            for obj in objs:
                try:
                    print(change_one(conn, t.res, ns, obj, verb, sets, removes, args))
                except ApiError as e:
                    print(api_error_line(e), file=sys.stderr)
                    failed = True
                except CommandError as e:
                    print(e.line(), file=sys.stderr)
                    failed = True
        return 1 if failed else 0
    return call(args, run)


def change_one(conn: Connection, res: Any, ns: str | None, obj: dict[str, Any], verb: Verb,
               sets: dict[str, str], removes: list[str], args: argparse.Namespace) -> str:
    meta = obj.get("metadata") or {}
    ref = f"{kind_name(res)}/{meta.get('name', '')}"
    current: dict[str, str] = dict(meta.get(verb.field) or {})
    if args.list:
        return "\n".join(f"{k}={val}" for k, val in sorted(current.items()))
    if not args.overwrite:
        for key, value in sets.items():
            if key in current and current[key] != value:
                raise CommandError(f"'{key}' already has a value ({current[key]}), and --overwrite is false")
    patch: dict[str, Any] = {}
    for key in removes:
        if key in current:
            patch[key] = None
        else:
            print(f"{verb.noun} {key!r} not found.", file=sys.stderr)
    patch.update({k: val for k, val in sets.items() if current.get(k) != val})
    if not patch:
        return f"{ref} not {verb.done}"
    body: dict[str, Any] = {"metadata": {verb.field: patch}}
    if args.resource_version:
        body["metadata"]["resourceVersion"] = args.resource_version
    conn.api.patch(res, meta["name"], body, ns)
    only_removed = all(val is None for val in patch.values())
    return f"{ref} un{verb.done}" if only_removed and verb is LABEL else f"{ref} {verb.done}"
