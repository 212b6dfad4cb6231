"""Docker-style commands on pods: `pkctl ps`, `pkctl stop`, `pkctl rm`.

    pkctl ps [-a] [-q] [--no-trunc] [--node NODE]     the pods' containers, as `docker ps` prints them
    pkctl stop [-t SECONDS] POD|CONTAINER...           delete pods gracefully (and wait until they are gone)
    pkctl rm [-f] POD|CONTAINER...                     delete finished pods; -f: any pod, at once

`ps` reads the pods' containerStatuses from the API, so it shows the containers of every node (or of one,
`--node`), of every namespace unless `-n` names one. NAMES are dockershim's (how Kubernetes containers showed
in `docker ps`): k8s_<container>_<pod>_<namespace>_<pod uid>_<restart count>. COMMAND is the container's
command and args from the pod spec (empty when the image's ENTRYPOINT/CMD is used: the API does not hold it).

A container is a pod's process and a pod the unit Kubernetes runs, so `stop` and `rm` act on pods: named by
pod (in the namespace of -n or the context) or by what `ps` shows, a container ID (prefix) or a NAME. A pod
owned by a controller (a Deployment's) is replaced by it: scale the controller to stop it for good.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pklib.resources import PODS

from ..connect import Connection, call
from ..errors import CommandError
from ..printers import docker_duration, docker_ports, format_rows, parse_time, utcnow
from .delete import Deletion, Options, delete_all

Obj = dict[str, Any]
SHORT_ID = 12        # docker's TruncateID
SHORT_COMMAND = 20   # docker ps's COMMAND width before the ellipsis
MIN_ID_PREFIX = 4    # shorter hex words ("db") are pod names, never a container ID prefix matching by chance
HEADER = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
# Where each kind of container keeps its spec and its status.
_KINDS = (("initContainers", "initContainerStatuses"), ("containers", "containerStatuses"),
          ("ephemeralContainers", "ephemeralContainerStatuses"))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ps", help="list the pods' containers, as docker ps does",
                       description="List the containers of the pods (of every namespace unless -n is given), "
                                   "as `docker ps` prints them. NAMES: k8s_CONTAINER_POD_NAMESPACE_UID_RESTARTS.")
    p.add_argument("-a", "--all", action="store_true", help="show all containers (default shows just running)")
    p.add_argument("-q", "--quiet", action="store_true", help="only display container IDs")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("--node", default="", help="only the containers of the pods on this node")
    p.set_defaults(func=lambda args: call(args, lambda conn: ps(conn, args)))

    p = sub.add_parser("stop", help="stop pods: delete them gracefully",
                       description="Stop pods, named by pod or by a container ID or NAME of `pkctl ps`: delete "
                                   "them gracefully and wait until they are gone. A pod owned by a controller "
                                   "is replaced by it.")
    p.add_argument("targets", nargs="+", metavar="POD|CONTAINER")
    p.add_argument("-t", "--timeout", "--time", type=int, dest="timeout", default=None, metavar="SECONDS",
                   help="seconds to wait for the containers to stop before killing them (default: the pod's "
                        "terminationGracePeriodSeconds)")
    p.set_defaults(func=lambda args: call(args, lambda conn: stop(conn, args)))

    p = sub.add_parser("rm", help="remove finished pods (-f: any pod, at once)",
                       description="Remove pods whose containers have all stopped, named by pod or by a container "
                                   "ID or NAME of `pkctl ps`; with -f also running ones, without grace.")
    p.add_argument("targets", nargs="+", metavar="POD|CONTAINER")
    p.add_argument("-f", "--force", action="store_true", help="force the removal of a running pod (no grace)")
    p.set_defaults(func=lambda args: call(args, lambda conn: rm(conn, args)))


@dataclass
class Container:
    pod: Obj
    spec: Obj
    status: Obj

    @property
    def id(self) -> str:
        return str(self.status.get("containerID") or "").partition("://")[2]

    @property
    def name(self) -> str:
        meta = self.pod["metadata"]
        return (f"k8s_{self.status.get('name', '')}_{meta.get('name', '')}_{meta.get('namespace', '')}_"
                f"{meta.get('uid', '')}_{self.status.get('restartCount', 0)}")

    @property
    def running(self) -> bool:
        return "running" in (self.status.get("state") or {})

    @property
    def restarting(self) -> bool:
        """Waiting to run again after it exited (CrashLoopBackOff): docker's `Restarting`."""
        return "waiting" in (self.status.get("state") or {}) and "terminated" in (self.status.get("lastState") or {})

    @property
    def created(self) -> datetime | None:
        state, last = self.status.get("state") or {}, self.status.get("lastState") or {}
        for section, key in (("running", "startedAt"), ("terminated", "startedAt")):
            if section in state:
                return parse_time(state[section].get(key))
        if "terminated" in last:
            return parse_time(last["terminated"].get("finishedAt"))
        return parse_time(self.pod["metadata"].get("creationTimestamp"))


def containers_of(pods: list[Obj]) -> list[Container]:
    """The pods' containers that exist on a node (have a container ID), newest first, as docker lists them."""
    out = []
    for pod in pods:
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        for spec_key, status_key in _KINDS:
            specs = {c.get("name"): c for c in spec.get(spec_key) or []}
            for cs in status.get(status_key) or []:
                if cs.get("containerID"):
                    out.append(Container(pod, specs.get(cs.get("name")) or {}, cs))
    return sorted(out, key=lambda c: (c.created.timestamp() if c.created else 0.0, c.name), reverse=True)


