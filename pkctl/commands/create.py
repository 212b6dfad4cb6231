"""`pkctl create -f FILE|DIR|-` and `pkctl create namespace NAME`."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from pklib.errors import ApiError
from pklib.resources import lookup

from ..connect import Connection, run
from ..errors import CommandError, api_error_line
from ..manifests import Manifest, ManifestError, place, read_all
from ..printers import kind_name
from .apply import add_file_flags, with_last_applied


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("create", help="create objects from files or from arguments",
                       description="Create objects from files (failing for ones that exist), or a namespace.")
    add_file_flags(p, required=False)
    p.add_argument("--save-config", action="store_true",
                   help="record the configuration, so that a later `pkctl apply` can tell what was removed")
    p.set_defaults(func=from_files)
    kinds = p.add_subparsers(dest="create_kind", metavar="KIND")
    ns = kinds.add_parser("namespace", aliases=["ns"], help="create a namespace")
    ns.add_argument("name", metavar="NAME")
    ns.set_defaults(func=namespace)


def from_files(args: argparse.Namespace) -> int:
    if not args.filename:
        raise CommandError("must specify one of -f, or a kind to create (e.g. `pkctl create namespace NAME`)")
    try:
        manifests = read_all(args.filename, args.recursive)
    except ManifestError as e:
        raise CommandError(str(e)) from None
    if not manifests:
        raise CommandError("no objects passed to create")
    return run(args, lambda conn: create_all(conn, manifests, args.save_config))


async def create_all(conn: Connection, manifests: list[Manifest], save_config: bool) -> int:
    failed = False
    for m in manifests:
        try:
            p = place(m, conn.namespace, conn.namespace_given)
        except ManifestError as e:
            failed = True
            print(f"error: {e}", file=sys.stderr)
            continue
        obj = with_last_applied(p.obj) if save_config else p.obj
        try:
            created = await conn.client.create(p.res, obj, p.namespace)
        except ApiError as e:
            failed = True
            print(api_error_line(e, f'error when creating "{m.source}"'), file=sys.stderr)
            continue
        # generateName objects get their name from the server.
        print(f"{kind_name(p.res)}/{_name(created) or p.name} created")
        sys.stdout.flush()
    return 1 if failed else 0


def namespace(args: argparse.Namespace) -> int:
    async def create(conn: Connection) -> int:
        res = lookup("namespaces")
        assert res is not None
        created = await conn.client.create(res, {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": args.name}})
        print(f"namespace/{_name(created) or args.name} created")
        return 0
    return run(args, create)


def _name(obj: Any) -> str:
    return str(((obj or {}).get("metadata") or {}).get("name") or "") if isinstance(obj, dict) else ""
