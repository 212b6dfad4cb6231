"""`pkctl expose (KIND NAME | KIND/NAME) [--port P] [--target-port T] [--type T] [--name N] [--protocol P]`:
a Service selecting the pods of a Deployment, ReplicaSet, StatefulSet, ReplicationController, Pod or Service,
as `kubectl expose` makes it."""
from __future__ import annotations

import argparse
from typing import Any

from pklib.resources import SERVICES

from .. import generators
from ..connect import Connection, run
from ..errors import CommandError
from ..flags import dry_run, output_flags
from ..targets import parse_targets
from ..printers import print_result

_EXPOSABLE = {"deployments", "replicasets", "statefulsets", "replicationcontrollers", "pods", "services"}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("expose", help="expose a deployment, pod, ... as a new Service",
                       description="Create a Service for the pods of a deployment, replica set, stateful set, "
                                   "pod or service.")
    p.add_argument("target", nargs="+", metavar="KIND NAME | KIND/NAME")
    p.add_argument("--port", type=int, help="the Service's port (default: the first container port)")
    p.add_argument("--target-port", help="the pods' port (number or name; default: --port)")
    p.add_argument("--type", help="ClusterIP (default), NodePort or LoadBalancer")
    p.add_argument("--name", help="the Service's name (default: the object's)")
    p.add_argument("--protocol", default="", help="TCP (default), UDP or SCTP")
    p.add_argument("--selector", help="label selector (a=b,c=d) instead of the object's")
    output_flags(p)
    p.set_defaults(func=command)


def _pod_template(obj: dict[str, Any], plural: str) -> dict[str, Any]:
    return obj if plural == "pods" else ((obj.get("spec") or {}).get("template") or {})


def _selector(obj: dict[str, Any], plural: str) -> dict[str, str]:
    spec = obj.get("spec") or {}
    if plural == "pods":
        return dict((obj.get("metadata") or {}).get("labels") or {})
    if plural in ("services", "replicationcontrollers"):
        return dict(spec.get("selector") or {})
    sel = spec.get("selector") or {}
    if sel.get("matchExpressions"):
        raise CommandError("couldn't convert expressions in the selector: only matchLabels can be exposed")
    return dict(sel.get("matchLabels") or {})


def _first_port(obj: dict[str, Any], plural: str) -> tuple[int | None, str]:
    if plural == "services":
        ports = (obj.get("spec") or {}).get("ports") or []
        return (ports[0].get("port"), ports[0].get("protocol", "TCP")) if ports else (None, "TCP")
    for c in ((_pod_template(obj, plural).get("spec") or {}).get("containers") or []):
        for p in c.get("ports") or []:
            return p.get("containerPort"), p.get("protocol", "TCP")
    return None, "TCP"


def command(args: argparse.Namespace) -> int:
    targets = parse_targets(args.target)
    if len(targets) != 1 or len(targets[0].names) != 1:
        raise CommandError("expose takes exactly one object: KIND NAME or KIND/NAME")
    res, name = targets[0].res, targets[0].names[0]
    if res.plural not in _EXPOSABLE:
        raise CommandError(f"cannot expose a {res.kind}")

    async def expose(conn: Connection) -> int:
        obj = await conn.client.get(res, name, conn.namespace)
        port, protocol = _first_port(obj, res.plural)
        if args.port is not None:
            port = args.port
        if port is None:
            raise CommandError("couldn't find port via --port flag or introspection")
        try:
            selector = generators.labels_arg(args.selector) if args.selector else _selector(obj, res.plural)
            svc = generators.service_for(args.name or name, selector,
                                         dict((obj.get("metadata") or {}).get("labels") or {}), port,
                                         args.target_port, args.protocol or protocol, args.type)
        except generators.GeneratorError as e:
            raise CommandError(str(e)) from None
        if args.dry_run == "client":
            print_result(SERVICES, svc, args.output, "exposed (dry run)")
            return 0
        params, suffix = dry_run(args.dry_run)
        created = await conn.client.create(SERVICES, svc, conn.namespace, params=params)
        print_result(SERVICES, created, args.output, "exposed" + suffix)
        return 0
    return run(args, expose)
