"""`pkctl api-resources`: the kinds pkctl can name, with their short names (from pklib's kind table)."""
from __future__ import annotations

import argparse

from pklib.resources import RESOURCES, Resource

from ..flags import parse_bool
from ..printers import format_rows, plural_name


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("api-resources", help="list the kinds of objects, with their short names",
                       description="List the API resources: the names `get`, `describe` and `delete` accept.")
    p.add_argument("--namespaced", type=parse_bool, metavar="BOOL", help="only namespaced (true) or cluster (false)")
    p.add_argument("-o", "--output", choices=["wide", "name"], help="name: one resource per line; wide: add VERBS")
    p.set_defaults(func=command)


def _order(r: Resource) -> tuple[bool, str, str]:
    # The core group first, then the named groups, as kubectl lists them.
    return (r.group != "", r.group, r.plural)


def command(args: argparse.Namespace) -> int:
    rows = [r for r in sorted(RESOURCES, key=_order) if args.namespaced is None or r.namespaced == args.namespaced]
    if args.output == "name":
        for r in rows:
            print(plural_name(r))
        return 0
    head = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND", *(["VERBS"] if args.output == "wide" else [])]
    table = [head] + [[r.plural, ",".join(r.short_names), r.api_version, str(r.namespaced).lower(), r.kind,
                       *([f"[{' '.join(r.verbs)}]"] if args.output == "wide" else [])] for r in rows]
    print("\n".join(format_rows(table)))
    return 0
