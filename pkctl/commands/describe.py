"""`pkctl describe KIND [NAME...] | KIND/NAME... [-l SEL] [-A]`: the object, then the events about it."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from pklib.errors import ApiError, is_not_found
from pklib.columns import selector_string
from pklib.resources import ENDPOINTS, EVENTS, PODS, REPLICASETS, Resource

from ..connect import Connection, call
from ..describers import Related, describe
from ..errors import CommandError, api_error_line
from ..printers import NONE, utcnow
from ..targets import resolve_targets


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("describe", help="show details of objects and the events about them",
                       description="Show details of objects and their events. A NAME that matches no object "
                                   "exactly describes every object whose name starts with it.")
    p.add_argument("targets", nargs="+", metavar="KIND [NAME...] | KIND/NAME...")
    p.add_argument("-l", "--selector", help="describe the objects matching this label selector")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="look in every namespace")
    p.set_defaults(func=lambda args: call(args, lambda conn: describe_command(conn, args)))


def describe_command(conn: Connection, args: argparse.Namespace) -> int:
    targets = resolve_targets(conn.api, args.targets)
    if args.all_namespaces and any(t.names and t.res.namespaced for t in targets):
        raise CommandError("a resource cannot be retrieved by name across all namespaces")
    failed = False
    shown = 0
    for t in targets:
        ns = None if (args.all_namespaces or not t.res.namespaced) else conn.namespace
        objs: list[dict[str, Any]] = []
        if not t.names:
            objs = conn.api.list_all(t.res, ns, label_selector=args.selector).get("items") or []
        for name in t.names:
            try:
                objs.append(conn.api.get(t.res, name, ns))
            except ApiError as e:
                if not is_not_found(e):
                    raise
                # kubectl's convenience: `describe pods web` shows the pods whose names start with "web".
                listed = conn.api.list_all(t.res, ns)
                matches = [o for o in listed.get("items") or [] if o["metadata"]["name"].startswith(name)]
                if not matches:
                    failed = True
                    print(api_error_line(e), file=sys.stderr)
                objs.extend(matches)
        for obj in objs:
            if shown:
                print("\n")
            events = events_for(conn, t.res, obj)
            sys.stdout.write(describe(t.res, obj, events, utcnow(), related_to(conn, t.res, obj)))
            shown += 1
    if not shown and not failed:
        where = "" if (args.all_namespaces or all(not t.res.namespaced for t in targets)) \
            else f" in {conn.namespace} namespace"
        print(f"No resources found{where}.", file=sys.stderr)
    return 1 if failed else 0


def events_for(conn: Connection, res: Resource, obj: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Events whose involvedObject is this object (by name, namespace and uid)."""
    if EVENTS is None or res.kind == "Event":
        return None
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or None  # events about cluster-scoped objects may be in any namespace
    wanted = {"involvedObject.name": meta.get("name"), "involvedObject.namespace": meta.get("namespace") or "",
              "involvedObject.uid": meta.get("uid")}
    selector = ",".join(f"{k}={v}" for k, v in wanted.items() if v)
    try:
        items = conn.api.list_all(EVENTS, ns, field_selector=selector).get("items") or []
    except ApiError as e:
        if e.code != 400:
            raise CommandError(f"cannot list the events of {meta.get('name')}: {e.message}") from None
        # A server that cannot select events by involvedObject: select here instead.
        items = conn.api.list_all(EVENTS, ns).get("items") or []
    return [ev for ev in items if _about(ev, meta)]


def _about(event: dict[str, Any], meta: dict[str, Any]) -> bool:
    inv = event.get("involvedObject") or {}
    return (inv.get("name") == meta.get("name") and (inv.get("namespace") or "") == (meta.get("namespace") or "")
            and (not inv.get("uid") or inv.get("uid") == meta.get("uid")))


def related_to(conn: Connection, res: Resource, obj: dict[str, Any]) -> Related:
    """What the describer of this kind shows besides the object itself."""
    if res.kind == "Service":
        return Related(endpoints=endpoints_for(conn, obj))
    if res.kind == "Node":
        return Related(pods=pods_on(conn, obj))
    if res.kind == "Deployment" and REPLICASETS is not None:
        meta = obj.get("metadata") or {}
        selector = selector_string((obj.get("spec") or {}).get("selector"))
        listed = conn.api.list_all(REPLICASETS, meta.get("namespace"),
                                   label_selector=None if selector == NONE else selector)
        return Related(replicasets=listed.get("items") or [])
    return Related()


def endpoints_for(conn: Connection, service: dict[str, Any]) -> dict[str, Any] | None:
    """The Service's Endpoints (same name and namespace); None while there are none."""
    meta = service.get("metadata") or {}
    if ENDPOINTS is None:
        return None
    try:
        return conn.api.get(ENDPOINTS, meta.get("name", ""), meta.get("namespace"))
    except ApiError as e:
        if is_not_found(e):
            return None
        raise


def pods_on(conn: Connection, node: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The node's pods that have not finished (they are what holds its resources)."""
    if PODS is None:
        return None
    name = (node.get("metadata") or {}).get("name", "")
    items = conn.api.list_all(PODS, None, field_selector=f"spec.nodeName={name}").get("items") or []
    return [p for p in items if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
