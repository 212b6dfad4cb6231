"""OpenAPI v3 documents of our kinds, generated from the JSON Schemas in kinds/schemas.

kubectl reads them to decide three things: whether the server validates fields itself
(a PATCH operation for the kind with a `fieldValidation` parameter: then kubectl skips
client-side validation and sends `?fieldValidation=Strict`), how to compute strategic
merge patches for `kubectl apply` (`x-kubernetes-patch-merge-key`/`-strategy` on lists,
taken from the same merge-key table the server patches with), and `kubectl explain`.

Served as Kubernetes does: `/openapi/v3` is an index of group-versions, each pointing at
`/openapi/v3/<api/v1 | apis/group/version>?hash=...`, the document itself.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from pklib import patch as patching
from pklib.resources import Resource, all_resources

from . import kinds as kind_strategies
from .status import StatusError

SCHEMA_DIR = Path(__file__).with_name("kinds") / "schemas"
_REF_PREFIX = "#/components/schemas/"
_SHARED = "io.k8s.pkube.shared."  # component names of the shared $defs
_DROP = {"$schema", "$id", "title", "$defs"}


def _group_short(group: str) -> str:
    return group.split(".")[0] if group else "core"


def component_name(res: Resource) -> str:
    """Kubernetes-style definition names: io.k8s.api.apps.v1.Deployment."""
    return f"io.k8s.api.{_group_short(res.group)}.{res.version}.{res.kind}"


def _gvk(res: Resource) -> dict[str, str]:
    return {"group": res.group, "version": res.version, "kind": res.kind}


@lru_cache(maxsize=1)
def _sources() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(kind title → schema document, shared $defs)."""
    kinds: dict[str, dict[str, Any]] = {}
    for f in sorted(SCHEMA_DIR.glob("*.json")):
        doc = json.loads(f.read_text())
        if f.name != "defs.json":
            kinds[doc["title"]] = doc
    shared = json.loads((SCHEMA_DIR / "defs.json").read_text())["$defs"]
    return kinds, shared


def _patch_extensions(path: tuple[str, ...], is_list: bool) -> dict[str, str]:
    """The strategic-merge metadata of the field at `path`, from the server's own merge-key table."""
    ext: dict[str, str] = {}
    strategies: list[str] = []
    if is_list:
        key = patching.merge_key_for(path)
        if key is not None:
            strategies.append("merge")
            if key != patching.PRIMITIVE_MERGE:
                ext["x-kubernetes-patch-merge-key"] = key
    if path in patching.RETAIN_KEYS_PATHS:
        strategies.append("retainKeys")
    if strategies:
        ext["x-kubernetes-patch-strategy"] = ",".join(strategies)
    return ext


