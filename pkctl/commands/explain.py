"""`pkctl explain KIND[.FIELD.PATH] [--recursive]`: kubectl's explain, from the apiserver's OpenAPI v3 document
of the kind's group-version, in kubectl's plain-text layout (GROUP, KIND, VERSION, FIELD, DESCRIPTION, FIELDS)."""
from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from pklib.resources import Resource

from ..connect import Connection, call
from ..discovery import learn_custom_kinds_now
from ..errors import CommandError
from ..targets import parse_targets

Schema = dict[str, Any]
PRIMITIVES = ("string", "integer", "number", "boolean")
# kubectl wraps descriptions to this many columns, indented by 4 (fields' by 4 more each level).
WRAP = 80


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("explain", help="describe the fields of a kind",
                       description="Describe a kind or one of its fields (KIND.FIELD.PATH), from the API server's "
                                   "OpenAPI documents.")
    p.add_argument("path", metavar="KIND[.FIELD...]")
    p.add_argument("--recursive", action="store_true", help="list every field below, without descriptions")
    p.set_defaults(func=command)


class Document:
    """One group-version's OpenAPI document: its schemas, with `$ref`s followed."""

    def __init__(self, doc: Schema):
        self.schemas: dict[str, Schema] = (doc.get("components") or {}).get("schemas") or {}

    def of_kind(self, res: Resource) -> Schema | None:
        for schema in self.schemas.values():
            for gvk in schema.get("x-kubernetes-group-version-kind") or []:
                if (gvk.get("group", ""), gvk.get("version"), gvk.get("kind")) == (res.group, res.version, res.kind):
                    return schema
        return None

    def resolve(self, schema: Schema) -> Schema:
        """The schema a field stands for: its `$ref` (or single allOf) followed, its items for a list."""
        for _ in range(32):  # a bound on reference chains
            if "$ref" in schema:
                schema = self.schemas.get(str(schema["$ref"]).rsplit("/", 1)[-1]) or {}
            elif len(schema.get("allOf") or []) == 1 and not schema.get("properties"):
                schema = schema["allOf"][0]
            elif isinstance(schema.get("items"), dict):
                schema = schema["items"]
            else:
                break
        return schema


def type_name(schema: Schema, doc: Document) -> str:
    """kubectl's guess of a field's type: `string`, `[]Container`, `map[string]string`, `ObjectMeta`, `Object`
    (a reference to a plain string or number schema is named by that type, as kubectl does)."""
    if isinstance(schema.get("items"), dict):
        return "[]" + type_name(schema["items"], doc)
    if isinstance(schema.get("additionalProperties"), dict):
        return "map[string]" + type_name(schema["additionalProperties"], doc)
    if len(schema.get("allOf") or []) == 1 and not schema.get("properties"):
        return type_name(schema["allOf"][0], doc)
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        target_type = (doc.schemas.get(name) or {}).get("type")
        if target_type in PRIMITIVES:
            return str(target_type)
        return name.rsplit(".", 1)[-1] or "Object"
    if schema.get("type"):
        return "Object" if schema["type"] == "object" else str(schema["type"])
    if schema.get("x-kubernetes-int-or-string"):
        return "IntOrString"
    return "Object"


def _wrap(text: str, indent: int) -> str:
    pad = " " * indent
    lines = []
    for para in text.splitlines() or [""]:
        lines.extend(textwrap.wrap(para, WRAP - indent) or [""])
    return "".join(f"{pad}{line}\n" for line in lines)


def fields(doc: Document, schema: Schema, recursive: bool, depth: int = 1, seen: tuple[str, ...] = ()) -> str:
    out = []
    props: dict[str, Schema] = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    for name in sorted(props):
        field = props[name]
        pad = "  " * depth
        out.append(f"{pad}{name}\t<{type_name(field, doc)}>{' -required-' if name in required else ''}\n")
        if recursive:
            ref = str(field.get("$ref") or (field.get("items") or {}).get("$ref") or "")
            if ref not in seen or not ref:  # a schema inside itself (JSONSchemaProps) is listed once
                out.append(fields(doc, doc.resolve(field), True, depth + 1, (*seen, ref)))
        else:
            description = field.get("description") or ""
            out.append(_wrap(description, 4) if description else "    <no description>\n")
            out.append("\n")
    return "".join(out)


def explain(doc: Document, res: Resource, path: list[str], recursive: bool) -> str:
    root = doc.of_kind(res)
    if root is None:
        raise CommandError(f"couldn't find resource for \"{res.group + '/' if res.group else ''}{res.version}, "
                           f"Kind={res.kind}\"")
    head = ((f"GROUP:      {res.group}\n" if res.group else "")
            + f"KIND:       {res.kind}\nVERSION:    {res.version}\n\n")
    field, schema = None, root
    for name in path:
        props = doc.resolve(schema).get("properties") or {}
        if name not in props:
            sys.stdout.write(head)
            raise CommandError(f'field "{name}" does not exist')
        field, schema = props[name], props[name]
    resolved = doc.resolve(schema)
    description = str((field or root).get("description") or "")
    out = [head]
    if field is not None:
        out.append(f"FIELD: {path[-1]} <{type_name(field, doc)}>\n\n\nDESCRIPTION:\n")
        out.append(_wrap(description, 4) + "    \n" if description else "    <empty>\n")
    else:
        out.append("DESCRIPTION:\n" + (_wrap(description, 4) + "    \n" if description else "    <empty>\n"))
    if resolved.get("properties"):
        out.append("FIELDS:\n" + fields(doc, resolved, recursive))
    out.append("\n")
    return "".join(out)


def command(args: argparse.Namespace) -> int:
    kind, *path = args.path.split(".")
    if not kind or any(not p for p in path):
        raise CommandError(f"invalid field path {args.path!r}: expected KIND[.FIELD...], e.g. pods.spec.containers")
    target = parse_targets([kind], learn=lambda: learn_custom_kinds_now(args))[0]

    def show(conn: Connection) -> int:
        res = target.res
        key = f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"
        index = conn.api.request("GET", "/openapi/v3")
        entry = ((index or {}).get("paths") or {}).get(key)
        if not entry:
            raise CommandError(f"the server has no OpenAPI document for {key}")
        url = str(entry.get("serverRelativeURL") or f"/openapi/v3/{key}")
        path_part, _, query = url.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        document = Document(conn.api.request("GET", path_part, params=params))
        sys.stdout.write(explain(document, res, path, args.recursive))
        return 0
    return call(args, show)
