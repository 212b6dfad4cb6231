"""`pkctl cordon NODE...|-l SEL`, `pkctl uncordon NODE...|-l SEL` and `pkctl drain NODE...|-l SEL
[--ignore-daemonsets] [--delete-emptydir-data] [--force] [--timeout D] [--grace-period S] [--disable-eviction]
[--pod-selector SEL]`, as kubectl's.

Drain cordons the node, then takes every pod off it through the Eviction subresource (so PodDisruptionBudgets
hold: a refused eviction is retried every 5 s) or, with --disable-eviction, plain deletes, and waits until the
pods are gone. It refuses, before touching any pod, DaemonSet pods (their controller would put them back) without
--ignore-daemonsets, pods with emptyDir data without --delete-emptydir-data and pods no controller would recreate
without --force; mirror pods are skipped. Messages are kubectl's (k8s.io/kubectl/pkg/drain).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from pklib.errors import ApiError, is_not_found
from pklib.objects import controller_of
from pklib.resources import DAEMONSETS, NODES, PODS

from ..connect import Connection, run
from ..errors import CommandError
from ..rollout_status import parse_duration

Obj = dict[str, Any]
EVICT_RETRY_DELAY = 5.0
POLL_INTERVAL = 0.5
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DAEMONSET_FATAL = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
DAEMONSET_WARNING = "ignoring DaemonSet-managed Pods"
LOCAL_STORAGE_FATAL = "Pods with local storage (use --delete-emptydir-data to override)"
UNMANAGED_FATAL = "Pods declare no controller (use --force to override)"
UNMANAGED_WARNING = "deleting Pods that declare no controller"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for verb, help_text in (("cordon", "mark nodes as unschedulable"), ("uncordon", "mark nodes as schedulable")):
        p = sub.add_parser(verb, help=help_text, description=f"{help_text[0].upper()}{help_text[1:]}.")
        p.add_argument("nodes", nargs="*", metavar="NODE")
        p.add_argument("--selector", "-l", help="label selector of the nodes (instead of names)")
        p.set_defaults(func=cordon_command, unschedulable=verb == "cordon", verb=verb)
    p = sub.add_parser("drain", help="drain nodes in preparation for maintenance",
                       description="Cordon the nodes, then evict (or delete) every pod on them and wait until "
                                   "the pods are gone.")
    p.add_argument("nodes", nargs="*", metavar="NODE")
    p.add_argument("--selector", "-l", help="label selector of the nodes (instead of names)")
    p.add_argument("--pod-selector", default=None, help="label selector of the pods to take off the nodes")
    p.add_argument("--ignore-daemonsets", action="store_true", help="ignore DaemonSet-managed pods")
    p.add_argument("--delete-emptydir-data", action="store_true",
                   help="continue even if there are pods using emptyDir (local data that will be deleted)")
    p.add_argument("--force", action="store_true",
                   help="continue even if there are pods that do not declare a controller")
    p.add_argument("--timeout", default="0s", help="how long to wait before giving up (a duration, 0s: forever)")
    p.add_argument("--grace-period", type=int, default=-1,
                   help="seconds each pod is given to terminate gracefully (negative: the pod's own)")
    p.add_argument("--disable-eviction", action="store_true",
                   help="delete pods instead of evicting them, bypassing PodDisruptionBudgets")
    p.set_defaults(func=drain_command, verb="drain")


def go_duration(seconds: float) -> str:
    """A duration as Go prints it (5s, 1m30s, 1h0m0s)."""
    s = int(seconds)
    if s < 60:
        return f"{seconds:g}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    return f"{s // 3600}h{s % 3600 // 60}m{s % 60}s"


def aggregate(errors: list[str]) -> str:
    """k8s.io/apimachinery's utilerrors.Aggregate text."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


# -- cordon / uncordon ---------------------------------------------------------------------------

async def set_unschedulable(conn: Connection, name: str, unschedulable: bool) -> None:
    node = await conn.client.get(NODES, name)
    verb = "cordoned" if unschedulable else "uncordoned"
    if bool((node.get("spec") or {}).get("unschedulable")) == unschedulable:
        print(f"node/{name} already {verb}")
        return
    await conn.client.patch(NODES, name, {"spec": {"unschedulable": True if unschedulable else None}})
    print(f"node/{name} {verb}")


