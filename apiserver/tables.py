"""Server-side Tables (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), what `kubectl get` asks for.

The server decides the columns, as Kubernetes does, so every client prints the same
thing; the column logic is shared with pkctl's client-side printing (pklib/columns.py).
All columns are sent, the `-o wide` ones with priority 1 (kubectl hides those unless
asked). Each row carries the object as chosen by `includeObject`: PartialObjectMetadata
by default (kubectl reads labels from it for `--show-labels`), Object, or None.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
from aiohttp import web

from pklib import columns
from pklib.resources import Resource

from . import kinds
from .kinds.customresources import CustomResourceStrategy, json_path_get
from .status import bad_request

_DESCRIPTIONS = {
    "NAME": "Name must be unique within a namespace. Cannot be updated.",
    "AGE": "CreationTimestamp is a timestamp representing the server time when this object was created.",
}
INCLUDE_OBJECT = ("Metadata", "Object", "None")


def requested_version(accept: str) -> str | None:
    """The meta.k8s.io version of the Table the Accept header asks for, None if it asks for none."""
    for media in accept.split(","):
        parts = [p.strip() for p in media.split(";")]
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if parts[0] in ("application/json", "*/*") and params.get("as") == "Table" \
                and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return params["v"]
    return None


def wants_table(request: web.Request) -> str | None:
    return requested_version(request.headers.get("Accept", ""))


def _include(request: web.Request) -> str:
    value = request.query.get("includeObject") or "Metadata"
    if value not in INCLUDE_OBJECT:
        raise bad_request(f'includeObject: Unsupported value: "{value}": supported values: '
                          f'"{", ".join(INCLUDE_OBJECT)}"')
    return value


_AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def _custom_columns(res: Resource) -> list[dict[str, Any]] | None:
    """A custom kind's additionalPrinterColumns (Kubernetes' default: Age alone), None for built-in kinds."""
    strategy = kinds.strategy_for(res) if res.custom else None
    if not isinstance(strategy, CustomResourceStrategy):
        return None
    return strategy.columns or [_AGE_COLUMN]


def _custom_cell(col: dict[str, Any], obj: dict[str, Any], now: datetime) -> Any:
    value = json_path_get(obj, str(col.get("jsonPath") or ""))
    if value is None:
        return None
    kind = col.get("type")
    if kind == "date" and isinstance(value, str):
        return columns.since(value, now)
    if kind == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def column_definitions(res: Resource) -> list[dict[str, Any]]:
    custom = _custom_columns(res)
    if custom is not None:
        return [{"name": "Name", "type": "string", "format": "name", "description": _DESCRIPTIONS["NAME"],
                 "priority": 0}] + [
            {"name": c.get("name", ""), "type": c.get("type", "string"), "format": c.get("format", ""),
             "description": c.get("description", ""), "priority": int(c.get("priority") or 0)} for c in custom]
    narrow = columns.headers(res, wide=False)
    out = []
    for i, header in enumerate(columns.headers(res, wide=True)):
        out.append({"name": header.title(), "type": "string", "format": "name" if header == "NAME" else "",
                    "description": _DESCRIPTIONS.get(header, header.title()),
                    "priority": 0 if i < len(narrow) else 1})
    return out


def _row_object(obj: dict[str, Any], include: str, table_version: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{table_version}",
            "metadata": obj.get("metadata") or {}}


def row(res: Resource, obj: dict[str, Any], include: str, table_version: str, now: datetime) -> dict[str, Any]:
    custom = _custom_columns(res)
    if custom is not None:
        cells = [(obj.get("metadata") or {}).get("name", ""), *(_custom_cell(c, obj, now) for c in custom)]
    else:
        cells = columns.cells(res, obj, now, wide=True)
    out: dict[str, Any] = {"cells": cells}
    embedded = _row_object(obj, include, table_version)
    if embedded is not None:
        out["object"] = embedded
    return out


def table(res: Resource, objects: list[dict[str, Any]], list_meta: dict[str, Any], include: str,
          table_version: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{table_version}", "metadata": list_meta,
            "columnDefinitions": column_definitions(res),
            "rows": [row(res, o, include, table_version, now) for o in objects]}


def list_response(request: web.Request, res: Resource, body: bytes, table_version: str) -> web.Response:
    """A list body (as the list handler produced it) re-rendered as a Table."""
    doc = orjson.loads(body)
    out = table(res, doc.get("items") or [], doc.get("metadata") or {}, _include(request), table_version)
    return web.Response(body=orjson.dumps(out), content_type="application/json")


def object_response(request: web.Request, res: Resource, obj: dict[str, Any], table_version: str) -> web.Response:
    meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
    out = table(res, [obj], meta, _include(request), table_version)
    return web.Response(body=orjson.dumps(out), content_type="application/json")


def watch_response_class(request: web.Request, res: Resource, table_version: str) -> type[web.StreamResponse]:
    """A StreamResponse that rewrites each watch event's object into a one-row Table, as `kubectl get -w` wants."""
    include = _include(request)

    class TableWatchResponse(web.StreamResponse):
        async def write(self, data: bytes | bytearray | memoryview) -> None:
            await super().write(_convert_lines(bytes(data), res, include, table_version))

    return TableWatchResponse


def _convert_lines(data: bytes, res: Resource, include: str, table_version: str) -> bytes:
    out = []
    for line in data.splitlines():
        if not line.strip():
            continue
        event = orjson.loads(line)
        if event.get("type") in ("ADDED", "MODIFIED", "DELETED") and isinstance(event.get("object"), dict):
            obj = event["object"]
            meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
            event["object"] = table(res, [obj], meta, include, table_version)
        out.append(orjson.dumps(event) + b"\n")
    return b"".join(out)
