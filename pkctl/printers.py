"""Output formats of `pkctl get` and friends: aligned tables, yaml, json and name.

Everything here is pure (objects in, text out) so that it is unit-tested with
plain dicts. The per-kind table columns live in pklib/columns.py.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from pklib.api.timefmt import parse_time  # noqa: F401  (re-exported)
from pklib.columns import NONE, human_duration, since  # noqa: F401  (re-exported)
from pklib.resources import Resource


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def format_rows(rows: Sequence[Sequence[str]], widths: list[int] | None = None) -> list[str]:
    """Align cells like kubectl's tabwriter: each column but the last padded to its widest cell + 3.

    `widths` (if given) holds minimum widths and is updated in place, so that rows printed
    later (`get -w`) line up with the table printed first.
    """
    if not rows:
        return []
    ncols = max(len(r) for r in rows)
    if widths is None:
        widths = []
    while len(widths) < ncols:
        widths.append(0)
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for r in rows:
        cells = [cell.ljust(widths[i] + 3) if i < len(r) - 1 else cell for i, cell in enumerate(r)]
        lines.append("".join(cells))
    return lines


def kind_name(res: Resource) -> str:
    """`deployment.apps`, `pod`: how kubectl names a kind in `KIND/NAME` and messages."""
    return f"{res.singular}.{res.group}" if res.group else res.singular


def plural_name(res: Resource) -> str:
    """`deployments.apps`, `pods`: the resource as the API server names it in errors."""
    return f"{res.plural}.{res.group}" if res.group else res.plural


def object_ref(res: Resource, obj: dict[str, Any]) -> str:
    """`deployment.apps/web`: the -o name form."""
    return f"{kind_name(res)}/{(obj.get('metadata') or {}).get('name', '')}"


def with_type(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """List items come without apiVersion/kind; printed objects always carry them."""
    out = dict(obj)
    out.setdefault("apiVersion", res.api_version)
    out.setdefault("kind", res.kind)
    # Keep apiVersion and kind first as the API serves them (the printers sort anyway).
    return out


def print_result(res: Resource, obj: dict[str, Any], output: str | None, verb: str) -> None:
    """What a changing verb prints of the object it changed: -o yaml|json|name, else `KIND/NAME <verb>`."""
    typed = with_type(res, obj)
    if output == "yaml":
        sys.stdout.write(to_yaml(typed))
    elif output == "json":
        sys.stdout.write(to_json(typed))
    elif output == "name":
        print(object_ref(res, obj))
    else:
        print(f"{object_ref(res, obj)} {verb}")


def as_list(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The `kind: List` kubectl prints for -o yaml/json of several objects."""
    return {"apiVersion": "v1", "items": list(items), "kind": "List", "metadata": {"resourceVersion": ""}}


def to_yaml(obj: Any) -> str:
    """The object as kubectl's -o yaml writes it (pkctl/yamlprint.py; imported only when YAML is printed)."""
    from .yamlprint import to_yaml as dump
    return dump(obj)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False) + "\n"


def labels_cell(obj: dict[str, Any]) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or NONE


def docker_ports(containers: Iterable[dict[str, Any]]) -> str:
    """The PORTS cell of `docker ps` for containers' ports: `0.0.0.0:8080->80/tcp` published, `80/tcp` exposed."""
    out = []
    for c in containers:
        for p in c.get("ports") or []:
            proto = str(p.get("protocol") or "TCP").lower()
            if p.get("hostPort"):
                out.append(f"{p.get('hostIP') or '0.0.0.0'}:{p['hostPort']}->{p.get('containerPort')}/{proto}")
            else:
                out.append(f"{p.get('containerPort')}/{proto}")
    return ", ".join(out)


def docker_duration(seconds: float) -> str:
    """Docker's units.HumanDuration (`Less than a second`, `About a minute`, `3 hours`, `2 weeks`)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{s // 3600 // 24 // 365} years"
