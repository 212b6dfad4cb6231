"""`pkctl autoscale KIND/NAME | KIND NAME --max N [--min N] [--cpu-percent P] [--name NAME]`: create an
autoscaling/v2 HorizontalPodAutoscaler for a deployment, replica set or stateful set (kubectl autoscale)."""
from __future__ import annotations

import argparse
from typing import Any

from pklib.resources import HPAS

from ..connect import Connection, call
from ..discovery import learn_custom_kinds_now
from ..errors import CommandError
from ..printers import kind_name, plural_name
from ..targets import parse_targets


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("autoscale", help="create a HorizontalPodAutoscaler for a deployment, replicaset or "
                                         "statefulset",
                       description="Autoscale a deployment, replica set or stateful set between --min and --max "
                                   "replicas, keeping CPU use near --cpu-percent of the pods' requests.")
    p.add_argument("targets", nargs="+", metavar="KIND/NAME | KIND NAME")
    p.add_argument("--min", type=int, default=-1, help="the lower limit of replicas (default: the server's, 1)")
    p.add_argument("--max", type=int, default=-1, help="the upper limit of replicas (required)")
    p.add_argument("--cpu-percent", type=int, default=-1,
                   help="the target average CPU utilization, in percent of the request (default: the server's, 80)")
    p.add_argument("--name", default="", help="the HPA's name (default: the target's)")
    p.set_defaults(func=command)


def hpa_for(res_kind: str, api_version: str, name: str, hpa_name: str, low: int, high: int,
            cpu_percent: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"scaleTargetRef": {"apiVersion": api_version, "kind": res_kind, "name": name},
                            "maxReplicas": high}
    if low >= 0:
        spec["minReplicas"] = low
    if cpu_percent >= 0:
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}]
    return {"apiVersion": HPAS.api_version, "kind": HPAS.kind, "metadata": {"name": hpa_name}, "spec": spec}


def command(args: argparse.Namespace) -> int:
    if args.max < 1:
        raise CommandError(f"--max=MAXPODS is required and must be at least 1, max: {args.max}")
    if args.min > args.max:
        raise CommandError(f"--max=MAXPODS must be larger or equal to --min=MINPODS, max: {args.max}, "
                           f"min: {args.min}")
    targets = parse_targets(args.targets, learn=lambda: learn_custom_kinds_now(args))
    pairs = [(t.res, n) for t in targets for n in t.names]
    if not pairs:
        raise CommandError("resource(s) were provided, but no name was specified")
    for res, _ in pairs:
        if "scale" not in res.subresources:
            raise CommandError(f"cannot autoscale a {kind_name(res).split('.')[0]}: {plural_name(res)} have no "
                               "scale subresource")
    if args.name and len(pairs) > 1:
        raise CommandError("--name can only be given for one resource")

    def create(conn: Connection) -> int:
        for res, name in pairs:
            conn.api.get(res, name, conn.namespace)  # the target must exist (NotFound as kubectl says it)
            body = hpa_for(res.kind, res.api_version, name, args.name or name, args.min, args.max, args.cpu_percent)
            conn.api.create(HPAS, body, conn.namespace)
            print(f"{kind_name(HPAS)}/{args.name or name} autoscaled")
        return 0
    return call(args, create)
