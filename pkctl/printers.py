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
