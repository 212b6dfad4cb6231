"""`pkctl top nodes|pods`: CPU and memory usage from the metrics API (metrics.k8s.io), as `kubectl top` prints it.

    pkctl top nodes [NAME] [-l SELECTOR] [--sort-by cpu|memory] [--no-headers]
    pkctl top pods [NAME] [-A] [-l SELECTOR] [--containers] [--sort-by cpu|memory] [--no-headers]
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from pklib.errors import ApiError, is_not_found
from pklib.quantity import QuantityError, parse_quantity
from pklib.resources import NODEMETRICS, NODES, PODMETRICS

from ..connect import Connection, call
from ..errors import CommandError
from ..printers import format_rows

Obj = dict[str, Any]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("top", help="display resource (CPU/memory) usage of nodes or pods",
                       description="Display resource (CPU/memory) usage of nodes or pods (the metrics API).")
    kinds = p.add_subparsers(dest="what", metavar="nodes|pods")
    kinds.required = True
    for names, func in ((("node", "nodes", "no"), top_nodes), (("pod", "pods", "po"), top_pods)):
        k = kinds.add_parser(names[0], aliases=list(names[1:]), help=f"usage of {names[1]}")
        k.add_argument("name", nargs="?", help=f"only this {names[0]}")
        k.add_argument("-l", "--selector", default="", help="label selector")
        k.add_argument("--sort-by", choices=("cpu", "memory"), help="sort by cpu or memory")
        k.add_argument("--no-headers", action="store_true", help="print no header line")
        if func is top_pods:
            k.add_argument("-A", "--all-namespaces", action="store_true", help="pods of every namespace")
            k.add_argument("--containers", action="store_true", help="one line per container")
        k.set_defaults(func=lambda args, f=func: call(args, lambda conn: f(conn, args)))


def _milli(text: Any) -> int:
    try:
        return parse_quantity(text).milli_value()
    except QuantityError:
        return 0


def cpu_cell(milli: int) -> str:
    return f"{milli}m"


def memory_cell(milli_bytes: int) -> str:
    return f"{milli_bytes // 1000 // (1024 * 1024)}Mi"


def _fetch(conn: Connection, res: Any, ns: str | None, name: str | None, selector: str) -> list[Obj]:
    try:
        if name:
            return [conn.api.get(res, name, ns)]
        return list(conn.api.list(res, ns, label_selector=selector or None).get("items") or [])
    except ApiError as e:
        if is_not_found(e) and not name:
            raise CommandError("Metrics API not available") from None
        raise


def _sort(rows: list[tuple[list[str], int, int]], by: str | None) -> list[list[str]]:
    if by:
        rows = sorted(rows, key=lambda r: r[1] if by == "cpu" else r[2], reverse=True)
    return [r[0] for r in rows]


def _print(header: list[str], rows: list[list[str]], no_headers: bool) -> None:
    for line in format_rows(rows if no_headers else [header, *rows]):
        print(line)


def top_nodes(conn: Connection, args: argparse.Namespace) -> int:
    metrics = {m["metadata"]["name"]: m for m in _fetch(conn, NODEMETRICS, None, args.name, args.selector)}
    if args.name:
        nodes = [conn.api.get(NODES, args.name)]
    else:
        nodes = list(conn.api.list(NODES, label_selector=args.selector or None).get("items") or [])
    if not nodes:
        print("No resources found", file=sys.stderr)
        return 0
    rows: list[tuple[list[str], int, int]] = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        m = metrics.get(name)
        if m is None:
            rows.append(([name, "<unknown>", "<unknown>", "<unknown>", "<unknown>"], -1, -1))
            continue
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        cpu, mem = _milli(m["usage"].get("cpu", 0)), _milli(m["usage"].get("memory", 0))
        cpu_total, mem_total = _milli(allocatable.get("cpu", 0)), _milli(allocatable.get("memory", 0))
        rows.append(([name, cpu_cell(cpu), f"{cpu * 100 // cpu_total}%" if cpu_total else "<unknown>",
                      memory_cell(mem), f"{mem * 100 // mem_total}%" if mem_total else "<unknown>"], cpu, mem))
    _print(["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"], _sort(rows, args.sort_by),
           args.no_headers)
    return 0


def top_pods(conn: Connection, args: argparse.Namespace) -> int:
    ns = None if args.all_namespaces else conn.namespace
    if args.name and args.all_namespaces:
        raise CommandError("a resource cannot be retrieved by name across all namespaces")
    try:
        items = _fetch(conn, PODMETRICS, ns, args.name, args.selector)
    except ApiError as e:
        if args.name and is_not_found(e):
            raise CommandError(f"Metrics not available for pod {conn.namespace}/{args.name}") from None
        raise
    if not items:
        where = "" if ns is None else f" in {ns} namespace"
        print(f"No resources found{where}.", file=sys.stderr)
        return 0
    lead = ["NAMESPACE"] if args.all_namespaces else []
    rows: list[tuple[list[str], int, int]] = []
    for m in sorted(items, key=lambda m: (m["metadata"].get("namespace", ""), m["metadata"]["name"])):
        first = [m["metadata"].get("namespace", "")] if args.all_namespaces else []
        containers = m.get("containers") or []
        if args.containers:
            for c in containers:
                cpu, mem = _milli(c["usage"].get("cpu", 0)), _milli(c["usage"].get("memory", 0))
                rows.append(([*first, m["metadata"]["name"], c["name"], cpu_cell(cpu), memory_cell(mem)], cpu, mem))
            continue
        cpu = sum(_milli(c["usage"].get("cpu", 0)) for c in containers)
        mem = sum(_milli(c["usage"].get("memory", 0)) for c in containers)
        rows.append(([*first, m["metadata"]["name"], cpu_cell(cpu), memory_cell(mem)], cpu, mem))
    header = [*lead, "POD", "NAME"] if args.containers else [*lead, "NAME"]
    _print([*header, "CPU(cores)", "MEMORY(bytes)"], _sort(rows, args.sort_by), args.no_headers)
    return 0
