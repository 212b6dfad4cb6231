"""`pkctl patch (KIND NAME | KIND/NAME | -f FILE) (-p PATCH | --patch-file F) [--type strategic|merge|json]
[--subresource status|scale] [-o yaml|json|name]`: kubectl's patch, one PATCH request per object."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from pklib import yamlsafe
from pklib.errors import ApiError
from pklib.resources import Resource

from ..connect import Connection, call
from ..discovery import learn_custom_kinds_now, learn_kinds_of
from ..errors import CommandError, api_error_line
from ..manifests import ManifestError, add_file_flags, place, read_files
from ..printers import print_result
from ..targets import parse_targets

PATCH_TYPES = ("strategic", "merge", "json")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("patch", help="update fields of an object with a strategic merge, merge or JSON patch",
                       description="Update fields of an object: a strategic merge patch (default), a JSON merge "
                                   "patch (--type merge) or a JSON patch (--type json), given as JSON or YAML.")
    p.add_argument("targets", nargs="*", metavar="KIND NAME | KIND/NAME")
    add_file_flags(p, required=False)
    p.add_argument("-p", "--patch", help="the patch, as JSON or YAML")
    p.add_argument("--patch-file", help="a file holding the patch")
    p.add_argument("--type", default="strategic", help="strategic (default), merge or json")
    p.add_argument("--subresource", choices=["status", "scale"], help="patch this subresource of the object")
    p.add_argument("-o", "--output", choices=["yaml", "json", "name"], help="print the patched object")
    p.add_argument("--dry-run", choices=["none", "server"], default="none",
                   help="server: have the server check and compute the patch without storing it")
    p.set_defaults(func=command)


def read_patch(args: argparse.Namespace) -> Any:
    """The patch the user gave (-p or --patch-file), decoded from JSON or YAML."""
    if args.patch is not None and args.patch_file:
        raise CommandError("--patch and --patch-file are mutually exclusive")
    text = args.patch
    if args.patch_file:
        try:
            text = Path(args.patch_file).read_text()
        except OSError as e:
            raise CommandError(f"unable to read patch file: {e.strerror or e}") from None
    if text is None or not text.strip():
        raise CommandError("must specify --patch or --patch-file containing the contents of the patch")
    try:
        body = json.loads(text)
    except ValueError:
        try:
            body = yamlsafe.load(text)
        except yaml.YAMLError as e:
            raise CommandError(f"unable to parse {text!r}: {str(e).splitlines()[0]}") from None
    if args.type == "json" and not isinstance(body, list):
        raise CommandError(f"unable to parse {text!r}: a JSON patch is a list of operations")
    if args.type != "json" and not isinstance(body, dict):
        raise CommandError(f"unable to parse {text!r}: a {args.type} patch is an object")
    return body


def command(args: argparse.Namespace) -> int:
    if args.type not in PATCH_TYPES:
        raise CommandError(f"--type must be one of {list(PATCH_TYPES)}, not {args.type!r}")
    body = read_patch(args)
    if args.filename and args.targets:
        raise CommandError("there is no need to specify a resource type as a separate argument when passing -f")
    if args.filename:
        manifests = read_files(args.filename, args.recursive, none_given="no objects passed to patch")

        def by_file(conn: Connection) -> int:
            learn_kinds_of(conn.api, [m.obj for m in manifests])
            failed = False
            for m in manifests:
                try:
                    p = place(m, conn.namespace, conn.namespace_given)
                except ManifestError as e:  # said, and the others still go ahead
                    print(f"error: {e}", file=sys.stderr)
                    failed = True
                    continue
                failed |= not patch_one(conn, p.res, p.name, p.namespace, body, args)
            return int(failed)
        return call(args, by_file)
    targets = parse_targets(args.targets, learn=lambda: learn_custom_kinds_now(args))
    if not targets:
        raise CommandError("You must provide one or more resources by argument or filename.")
    if not all(t.names for t in targets):
        raise CommandError("resource(s) were provided, but no name was specified")

    def by_name(conn: Connection) -> int:
        failed = False
        for t in targets:
            for name in t.names:
                failed |= not patch_one(conn, t.res, name, conn.namespace if t.res.namespaced else None, body, args)
        return int(failed)
    return call(args, by_name)


def patch_one(conn: Connection, res: Resource, name: str, namespace: str | None, body: Any,
              args: argparse.Namespace) -> bool:
    """Patch one object and say so as kubectl does (`patched`, or `patched (no change)`); False on failure."""
    try:
        before = conn.api.get(res, name, namespace, args.subresource)
        params = {"dryRun": "All"} if args.dry_run == "server" else None
        after = conn.api.patch(res, name, body, namespace, patch_type=args.type, subresource=args.subresource,
                               params=params)
    except ApiError as e:
        print(api_error_line(e), file=sys.stderr)
        return False
    changed = after != before
    suffix = "" if args.dry_run == "none" else " (server dry run)"
    print_result(res, after, args.output, ("patched" if changed else "patched (no change)") + suffix)
    return True