class _Converter:
    """JSON Schema (2020-12, our subset) → OpenAPI 3.0 schema objects, collecting the shared components."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}

    def convert(self, node: Any, path: tuple[str, ...]) -> Any:
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            return {"$ref": _REF_PREFIX + self._shared(ref.rsplit("/", 1)[-1], path)}
        out: dict[str, Any] = {}
        types = node.get("type")
        if isinstance(types, list):
            concrete = [t for t in types if t != "null"]
            if len(concrete) == 1:
                out["type"] = concrete[0]
            else:
                out["x-kubernetes-int-or-string"] = True  # intOrString, quantities
            if "null" in types:
                out["nullable"] = True
        elif types is not None:
            out["type"] = types
        for k, v in node.items():
            if k in _DROP or k in ("type", "$ref"):
                continue
            if k == "properties":
                out[k] = {name: self._property(sub, path + (name,)) for name, sub in v.items()}
            elif k == "items":
                out[k] = self.convert(v, path)  # list items share the list's path in the merge-key table
            elif k == "additionalProperties":
                out[k] = self.convert(v, path + ("*",)) if isinstance(v, dict) else v
            elif k in ("allOf", "anyOf", "oneOf"):
                out[k] = [self.convert(s, path) for s in v]
            else:
                out[k] = v
        return out

    def _property(self, sub: Any, path: tuple[str, ...]) -> Any:
        converted = self.convert(sub, path)
        is_list = isinstance(sub, dict) and sub.get("type") == "array"
        ext = _patch_extensions(path, is_list)
        if not ext:
            return converted
        if "$ref" in converted:
            # Extensions beside a $ref are ignored by OpenAPI 3.0 readers: wrap it the way Kubernetes does.
            return {"allOf": [converted], **ext}
        return {**converted, **ext}

    def _shared(self, name: str, path: tuple[str, ...]) -> str:
        """Convert a shared definition once; its merge keys are the same wherever a PodSpec sits."""
        full = _SHARED + name
        if full not in self.components:
            self.components[full] = {}  # placeholder: definitions refer to each other
            _, shared = _sources()
            self.components[full] = self.convert(shared[name], path)
        return full


def _kind_schema(conv: _Converter, res: Resource) -> dict[str, Any] | None:
    if res.custom:
        custom = kind_strategies.strategy_for(res).openapi_schema()
        if custom is not None:
            custom["x-kubernetes-group-version-kind"] = [_gvk(res)]
        return custom
    kinds, _ = _sources()
    doc = kinds.get(f"{res.kind} {res.api_version}") or kinds.get(res.kind)  # a served version of its own
    if doc is None:
        return None
    schema = conv.convert(doc, ())
    schema.setdefault("type", "object")
    schema["description"] = f"{res.kind} ({res.api_version}): {doc.get('title', res.kind)}"
    schema["x-kubernetes-group-version-kind"] = [_gvk(res)]
    return schema


def _list_schema(res: Resource) -> dict[str, Any]:
    return {"type": "object", "description": f"{res.list_kind} is a list of {res.kind}.",
            "required": ["items"],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "metadata": {"type": "object"},
                           "items": {"type": "array", "items": {"$ref": _REF_PREFIX + component_name(res)}}},
            "x-kubernetes-group-version-kind": [dict(_gvk(res), kind=res.list_kind)]}


def _param(name: str, where: str = "query", required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": {"type": "string"}, "uniqueItems": True}


_BODY_TYPES = ("application/json", "application/yaml")
_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json", "application/apply-patch+yaml")
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")


def _operation(res: Resource, action: str, op_id: str, body: tuple[str, ...] = (),
               extra: tuple[str, ...] = ()) -> dict[str, Any]:
    ref = {"$ref": _REF_PREFIX + (component_name(res) if action != "list" else component_name(res) + "List")}
    op: dict[str, Any] = {
        "operationId": op_id,
        "parameters": [_param(p) for p in extra],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(res),
    }
    if body:
        schema = {"type": "object"} if action == "patch" else ref
        op["requestBody"] = {"content": {t: {"schema": schema} for t in body}, "required": True}
    return op


def _paths(res: Resource) -> dict[str, dict[str, Any]]:
    base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    scope = f"{base}/namespaces/{{namespace}}" if res.namespaced else base
    scope_params = [_param("namespace", "path", True)] if res.namespaced else []
    name = res.kind
    collection = {
        "parameters": scope_params,
        "get": _operation(res, "list", f"list{name}", extra=("labelSelector", "fieldSelector", "limit",
                                                              "continue", "resourceVersion", "watch",
                                                              "timeoutSeconds")),
        "post": _operation(res, "post", f"create{name}", _BODY_TYPES, _WRITE_PARAMS),
        "delete": _operation(res, "deletecollection", f"deleteCollection{name}",
                             extra=("labelSelector", "fieldSelector", "propagationPolicy")),
    }
    if res.verbs == ("create",):  # a virtual kind (access reviews): create only, nothing to read back
        return {f"{scope}/{res.plural}": {"parameters": scope_params, "post": collection["post"]}}
    item_params = [*scope_params, _param("name", "path", True)]
    item = {
        "parameters": item_params,
        "get": _operation(res, "get", f"read{name}"),
        "put": _operation(res, "put", f"replace{name}", _BODY_TYPES, _WRITE_PARAMS),
        "patch": _operation(res, "patch", f"patch{name}", _PATCH_TYPES, (*_WRITE_PARAMS, "force")),
        "delete": _operation(res, "delete", f"delete{name}", extra=("gracePeriodSeconds", "propagationPolicy",
                                                                    "dryRun")),
    }
    out = {f"{scope}/{res.plural}": collection, f"{scope}/{res.plural}/{{name}}": item}
    if "status" in res.subresources:
        out[f"{scope}/{res.plural}/{{name}}/status"] = {
            "parameters": item_params,
            "get": _operation(res, "get", f"read{name}Status"),
            "put": _operation(res, "put", f"replace{name}Status", _BODY_TYPES, _WRITE_PARAMS),
            "patch": _operation(res, "patch", f"patch{name}Status", _PATCH_TYPES, (*_WRITE_PARAMS, "force")),
        }
    return out


def gv_key(res: Resource) -> str:
    return f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"


def _documents() -> dict[str, bytes]:
    """gv key (api/v1, apis/apps/v1) → the serialized OpenAPI 3.0 document; rebuilt when custom kinds change."""
    return _built(kind_strategies.custom_generation())


@lru_cache(maxsize=2)
def _built(generation: int) -> dict[str, bytes]:
    by_gv: dict[str, list[Resource]] = {}
    for res in all_resources():
        by_gv.setdefault(gv_key(res), []).append(res)
    docs: dict[str, bytes] = {}
    for key, rows in by_gv.items():
        conv = _Converter()
        schemas: dict[str, Any] = {}
        paths: dict[str, Any] = {}
        for res in rows:
            kind_schema = _kind_schema(conv, res)
            if kind_schema is None:
                kind_schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                               "x-kubernetes-group-version-kind": [_gvk(res)]}
            schemas[component_name(res)] = kind_schema
            schemas[component_name(res) + "List"] = _list_schema(res)
            paths.update(_paths(res))
        schemas.update(conv.components)
        doc = {"openapi": "3.0.0", "info": {"title": "pkube", "version": "v1.32.0"},
               "paths": paths, "components": {"schemas": schemas}}
        docs[key] = orjson.dumps(doc)
    return docs


def _hash(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest().upper()


def index() -> dict[str, Any]:
    """/openapi/v3: where each group-version's document is, with a content hash for caching."""
    return {"paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={_hash(data)}"}
                      for key, data in _documents().items()}}


