"""`pkctl rollout status|restart|pause|resume|history|undo`: kubectl's rollout commands (v1.32).

Objects are named as everywhere in pkctl (`deployment/web`, `deploy web`, `deploy -l app=web`,
`-f FILE`); each is handled on its own, a failure is printed as one line and makes the exit code 1.
`status` follows the object through a watch (never a polling loop) until the rollout is done, fails,
or --timeout passes. History and undo read a Deployment's ReplicaSets, or the ControllerRevisions of a
DaemonSet or StatefulSet (pkctl/rollout_history.py).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from pklib.api.podtemplate import same_template
from pklib.errors import ApiError, ConnectionFailed, is_gone, is_not_found
from pklib.resources import Resource, lookup

from ..connect import Connection, run
from ..errors import CommandError, api_error_line
from ..flags import parse_bool
from ..manifests import add_file_flags, place_or_report, read_files
from ..printers import kind_name, plural_name
from ..rollout_history import (controller_revisions, history_table, owned_replicasets, revision_table,
                               revision_template, revision_to_restore, revisions, rollback_target, undo_patch)
from ..rollout_status import VIEWERS, RolloutError, Status, parse_duration
from ..rollout_template import describe_template
from ..targets import parse_targets
from pklib.timeouts import wait_for

Obj = dict[str, Any]
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
RESTARTABLE = {("apps", "Deployment"), ("apps", "DaemonSet"), ("apps", "StatefulSet")}
# The kinds whose history is kept in ControllerRevisions.
REVISIONED = {("apps", "DaemonSet"), ("apps", "StatefulSet")}
# The kinds kubectl's history and rollback lookups know (and then say have no history or rollback).
KNOWN_WORKLOADS = RESTARTABLE | {("", "Pod"), ("apps", "ReplicaSet"), ("", "ReplicationController"),
                                 ("batch", "Job"), ("batch", "CronJob")}
# How long one watch request may stay open before we re-watch from the last version seen.
WATCH_SECONDS = 300
# Consecutive failed reconnects of a status watch before giving up (the API server is gone).
MAX_RECONNECTS = 5
# First pause before watching again after a broken or empty watch; it doubles each time in a row (at most 5 s).
BACKOFF_SECONDS = 0.1


@dataclass
class Found:
    res: Resource
    obj: Obj

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name") or "")

    @property
    def namespace(self) -> str | None:
        return (self.obj.get("metadata") or {}).get("namespace") if self.res.namespaced else None

    @property
    def ref(self) -> str:
        return f"{kind_name(self.res)}/{self.name}"

    @property
    def group_kind(self) -> str:
        """`Pod`, `ReplicaSet.apps`: how kubectl names a kind in its "not implemented" errors."""
        return f"{self.res.kind}.{self.res.group}" if self.res.group else self.res.kind


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("rollout", help="manage the rollout of a deployment, daemonset or statefulset",
                       description="Manage the rollout of one or many resources: deployments, daemonsets and "
                                   "statefulsets.")
    verbs = p.add_subparsers(dest="rollout_command", metavar="SUBCOMMAND")

    status = _verb(verbs, "status", "show the status of the rollout, waiting until it is done",
                   "Watch the status of the latest rollout until it's done (--watch=false: print it once).")
    status.add_argument("-w", "--watch", type=parse_bool, nargs="?", const=True, default=True, metavar="BOOL",
                        help="watch the status of the rollout until it's done (default true)")
    status.add_argument("--timeout", default="0s",
                        help="how long to wait before ending the watch, e.g. 30s, 2m; 0s means never")
    status.add_argument("--revision", type=int, default=0,
                        help="pin to a specific revision; fail if another revision is rolled out")
    status.set_defaults(func=status_command)

    restart = _verb(verbs, "restart", "restart a deployment, daemonset or statefulset",
                    "Restart the pods of a resource by stamping its pod template with the time "
                    f"({RESTARTED_AT}); the controller then rolls the change out.")
    restart.set_defaults(func=lambda args: _each(args, _restart))

    pause = _verb(verbs, "pause", "mark a deployment as paused", "Mark the provided deployments as paused: "
                  "changes to their template are not rolled out until they are resumed.")
    pause.set_defaults(func=lambda args: _each(args, lambda conn, f: _set_paused(conn, f, True)))
    resume = _verb(verbs, "resume", "resume a paused deployment", "Resume paused deployments.")
    resume.set_defaults(func=lambda args: _each(args, lambda conn, f: _set_paused(conn, f, False)))

    history = _verb(verbs, "history", "view the rollout history of a deployment, daemonset or statefulset",
                    "View the previous rollout revisions and their change causes.")
    history.add_argument("--revision", type=int, default=0, help="show the pod template of this revision")
    history.set_defaults(func=history_command)

    undo = _verb(verbs, "undo", "roll back a deployment, daemonset or statefulset to a previous revision",
                 "Roll back to the previous revision, or to --to-revision.")
    undo.add_argument("--to-revision", type=int, default=0, help="the revision to roll back to; 0: the previous")
    undo.set_defaults(func=lambda args: _each(args, lambda conn, f: _undo(conn, f, args.to_revision)))

    p.set_defaults(func=lambda args: _usage(p))


def _verb(verbs: argparse._SubParsersAction, name: str, help_text: str,  # type: ignore[type-arg]
          description: str) -> argparse.ArgumentParser:
    v: argparse.ArgumentParser = verbs.add_parser(name, help=help_text, description=description)
    v.add_argument("targets", nargs="*", metavar="KIND/NAME... | KIND [NAME...]")
    add_file_flags(v, required=False)
    v.add_argument("-l", "--selector", help="only the objects of KIND matching this label selector")
    return v


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


# -- naming the objects -------------------------------------------------------------------------

def _check_args(args: argparse.Namespace) -> None:
    """Argument mistakes found before anything is sent to the server."""
    if not args.targets and not args.filename:
        raise CommandError("required resource not specified")
    if args.filename and args.targets:
        raise CommandError("there is no need to specify a resource type as a separate argument when passing -f")
    if getattr(args, "revision", 0) < 0:
        raise CommandError(f"revision must be a positive integer: {args.revision}")


async def _resolve(conn: Connection, args: argparse.Namespace) -> tuple[list[Found], bool]:
    """The objects named by the arguments, read from the server; errors are printed as they come."""
    found: list[Found] = []
    failed = False
    wanted: list[tuple[Resource, str, str | None]] = []
    if args.filename:
        for m in read_files(args.filename, args.recursive):
            placed = place_or_report(m, conn.namespace, conn.namespace_given)
            if placed is None:
                failed = True
                continue
            wanted.append((placed.res, placed.name, placed.namespace))
    else:
        targets = parse_targets(args.targets)
        named = any(t.names for t in targets)
        if named and args.selector:
            raise CommandError("name cannot be provided when a selector is specified")
        for t in targets:
            ns = conn.namespace if t.res.namespaced else None
            if named:
                wanted.extend((t.res, name, ns) for name in t.names)
                continue
            listed = await conn.client.list_all(t.res, ns, label_selector=args.selector)
            items = sorted(listed.get("items") or [], key=lambda o: (o.get("metadata") or {}).get("name", ""))
            found.extend(Found(t.res, o) for o in items)
    for res, name, ns in wanted:
        try:
            found.append(Found(res, await conn.client.get(res, name, ns)))
        except ApiError as e:
            failed = True
            print(api_error_line(e), file=sys.stderr)
    if not found and not failed:
        where = f" in {conn.namespace} namespace" if not args.filename else ""
        print(f"No resources found{where}.", file=sys.stderr)
    return found, failed


def _each(args: argparse.Namespace, act: Callable[[Connection, Found], Awaitable[str | None]]) -> int:
    """Run `act` on every named object, printing the line it returns (if any); one object's failure does not
    stop the rest."""
    _check_args(args)

    async def go(conn: Connection) -> int:
        found, failed = await _resolve(conn, args)
        for f in found:
            try:
                line = await act(conn, f)
                if line is not None:
                    print(line)
            except RolloutError as e:
                failed = True
                print(f"error: {e}", file=sys.stderr)
            except ApiError as e:
                failed = True
                print(api_error_line(e), file=sys.stderr)
            sys.stdout.flush()
        return 1 if failed else 0
    return run(args, go)


# -- status -------------------------------------------------------------------------------------

def status_command(args: argparse.Namespace) -> int:
    _check_args(args)
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as e:
        raise CommandError(f'invalid argument "{args.timeout}" for "--timeout" flag: {e}') from None

    async def act(conn: Connection, f: Found) -> None:
        viewer = VIEWERS.get((f.res.group, f.res.kind))
        if viewer is None:
            raise RolloutError(f"no status viewer has been implemented for {f.group_kind}")
        follow = follow_status(conn, f, lambda obj: viewer(obj, args.revision), args.watch)
        try:
            await (wait_for(follow, timeout) if timeout > 0 else follow)
        except asyncio.TimeoutError:
            raise RolloutError("timed out waiting for the condition") from None
    return _each(args, act)


async def follow_status(conn: Connection, f: Found, view: Callable[[Obj], Status], watch: bool) -> None:
    """Print the status of the object as it is now, then after each change, until the rollout is done.

    The changes come from a watch on just this object, resumed from the last version seen when the
    server ends the stream, and restarted from a fresh read when that version is too old (410 Gone)
    or the connection broke.
    """
    def show(obj: Obj) -> bool:
        status = view(obj)
        print(status.message, flush=True)
        return status.done

    obj = f.obj
    if show(obj) or not watch:
        return
    idle = 0  # watches in a row that ended without an event (paces re-watching a server that ends them early)
    failures = 0  # consecutive broken connections
    while True:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        try:
            async for event in conn.client.watch(f.res, f.namespace, resource_version=rv,
                                                 field_selector=f"metadata.name={f.name}",
                                                 timeout_seconds=WATCH_SECONDS):
                idle = failures = 0
                kind, changed = event.get("type"), event.get("object") or {}
                if kind == "DELETED":
                    # Never silently follow a new object of the same name.
                    raise RolloutError("object has been deleted")
                if kind == "BOOKMARK":
                    meta = {**(obj.get("metadata") or {}),
                            "resourceVersion": (changed.get("metadata") or {}).get("resourceVersion", rv)}
                    obj = {**obj, "metadata": meta}
                elif kind in ("ADDED", "MODIFIED"):
                    obj = changed
                    if show(obj):
                        return
            # The server ended the stream: watch again from the last version seen.
            idle += 1
            await asyncio.sleep(min(BACKOFF_SECONDS * 2 ** idle, 5) if idle > 1 else 0)
            continue
        except ApiError as e:
            if not is_gone(e):
                raise
        except ConnectionFailed:
            failures += 1
            if failures > MAX_RECONNECTS:
                raise
            await asyncio.sleep(min(BACKOFF_SECONDS * 2 ** failures, 5))  # spare a struggling server
        obj = await _reread(conn, f)
        if show(obj):
            return


async def _reread(conn: Connection, f: Found) -> Obj:
    try:
        return await conn.client.get(f.res, f.name, f.namespace)
    except ApiError as e:
        if is_not_found(e):
            raise RolloutError("object has been deleted") from None
        raise


# -- restart, pause, resume ---------------------------------------------------------------------

def _is_deployment(f: Found) -> bool:
    return (f.res.group, f.res.kind) == ("apps", "Deployment")


async def _restart(conn: Connection, f: Found) -> str:
    if (f.res.group, f.res.kind) not in RESTARTABLE:
        raise RolloutError(f'{plural_name(f.res)} "{f.name}" restarting is not supported')
    if _is_deployment(f) and (f.obj.get("spec") or {}).get("paused"):
        raise RolloutError(f'{plural_name(f.res)} "{f.name}" can\'t restart paused deployment '
                           "(run rollout resume first)")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
    await conn.client.patch(f.res, f.name, patch, f.namespace, patch_type="strategic")
    return f"{f.ref} restarted"


async def _set_paused(conn: Connection, f: Found, paused: bool) -> str:
    verb = "pausing" if paused else "resuming"
    if not _is_deployment(f):
        raise RolloutError(f'{plural_name(f.res)} "{f.name}" {verb} is not supported')
    if bool((f.obj.get("spec") or {}).get("paused")) == paused:
        raise RolloutError(f'{plural_name(f.res)} "{f.name}" is {"already" if paused else "not"} paused')
    # null rather than false on resume: the field disappears, as kubectl's patch leaves it.
    await conn.client.patch(f.res, f.name, {"spec": {"paused": True if paused else None}}, f.namespace,
                            patch_type="strategic")
    return f"{f.ref} {'paused' if paused else 'resumed'}"


# -- history, undo ------------------------------------------------------------------------------

def _not_implemented(f: Found, role: str) -> RolloutError:
    """kubectl's two wordings: a workload kind it knows but cannot handle, and any other kind."""
    if (f.res.group, f.res.kind) in KNOWN_WORKLOADS:
        return RolloutError(f'no {role} has been implemented for "{f.group_kind}"')
    lookup_role = "history" if role == "history viewer" else role
    return RolloutError(f'error retrieving {lookup_role} for "{f.group_kind}", no visitor method exists for '
                        f"{{{f.res.group} {f.res.kind}}}")


