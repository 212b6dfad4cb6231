"""`pkctl delete (-f FILE | KIND NAME... | KIND/NAME... | KIND -l SEL | KIND --all)`.

Like kubectl, it waits (--wait, on by default) until each object is really gone, which
takes longer than the request when finalizers or graceful pod termination hold it.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, NamedTuple

from pklib.errors import ApiError, is_not_found
from pklib.resources import Resource

from ..connect import Connection, call
from ..errors import CommandError, api_error_line
from ..flags import parse_bool
from ..manifests import add_file_flags, place_or_report, read_files
from ..printers import kind_name
from ..discovery import learn_custom_kinds_now, learn_kinds_of
from ..targets import parse_targets

CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan",
           # kubectl's older boolean spelling.
           "true": "Background", "false": "Orphan"}
# Pause before re-checking when the server ended a watch without the deletion (bounds a failing loop).
WATCH_RETRY_SECONDS = 0.2


class Deletion(NamedTuple):
    res: Resource
    name: str
    namespace: str | None
    source: str | None = None  # the file it was named in, for error messages


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("delete", help="delete objects by file, name, label selector or all of a kind",
                       description="Delete objects named in files, by KIND NAME..., KIND/NAME..., KIND -l SELECTOR "
                                   "or KIND --all.")
    p.add_argument("targets", nargs="*", metavar="KIND NAME... | KIND/NAME...")
    add_file_flags(p, required=False)
    p.add_argument("-l", "--selector", help="delete the objects of KIND matching this label selector")
    p.add_argument("--all", action="store_true", help="delete every object of KIND in the namespace")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="with -l/--all: in every namespace")
    p.add_argument("--cascade", default="background", help="background (default), foreground or orphan")
    p.add_argument("--grace-period", type=int, default=-1,
                   help="seconds given to the object to terminate; negative: the object's own")
    p.add_argument("--now", action="store_true", help="same as --grace-period=1")
    p.add_argument("--force", action="store_true", help="delete at once, without waiting for the node to confirm")
    p.add_argument("--wait", type=parse_bool, nargs="?", const=True, default=True, metavar="BOOL",
                   help="wait until the objects are gone (default true)")
    p.add_argument("--timeout", type=float, default=0, help="seconds to wait; 0 means no limit")
    p.add_argument("--ignore-not-found", action="store_true", help="treat a missing object as deleted")
    p.set_defaults(func=command)


class Options(NamedTuple):
    propagation: str
    grace: int | None
    force: bool
    wait: bool
    timeout: float
    ignore_not_found: bool


def _options(args: argparse.Namespace) -> Options:
    propagation = CASCADE.get(args.cascade.lower())
    if propagation is None:
        raise CommandError(f'invalid cascade value ({args.cascade}). Must be "background", "foreground", or "orphan".')
    grace = args.grace_period
    if args.now:
        if grace != -1:
            raise CommandError("--now and --grace-period cannot be specified together")
        grace = 1
    # Like kubectl: zero means "immediately" only when forced; otherwise the shortest graceful period.
    if grace == 0 and not args.force:
        grace = 1
    if args.force and grace < 0:
        grace = 0
    return Options(propagation, grace if grace >= 0 else None, args.force, args.wait, args.timeout,
                   args.ignore_not_found)


def command(args: argparse.Namespace) -> int:
    opts = _options(args)
    if args.filename:
        if args.targets:
            raise CommandError("there is no need to specify a resource type as a separate argument when "
                               "passing -f")
        manifests = read_files(args.filename, args.recursive)

        def by_file(conn: Connection) -> int:
            deletions, failed = [], False
            learn_kinds_of(conn.api, [m.obj for m in manifests])
            for m in manifests:
                p = place_or_report(m, conn.namespace, conn.namespace_given)
                if p is None:
                    failed = True
                else:
                    deletions.append(Deletion(p.res, p.name, p.namespace, m.source))
            return max(delete_all(conn, deletions, opts), int(failed))
        return call(args, by_file)
    targets = parse_targets(args.targets, learn=lambda: learn_custom_kinds_now(args))
    if not targets:
        raise CommandError("You must provide one or more resources by argument or filename.")
    named = any(t.names for t in targets)
    if named and (args.selector or args.all):
        raise CommandError("name cannot be provided when a selector or --all is specified")
    if named and args.all_namespaces:
        raise CommandError("a resource cannot be retrieved by name across all namespaces")
    if not named and not (args.selector or args.all):
        raise CommandError("resource(s) were provided, but no name was specified")

    def by_args(conn: Connection) -> int:
        deletions: list[Deletion] = []
        for t in targets:
            ns = conn.namespace if t.res.namespaced else None
            if named:
                deletions.extend(Deletion(t.res, n, ns) for n in t.names)
                continue
            listed = conn.api.list_all(t.res, None if args.all_namespaces else ns, label_selector=args.selector)
            for item in listed.get("items") or []:
                meta = item.get("metadata") or {}
                item_ns = meta.get("namespace") if t.res.namespaced else None
                deletions.append(Deletion(t.res, meta.get("name", ""), item_ns))
        if not deletions:
            print("No resources found")
            return 0
        return delete_all(conn, deletions, opts)
    return call(args, by_args)


def delete_all(conn: Connection, deletions: list[Deletion], opts: Options) -> int:
    failed = False
    pending: list[tuple[Deletion, dict[str, Any]]] = []
    if opts.force:
        print("Warning: Immediate deletion does not wait for confirmation that the running resource has been "
              "terminated. The resource may continue to run on the cluster indefinitely.", file=sys.stderr)
    for d in deletions:
        try:
            answer = conn.api.delete(d.res, d.name, d.namespace, propagation_policy=opts.propagation,
                                              grace_period_seconds=opts.grace)
        except ApiError as e:
            if opts.ignore_not_found and is_not_found(e):
                continue
            failed = True
            context = f'error when deleting "{d.source}"' if d.source else None
            print(api_error_line(e, context), file=sys.stderr)
            continue
        word = "force deleted" if opts.force else "deleted"
        print(f'{kind_name(d.res)} "{d.name}" {word}')
        sys.stdout.flush()
        # The server answers with the object: marked with a deletionTimestamp when finalizers or a grace
        # period hold it; as it was last stored when it is already gone (nothing to wait for then).
        answer = answer if isinstance(answer, dict) else {}
        if (answer.get("metadata") or {}).get("deletionTimestamp"):
            pending.append((d, answer))
    if opts.wait and pending:
        conn.run_async(lambda: wait_all_gone(conn, pending, opts.timeout))
    return 1 if failed else 0


async def wait_all_gone(conn: Connection, pending: list[tuple[Deletion, dict[str, Any]]], timeout: float) -> None:
    import asyncio  # only waiting needs an event loop (a deletion that is done at once starts faster without)
    from pklib.timeouts import wait_for
    try:
        await wait_for(asyncio.gather(*(wait_gone(conn, d, answer) for d, answer in pending)),
                               timeout or None)
    except asyncio.TimeoutError:
        raise CommandError(f"timed out waiting for the deletion of {len(pending)} object(s)") from None


async def wait_gone(conn: Connection, d: Deletion, answer: dict[str, Any]) -> None:
    """Return once the object deleted (the one with this uid) no longer exists."""
    import asyncio
    uid = (answer.get("metadata") or {}).get("uid")
    while True:
        try:
            live = await conn.client.get(d.res, d.name, d.namespace)
        except ApiError as e:
            if is_not_found(e):
                return
            raise
        meta = live.get("metadata") or {}
        if uid and meta.get("uid") != uid:
            return  # gone, and already recreated by someone else
        # Wait for the DELETED event from the version we saw; a stream ending early just loops to re-check.
        async for event in conn.client.watch(d.res, d.namespace, resource_version=meta.get("resourceVersion"),
                                             field_selector=f"metadata.name={d.name}", timeout_seconds=60,
                                             allow_bookmarks=False):
            if event.get("type") == "DELETED":
                return
        await asyncio.sleep(WATCH_RETRY_SECONDS)