def _ago(t: datetime | None, now: datetime) -> str:
    return docker_duration((now - t).total_seconds()) if t else ""


def status_cell(c: Container, now: datetime) -> str:
    """docker's State.String(): `Up 2 minutes (healthy)`, `Exited (1) 3 seconds ago`, `Restarting (1) ...`."""
    state = c.status.get("state") or {}
    if "running" in state:
        health = ""
        if c.spec.get("readinessProbe"):
            health = (" (healthy)" if c.status.get("ready") else
                      " (health: starting)" if not c.status.get("started") else " (unhealthy)")
        return f"Up {_ago(parse_time(state['running'].get('startedAt')), now)}{health}"
    if "terminated" in state:
        t = state["terminated"]
        return f"Exited ({t.get('exitCode', 0)}) {_ago(parse_time(t.get('finishedAt')), now)} ago"
    last = (c.status.get("lastState") or {}).get("terminated")
    if last:
        return f"Restarting ({last.get('exitCode', 0)}) {_ago(parse_time(last.get('finishedAt')), now)} ago"
    return "Created"


def command_cell(spec: Obj, trunc: bool) -> str:
    command = " ".join(str(a) for a in [*(spec.get("command") or []), *(spec.get("args") or [])])
    if trunc and len(command) > SHORT_COMMAND:
        command = command[:SHORT_COMMAND - 1] + "…"
    return json.dumps(command, ensure_ascii=False)  # Go's strconv.Quote, as docker prints it


def row(c: Container, now: datetime, trunc: bool) -> list[str]:
    ports = "" if (c.pod.get("spec") or {}).get("hostNetwork") else docker_ports([c.spec])
    return [c.id[:SHORT_ID] if trunc else c.id, str(c.status.get("image") or c.spec.get("image") or ""),
            command_cell(c.spec, trunc), f"{_ago(c.created, now)} ago", status_cell(c, now), ports, c.name]


def _pods(conn: Connection, node: str = "") -> list[Obj]:
    ns = conn.namespace if conn.namespace_given else None
    selector = f"spec.nodeName={node}" if node else None
    return list(conn.api.list_all(PODS, ns, field_selector=selector).get("items") or [])


def ps(conn: Connection, args: argparse.Namespace) -> int:
    now = utcnow()
    shown = [c for c in containers_of(_pods(conn, args.node)) if args.all or c.running or c.restarting]
    trunc = not args.no_trunc
    if args.quiet:
        for c in shown:
            print(c.id[:SHORT_ID] if trunc else c.id)
        return 0
    for line in format_rows([HEADER, *(row(c, now, trunc) for c in shown)]):
        print(line)
    return 0


def resolve(conn: Connection, targets: list[str]) -> list[Obj | Deletion]:
    """Each target as a pod: a pod of the namespace by that name, else the pod of the container `ps` shows with
    that NAME or ID (a prefix of 4+ hex digits); an unknown name stays a Deletion of that pod name (deleting it
    says NotFound)."""
    pods = _pods(conn)
    containers = containers_of(pods)
    found: list[Obj | Deletion] = []
    for t in targets:
        named = [p for p in pods if p["metadata"]["name"] == t and p["metadata"].get("namespace") == conn.namespace]
        if not named:
            named = [c.pod for c in containers if c.name == t]
        if not named and len(t) >= MIN_ID_PREFIX and all(ch in "0123456789abcdef" for ch in t):
            named = [c.pod for c in containers if c.id.startswith(t)]
        uids = {p["metadata"].get("uid") for p in named}
        if len(uids) > 1:
            raise CommandError(f"multiple containers found with the prefix {t!r}: give more of the ID")
        found.append(named[0] if named else Deletion(PODS, t, conn.namespace))
    return found


def _deletion(item: Obj | Deletion) -> Deletion:
    if isinstance(item, Deletion):
        return item
    return Deletion(PODS, item["metadata"]["name"], item["metadata"].get("namespace"))


def _unique(items: list[Deletion]) -> list[Deletion]:
    return list({(d.namespace, d.name): d for d in items}.values())


def stop(conn: Connection, args: argparse.Namespace) -> int:
    if args.timeout is not None and args.timeout < 0:
        raise CommandError(f"invalid timeout {args.timeout}: must be 0 or more seconds")
    # grace 0 without force would be "immediately": the API's shortest graceful period is 1 second
    grace = None if args.timeout is None else max(args.timeout, 1)
    deletions = _unique([_deletion(p) for p in resolve(conn, args.targets)])
    return delete_all(conn, deletions, Options("Background", grace, False, True, 0, False))


def _is_running(pod: Obj) -> bool:
    return any(c.running for c in containers_of([pod]))


def rm(conn: Connection, args: argparse.Namespace) -> int:
    failed, deletions = False, []
    for item in resolve(conn, args.targets):
        if not args.force and not isinstance(item, Deletion) and _is_running(item):
            failed = True
            print(f'error: cannot remove pod "{item["metadata"]["name"]}": pod is running: stop the pod before '
                  "removing or force remove", file=sys.stderr)
            continue
        deletions.append(_deletion(item))
    opts = Options("Background", 0, True, True, 0, False) if args.force else \
        Options("Background", None, False, True, 0, False)
    code = delete_all(conn, _unique(deletions), opts) if deletions else 0
    return max(code, int(failed))