def check_node_args(args: argparse.Namespace) -> None:
    if args.nodes and args.selector:
        raise CommandError("cannot specify both a node name and a --selector option")
    if not args.nodes and not args.selector:
        raise CommandError(f"USAGE: {args.verb} NODE [flags]")


async def node_names(conn: Connection, args: argparse.Namespace) -> list[str]:
    """The nodes named, or those the --selector picks."""
    if not args.selector:
        return list(args.nodes)
    nodes = (await conn.client.list(NODES, label_selector=args.selector))["items"]
    return sorted(n["metadata"]["name"] for n in nodes)


def cordon_command(args: argparse.Namespace) -> int:
    check_node_args(args)

    async def go(conn: Connection) -> int:
        for name in await node_names(conn, args):
            await set_unschedulable(conn, name, args.unschedulable)
        return 0
    return run(args, go)


# -- which pods go ---------------------------------------------------------------------------------

@dataclass
class PodList:
    """The pods of a node sorted into those to remove, warnings (message -> pods) and errors (likewise)."""
    remove: list[Obj] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def warning_text(self) -> str:
        return "; ".join(f"{msg}: {', '.join(pods)}" for msg, pods in self.warnings.items())

    def error_texts(self) -> list[str]:
        return [f"cannot delete {msg}: {', '.join(pods)}" for msg, pods in self.errors.items()]


def _finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def classify(pods: list[Obj], daemonset_exists: Callable[[Obj], bool | str], ignore_daemonsets: bool,
             delete_emptydir: bool, force: bool) -> PodList:
    """kubectl's drain filters, in its order; the first filter that keeps a pod decides.
    `daemonset_exists(pod)` is True, False (not found) or an error text."""
    out = PodList()
    for pod in pods:
        meta = pod.get("metadata") or {}
        remove, message, fatal = _filter(pod, daemonset_exists, ignore_daemonsets, delete_emptydir, force)
        if message:
            (out.errors if fatal else out.warnings).setdefault(message, []).append(
                f"{meta.get('namespace', '')}/{meta.get('name', '')}")
        if remove:
            out.remove.append(pod)
    return out


def _filter(pod: Obj, daemonset_exists: Callable[[Obj], bool | str], ignore_daemonsets: bool,
            delete_emptydir: bool, force: bool) -> tuple[bool, str, bool]:
    """(remove it, message, fatal)."""
    finished = _finished(pod)
    owner = controller_of(pod)
    if owner is not None and owner.get("kind") == "DaemonSet" and not finished:
        exists = daemonset_exists(pod)
        if isinstance(exists, str):
            return False, exists, True
        if not exists:
            message = f'daemonsets.apps "{owner.get("name")}" not found'
            return (True, message, False) if force else (False, message, True)
        return (False, DAEMONSET_WARNING, False) if ignore_daemonsets else (False, DAEMONSET_FATAL, True)
    if MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {}):
        return False, "", False
    emptydir = any("emptyDir" in (v or {}) for v in (pod.get("spec") or {}).get("volumes") or [])
    if emptydir and not finished and not delete_emptydir:
        return False, LOCAL_STORAGE_FATAL, True
    # (kubectl's "deleting Pods with local storage" warning is always overridden by the next filter's verdict)
    if owner is None and not finished:
        return (True, UNMANAGED_WARNING, False) if force else (False, UNMANAGED_FATAL, True)
    return True, "", False


# -- drain -------------------------------------------------------------------------------------------

