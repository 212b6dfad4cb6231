"""`pkctl diff -f FILE`: kubectl's diff. Each object of the files is applied as a server-side dry run (what
`pkctl apply` would send, stored nowhere) and compared with the live object as a unified diff of their YAML,
managedFields left out. Exit code 0: no differences, 1: differences, 2 and more: an error (as kubectl)."""
from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any

from pklib.errors import ApiError, is_not_found

from ..connect import Connection, call
from ..discovery import learn_kinds_of
from ..errors import CommandError
from ..manifests import ManifestError, Placed, add_file_flags, place, read_files
from ..printers import to_yaml, with_type
from .apply import apply_object

# Exit code of a failed diff (0 and 1 say whether objects differ).
FAILED = 2


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("diff", help="show what applying the files would change",
                       description="Diff the live objects against what `apply -f` would make of them (a server "
                                   "dry run). Exit 0: no differences, 1: differences, 2: an error.")
    add_file_flags(p, required=False)
    p.set_defaults(func=command)


def document(obj: dict[str, Any] | None, p: Placed) -> list[str]:
    """The object's YAML lines as diffed: no managedFields (kubectl masks them too)."""
    if obj is None:
        return []
    shown = with_type(p.res, obj)
    shown["metadata"] = {k: v for k, v in (shown.get("metadata") or {}).items() if k != "managedFields"}
    return to_yaml(shown).splitlines(keepends=True)


def diff_one(conn: Connection, p: Placed) -> list[str]:
    """The unified diff of one object, live vs merged (empty when they are the same)."""
    try:
        live: dict[str, Any] | None = conn.api.get(p.res, p.name, p.namespace)
    except ApiError as e:
        if not is_not_found(e):
            raise
        live = None
    merged: dict[str, Any] | None = apply_object(conn, p, dry_run="server")[1]  # the live object if unchanged
    group = f"{p.res.group}." if p.res.group else ""
    name = f"{group}{p.res.version}.{p.res.kind}.{p.namespace + '.' if p.namespace else ''}{p.name}"
    lines = list(difflib.unified_diff(document(live, p), document(merged, p), f"LIVE/{name}", f"MERGED/{name}"))
    if lines:
        lines.insert(0, f"diff -u -N LIVE/{name} MERGED/{name}\n")
    return lines


def command(args: argparse.Namespace) -> int:
    if not args.filename:
        raise CommandError("must specify one of -f and -k", FAILED)
    try:
        manifests = read_files(args.filename, args.recursive, none_given="no objects passed to diff")
    except CommandError as e:
        raise CommandError(str(e), FAILED) from None

    def run(conn: Connection) -> int:
        learn_kinds_of(conn.api, [m.obj for m in manifests])
        differ = failed = False
        for m in manifests:
            try:
                lines = diff_one(conn, place(m, conn.namespace, conn.namespace_given))
            except ManifestError as e:
                print(f"error: {e}", file=sys.stderr)
                failed = True
                continue
            except CommandError as e:
                print(e.line(), file=sys.stderr)
                failed = True
                continue
            sys.stdout.writelines(lines)
            differ |= bool(lines)
        return FAILED if failed else int(differ)
    try:
        return call(args, run)
    except CommandError as e:
        e.code = max(e.code, FAILED)
        raise
