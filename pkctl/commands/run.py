"""`pkctl run NAME --image I [-p [IP:]HOST:CONTAINER[/udp]] [-e K=V] [--restart R] [--attach [--rm]] [-- CMD ARGS]`:
kubectl run's Pod (label run=NAME) with Docker's -p (a hostPort, published on the node) and -e.

--attach follows the container's output until it ends and exits with its exit code, as `kubectl run --attach`
(and `docker run`) do; --rm then deletes the pod. Interactive attach (-i/-t) needs pods/attach, which pkube
does not serve yet: it is refused with a one-line error rather than half-working.

-p and Pod Security: Kubernetes' `baseline` level (the cluster's default) forbids every hostPort (its "known
list" of allowed ports is not something the built-in admission offers), so in a namespace at baseline or
restricted the API server refuses the pod. `run` does not lower the namespace's level for the user (that is a
security decision about everything in the namespace; `compose up` labels its own namespace privileged because
the project owns it): it prints the server's refusal as kubectl does, and a hint with the two ways out.
"""
from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from pklib.client import Client
from pklib.errors import ApiError, is_not_found
from pklib.resources import PODS

from .. import generators
from ..connect import Connection, run
from ..errors import CommandError, ServerError, api_error_line
from ..flags import dry_run, output_flags
from ..printers import print_result
from .logs import stream_logs

ATTACH_TIMEOUT = 300.0  # seconds for the pod to start before --attach gives up (kubectl's --pod-running-timeout: 1m)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run an image in a pod",
                       description="Create a pod running an image. `-- ARGS` are the container's arguments (its "
                                   "command with --command).")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--image", default="", help="image to run")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOST:CONTAINER[/udp]",
                   help="publish a container port on the node (a hostPort), as `docker run -p` does")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="an environment variable")
    p.add_argument("--port", type=int, help="the port the container exposes")
    p.add_argument("-l", "--labels", default="", help="labels, e.g. a=b,c=d (default run=NAME)")
    p.add_argument("--restart", default="Always", choices=["Always", "OnFailure", "Never"],
                   help="the pod's restart policy (default Always)")
    p.add_argument("--command", action="store_true", help="the arguments after -- are the command, not its args")
    p.add_argument("--attach", action="store_true", help="follow the container's output until it ends")
    p.add_argument("--rm", action="store_true", help="delete the pod once --attach ends")
    p.add_argument("-i", "--stdin", action="store_true", help="keep stdin open (needs pods/attach: not supported)")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a TTY (needs pods/attach: not supported)")
    output_flags(p)
    p.set_defaults(takes_command=True, func=command)


def build(args: argparse.Namespace) -> dict[str, Any]:
    try:
        ports = [q for spec in args.publish for q in generators.published_ports(spec)]
        if args.port is not None:
            ports.append({"containerPort": args.port})
        labels = generators.labels_arg(args.labels) if args.labels else None
        return generators.pod(args.name, args.image, ports=ports, env=generators.env_vars(args.env), labels=labels,
                              restart=args.restart, command=args.after_dashes or None, as_command=args.command)
    except generators.GeneratorError as e:
        raise CommandError(str(e)) from None


def command(args: argparse.Namespace) -> int:
    if args.stdin or args.tty:
        raise CommandError("interactive attach (-i/-t) is not supported yet: use --attach to follow the output, "
                           "or `pkctl exec -it` into a running pod")
    if args.rm and not args.attach:
        raise CommandError("--rm should only be used for attached containers (add --attach)")
    if args.command and not args.after_dashes:
        raise CommandError("--command needs the command after --")
    obj = build(args)
    if args.dry_run == "client":
        print_result(PODS, obj, args.output, "created (dry run)")
        return 0

    async def create(conn: Connection) -> int:
        params, suffix = dry_run(args.dry_run)
        try:
            created = await conn.client.create(PODS, obj, conn.namespace, params=params)
        except ApiError as e:
            if args.publish and e.code == 403 and "PodSecurity" in e.message and "hostPort" in e.message:
                raise ServerError(f"{api_error_line(e)}\n{_host_port_hint(conn.namespace, args.name, obj)}") from None
            raise
        if not args.attach or params:
            print_result(PODS, created, args.output, "created" + suffix)
            return 0
        try:
            return await attach(conn.client, conn.namespace, args.name)
        finally:
            if args.rm:
                await conn.client.delete(PODS, args.name, conn.namespace, grace_period_seconds=0)
                print(f'pod "{args.name}" deleted')
    return run(args, create)


async def attach(c: Client, ns: str, name: str) -> int:
    """Follow the pod's output once its container started; the container's exit code (0 while it runs on)."""
    deadline = time.monotonic() + ATTACH_TIMEOUT
    while True:
        pod = await c.get(PODS, name, ns)
        state = _state(pod)
        if "running" in state or "terminated" in state:
            break
        if "waiting" in state and state["waiting"].get("reason") in ("ErrImagePull", "ImagePullBackOff",
                                                                       "InvalidImageName", "CreateContainerError"):
            raise CommandError(f"pod {ns}/{name}: {state['waiting']['reason']}: {state['waiting'].get('message', '')}")
        if time.monotonic() > deadline:
            raise CommandError(f"timed out waiting for pod {ns}/{name} to start")
        await asyncio.sleep(0.2)
    await stream_logs(c, ns, name, {"follow": "true"})
    # The log ends when the container does; its status may take a moment to say so.
    while time.monotonic() < deadline:
        try:
            pod = await c.get(PODS, name, ns)
        except ApiError as e:
            if is_not_found(e):
                return 0
            raise
        terminated = _state(pod).get("terminated")
        if terminated is not None:
            return int(terminated.get("exitCode") or 0)
        if (pod.get("spec") or {}).get("restartPolicy", "Always") == "Always":
            return 0
        await asyncio.sleep(0.2)
    return 0


def _host_port_hint(ns: str, name: str, pod: dict[str, Any]) -> str:
    port = next((p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports") or []
                 if p.get("hostPort")), 80)
    return (f"hint: -p publishes a host port, which the Pod Security level of namespace {ns!r} forbids (baseline "
            f"allows none). To publish it, let the namespace run privileged pods: `pkctl label namespace {ns} "
            f"pod-security.kubernetes.io/enforce=privileged --overwrite`; or, keeping its level, run without -p and "
            f"reach the pod through a Service: `pkctl expose pod/{name} --type NodePort --port {port}`")


def _state(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return dict((statuses[0].get("state") or {}) if statuses else {})