async def _selected(conn: Connection, f: Found, plural: str) -> list[Obj]:
    """The objects of `plural` in f's namespace its selector's matchLabels select; ownership decides
    which are f's (as kubectl does)."""
    res = lookup(plural)
    assert res is not None
    selector = (f.obj.get("spec") or {}).get("selector") or {}
    match = selector.get("matchLabels") or {}
    narrowed = ",".join(f"{k}={v}" for k, v in sorted(match.items())) if not selector.get("matchExpressions") else ""
    listed = await conn.client.list_all(res, f.namespace, label_selector=narrowed or None)
    return list(listed.get("items") or [])


async def _replicasets(conn: Connection, f: Found) -> list[Obj]:
    return owned_replicasets(f.obj, await _selected(conn, f, "replicasets"))


def history_command(args: argparse.Namespace) -> int:
    _check_args(args)

    async def show(conn: Connection, f: Found) -> str:
        if (f.res.group, f.res.kind) in REVISIONED:
            listed = await _selected(conn, f, "controllerrevisions")
            if args.revision > 0:
                by_rev = controller_revisions(f.obj, listed)
                if args.revision not in by_rev:
                    raise RolloutError("unable to find the specified revision")
                template = revision_template(f.obj, by_rev[args.revision])
                return f"{f.ref} with revision #{args.revision}\n{describe_template(template)}"
            return f"{f.ref} \n{revision_table(f.obj, listed)}"
        if not _is_deployment(f):
            raise _not_implemented(f, "history viewer")
        rss = await _replicasets(conn, f)
        if args.revision > 0:
            by_rev = revisions(rss)
            if args.revision not in by_rev:
                raise RolloutError("unable to find the specified revision")
            template = (by_rev[args.revision].get("spec") or {}).get("template") or {}
            return f"{f.ref} with revision #{args.revision}\n{describe_template(template)}"
        return f"{f.ref} \n{history_table(rss)}"
    return _each(args, show)


