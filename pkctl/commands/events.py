"""`pkctl events [-A] [--for KIND/NAME] [--types Normal,Warning] [-w] [-o yaml|json]`: kubectl's events, the
namespace's Events oldest first as LAST SEEN TYPE REASON OBJECT MESSAGE (NAMESPACE first with -A)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from pklib import columns
from pklib.resources import EVENTS

from ..connect import Connection, call
from ..discovery import learn_custom_kinds_now
from ..errors import CommandError
from ..printers import as_list, format_rows, to_json, to_yaml, utcnow, with_type
from ..targets import parse_targets

TYPES = ("Normal", "Warning")
WATCH_RETRY_SECONDS = 0.2


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("events", help="list events", description="List the events of the namespace (or all with "
                                                                  "-A), oldest first; -w keeps printing new ones.")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="events of every namespace")
    p.add_argument("--for", dest="for_", metavar="KIND/NAME", help="only the events about this object")
    p.add_argument("--types", default="", help="only these event types, comma-separated: Normal, Warning")
    p.add_argument("-w", "--watch", action="store_true", help="after the list, print events as they come")
    p.add_argument("--no-headers", action="store_true", help="print no header line")
    p.add_argument("-o", "--output", choices=["yaml", "json"], help="print the events as yaml or json")
    p.set_defaults(func=command)


def involved_selector(args: argparse.Namespace) -> str | None:
    """The field selector of --for KIND/NAME (KIND as kubectl takes it: pod, po, deployment.apps...)."""
    if not args.for_:
        return None
    kind, sep, name = args.for_.partition("/")
    if not sep or not kind or not name:
        raise CommandError(f"--for must be in resource/name form, got {args.for_!r}")
    res = parse_targets([kind], learn=lambda: learn_custom_kinds_now(args))[0].res
    return f"involvedObject.kind={res.kind},involvedObject.apiVersion={res.api_version},involvedObject.name={name}"


def event_types(text: str) -> list[str]:
    wanted = []
    for word in filter(None, (w.strip() for w in text.split(","))):
        match = [t for t in TYPES if t.lower() == word.lower()]
        if not match:
            raise CommandError(f"valid --types are {', '.join(TYPES)}, not {word!r}")
        wanted.append(match[0])
    return wanted


def last_seen(ev: dict[str, Any]) -> str:
    return str(ev.get("lastTimestamp") or ev.get("eventTime") or (ev.get("metadata") or {}).get("creationTimestamp")
               or "")


def rows(events: list[dict[str, Any]], all_namespaces: bool) -> list[list[str]]:
    """`get events`' cells, but OBJECT as kubectl events writes it: the kind as it is (Pod/web, not pod/web)."""
    now, out = utcnow(), []
    for ev in events:
        row = columns.cells(EVENTS, ev, now, False, None)
        inv = ev.get("involvedObject") or {}
        row[3] = f"{inv.get('kind') or ''}/{inv.get('name', '')}"
        out.append(([(ev.get("metadata") or {}).get("namespace", "")] if all_namespaces else []) + row)
    return out


def command(args: argparse.Namespace) -> int:
    selector = involved_selector(args)
    types = event_types(args.types)
    if args.watch and args.output:
        raise CommandError("--watch cannot be used with --output")

    def show(conn: Connection) -> int:
        ns = None if args.all_namespaces else conn.namespace
        listed = conn.api.list_all(EVENTS, ns, field_selector=selector)
        events = sorted((ev for ev in listed.get("items") or [] if not types or ev.get("type") in types),
                        key=last_seen)
        if args.output:
            doc = as_list(with_type(EVENTS, ev) for ev in events)
            sys.stdout.write(to_yaml(doc) if args.output == "yaml" else to_json(doc))
            return 0
        head = ([] if args.no_headers else
                [(["NAMESPACE"] if args.all_namespaces else []) + columns.headers(EVENTS, False)])
        widths: list[int] = []
        if events:
            print("\n".join(format_rows(head + rows(events, args.all_namespaces), widths)))
        elif not args.watch:
            print("No events found." if args.all_namespaces else f"No events found in {ns} namespace.",
                  file=sys.stderr)
        sys.stdout.flush()
        if args.watch:
            rv = (listed.get("metadata") or {}).get("resourceVersion")
            conn.run_async(lambda: follow(conn, ns, selector, types, rv, widths, args, bool(events)))
        return 0
    return call(args, show)


async def follow(conn: Connection, ns: str | None, selector: str | None, types: list[str], rv: str | None,
                 widths: list[int], args: argparse.Namespace, header_printed: bool) -> None:
    """Print each event added or changed from `rv` on, until interrupted."""
    from .. import watching
    header_printed = header_printed or args.no_headers

    def show(event: dict[str, Any]) -> None:
        nonlocal header_printed
        obj = event.get("object") or {}
        if event.get("type") not in ("ADDED", "MODIFIED") or (types and obj.get("type") not in types):
            return
        lines = [] if header_printed else \
            [(["NAMESPACE"] if args.all_namespaces else []) + columns.headers(EVENTS, False)]
        header_printed = True
        print("\n".join(format_rows(lines + rows([obj], args.all_namespaces), widths)))
        sys.stdout.flush()
    await watching.follow(conn.client, EVENTS, ns, rv, show, WATCH_RETRY_SECONDS, field_selector=selector)