@dataclass
class Drainer:
    conn: Connection
    args: argparse.Namespace
    timeout: float  # seconds, 0: none

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout if self.timeout > 0 else None

    def delete_options(self) -> Obj:
        return {"gracePeriodSeconds": self.args.grace_period} if self.args.grace_period >= 0 else {}

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    async def pods_of(self, node: str) -> PodList:
        pods = (await self.conn.client.list_all(PODS, None, field_selector=f"spec.nodeName={node}",
                                                label_selector=self.args.pod_selector))["items"]
        found: dict[str, bool | str] = {}
        for pod in pods:
            owner = controller_of(pod)
            if owner is None or owner.get("kind") != "DaemonSet":
                continue
            key = f"{pod['metadata']['namespace']}/{owner.get('name')}"
            if key not in found:
                try:
                    await self.conn.client.get(DAEMONSETS, str(owner.get("name")), pod["metadata"]["namespace"])
                    found[key] = True
                except ApiError as e:
                    found[key] = False if is_not_found(e) else e.message

        def exists(pod: Obj) -> bool | str:
            owner = controller_of(pod) or {}
            return found[f"{pod['metadata']['namespace']}/{owner.get('name')}"]
        return classify(pods, exists, self.args.ignore_daemonsets, self.args.delete_emptydir_data, self.args.force)

    async def evict(self, pod: Obj) -> None:
        meta = pod["metadata"]
        name, ns = meta["name"], meta["namespace"]
        body: Obj = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}}
        if self.delete_options():
            body["deleteOptions"] = self.delete_options()
        while True:
            print(f"evicting pod {ns}/{name}", flush=True)
            if self.timed_out():
                raise CommandError(f'error when evicting pods/"{name}" -n "{ns}": global timeout reached: '
                                   f"{go_duration(self.timeout)}")
            try:
                await self.conn.client.create(PODS, body, ns, subresource="eviction", name=name)
                break
            except ApiError as e:
                if is_not_found(e):
                    return
                if e.code != 429:
                    raise CommandError(f'error when evicting pods/"{name}" -n "{ns}": {e.message}') from None
                print(f'error when evicting pods/"{name}" -n "{ns}" (will retry after '
                      f"{go_duration(EVICT_RETRY_DELAY)}): {e.message}", file=sys.stderr, flush=True)
                await asyncio.sleep(EVICT_RETRY_DELAY)
        await self.wait_gone(pod, "evicted")

    async def delete(self, pod: Obj) -> None:
        meta = pod["metadata"]
        grace = self.args.grace_period if self.args.grace_period >= 0 else None
        try:
            await self.conn.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=grace)
        except ApiError as e:
            if not is_not_found(e):
                raise
        await self.wait_gone(pod, "deleted")

    async def wait_gone(self, pod: Obj, verb: str) -> None:
        """Until the pod is gone (or replaced by a namesake with another uid), as kubectl's waitForDelete."""
        meta = pod["metadata"]
        while True:
            try:
                current = await self.conn.client.get(PODS, meta["name"], meta["namespace"])
            except ApiError as e:
                if not is_not_found(e):
                    raise
                current = None
            if current is None or current["metadata"].get("uid") != meta.get("uid"):
                print(f"pod/{meta['name']} {verb}", flush=True)
                return
            if self.timed_out():
                raise CommandError(f'error when waiting for pod "{meta["name"]}" in namespace "{meta["namespace"]}" '
                                   f"to terminate: global timeout reached: {go_duration(self.timeout)}")
            await asyncio.sleep(POLL_INTERVAL)

    async def drain(self, node: str) -> list[str]:
        """Errors that kept the node from draining (none: drained)."""
        pods = await self.pods_of(node)
        if pods.errors:
            return pods.error_texts()
        if pods.warnings:
            print(f"Warning: {pods.warning_text()}", file=sys.stderr, flush=True)
        remove: Callable[[Obj], Awaitable[None]] = self.delete if self.args.disable_eviction else self.evict
        results = await asyncio.gather(*(remove(p) for p in pods.remove), return_exceptions=True)
        errors: list[str] = []
        for r in results:
            if isinstance(r, CommandError):
                errors.append(str(r))
            elif isinstance(r, BaseException):
                raise r
        return errors


def drain_command(args: argparse.Namespace) -> int:
    check_node_args(args)
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as e:
        raise CommandError(f'invalid argument "{args.timeout}" for "--timeout" flag: {e}') from None

    async def go(conn: Connection) -> int:
        names = await node_names(conn, args)
        for name in names:
            await set_unschedulable(conn, name, True)
        drainer = Drainer(conn, args, timeout)
        for i, name in enumerate(names):
            errors = await drainer.drain(name)
            if not errors:
                print(f"node/{name} drained", flush=True)
                continue
            print(f'error: unable to drain node "{name}" due to error: {aggregate(errors)}, continuing command...',
                  file=sys.stderr)
            print("There are pending nodes to be drained:", file=sys.stderr)
            for pending in names[i:]:
                print(f" {pending}", file=sys.stderr)
            for e in errors:
                print(e, file=sys.stderr)
            return 1
        return 0
    return run(args, go)
