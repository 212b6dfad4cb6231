"""`pkctl scale KIND/NAME... | KIND NAME... --replicas N [--current-replicas M]`, through the scale subresource."""
from __future__ import annotations

import argparse
import sys

from pklib.errors import ApiError, is_conflict
from pklib.resources import Resource

from ..connect import Connection, call
from ..errors import CommandError, api_error_line
from ..printers import kind_name, plural_name
from ..discovery import learn_custom_kinds_now
from ..targets import parse_targets


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("scale", help="set the number of replicas of a deployment, replicaset or statefulset",
                       description="Set a new size for a deployment, replica set or stateful set.")
    p.add_argument("targets", nargs="+", metavar="KIND/NAME... | KIND NAME...")
    p.add_argument("--replicas", type=int, help="the new number of replicas (required)")
    p.add_argument("--current-replicas", type=int, default=-1,
                   help="only scale if the current number of replicas is this")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    if args.replicas is None or args.replicas < 0:
        raise CommandError("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
    targets = parse_targets(args.targets, learn=lambda: learn_custom_kinds_now(args))
    if not any(t.names for t in targets):
        raise CommandError("resource(s) were provided, but no name was specified")
    for t in targets:
        if "scale" not in t.res.subresources:
            raise CommandError(f"{plural_name(t.res)} cannot be scaled: the kind has no scale subresource")

    def scale(conn: Connection) -> int:
        failed = False
        for t in targets:
            ns = conn.namespace if t.res.namespaced else None
            for name in t.names:
                try:
                    scale_one(conn, t.res, name, ns, args.replicas, args.current_replicas)
                except ApiError as e:
                    failed = True
                    print(api_error_line(e), file=sys.stderr)
                    continue
                except CommandError as e:
                    failed = True
                    print(e.line(), file=sys.stderr)
                    continue
                print(f"{kind_name(t.res)}/{name} scaled")
        return 1 if failed else 0
    return call(args, scale)


def scale_one(conn: Connection, res: Resource, name: str, ns: str | None, replicas: int, current: int) -> None:
    client = conn.api
    if current < 0:
        client.patch(res, name, {"spec": {"replicas": replicas}}, ns, subresource="scale")
        return
    # A precondition: read the Scale, check it, and write it back with its resourceVersion so that
    # a concurrent change in between makes the write fail instead of being overwritten.
    scale = client.get(res, name, ns, subresource="scale")
    have = int((scale.get("spec") or {}).get("replicas") or 0)
    if have != current:
        raise CommandError(f"Expected replicas to be {current}, was {have}")
    scale.setdefault("spec", {})["replicas"] = replicas
    try:
        client.update(res, scale, subresource="scale")
    except ApiError as e:
        if is_conflict(e):
            raise CommandError(f"{plural_name(res)} {name!r} changed while scaling; "
                               "check --current-replicas and try again") from None
        raise