async def _undo(conn: Connection, f: Found, to_revision: int) -> str:
    if (f.res.group, f.res.kind) in REVISIONED:
        return await _undo_revision(conn, f, to_revision)
    if not _is_deployment(f):
        raise _not_implemented(f, "rollbacker")
    revision, rs = rollback_target(await _replicasets(conn, f), to_revision, f.name)
    if (f.obj.get("spec") or {}).get("paused"):
        raise RolloutError("you cannot rollback a paused deployment; resume it first with "
                           "'pkctl rollout resume' and try again")
    current = (f.obj.get("spec") or {}).get("template") or {}
    if same_template(current, (rs.get("spec") or {}).get("template") or {}):
        return f"{f.ref} skipped rollback (current template already matches revision {revision})"
    await conn.client.patch(f.res, f.name, undo_patch(f.obj, rs), f.namespace, patch_type="json")
    return f"{f.ref} rolled back"


async def _undo_revision(conn: Connection, f: Found, to_revision: int) -> str:
    """kubectl's DaemonSet/StatefulSet rollbacker: send the chosen revision's patch to the owner."""
    target = revision_to_restore(f.obj, await _selected(conn, f, "controllerrevisions"), to_revision)
    current = (f.obj.get("spec") or {}).get("template") or {}
    if same_template(current, revision_template(f.obj, target)):
        # kubectl names the revision as it was asked for (0 when none was given).
        return f"{f.ref} skipped rollback (current template already matches revision {to_revision})"
    await conn.client.patch(f.res, f.name, target.get("data") or {}, f.namespace, patch_type="strategic")
    return f"{f.ref} rolled back"