def routes() -> list[web.RouteDef]:
    async def root(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(index()), content_type="application/json")

    async def group_version(request: web.Request) -> web.Response:
        data = _documents().get(request.match_info["gv"])
        if data is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        # A URL carrying the current hash never changes: let clients cache it (kubectl does, on disk).
        immutable = request.query.get("hash") == _hash(data)
        headers = {"Cache-Control": "public, immutable" if immutable else "no-cache, private",
                   "Etag": f'"{_hash(data)}"'}
        return web.Response(body=data, content_type="application/json", headers=headers)

    async def v2(_: web.Request) -> web.Response:
        return web.Response(body=_v2_document(), content_type=OPENAPI_V2_PROTOBUF)

    return [web.get("/openapi/v3", root), web.get("/openapi/v3/{gv:.+}", group_version),
            web.get("/openapi/v2", v2)]


OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _pb_string(number: int, text: str) -> bytes:
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data


def _v2_document() -> bytes:
    """A minimal OpenAPI v2 document (gnostic protobuf, the only form kubectl reads) without definitions.

    kubectl falls back to v2 only where v3 cannot answer (e.g. validating a `kind: List` file); with
    no definitions it leaves the checking to the server, which validates every object anyway."""
    info = _pb_string(1, "pkube") + _pb_string(2, "v1.32.0")  # Info: title = 1, version = 2
    return _pb_string(1, "2.0") + bytes([2 << 3 | 2, len(info)]) + info
