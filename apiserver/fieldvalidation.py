"""`?fieldValidation=Strict|Warn|Ignore`: what to do about fields the kind's schema does not know.

kubectl sends `Strict` by default (our OpenAPI documents say we support the parameter, so
it skips its own client-side validation): a typo such as `replicaz` is then refused with
400 and the field named, as Kubernetes does. `Warn` (the default when the parameter is
absent, as in Kubernetes) answers with `Warning` headers, which kubectl prints; `Ignore`
says nothing. A field is unknown where the schema lists an object's properties and has no
`additionalProperties`; free-form objects (labels, annotations, data) accept any key.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiohttp import web

from pklib.resources import Resource

from . import kinds
from .status import StatusError

SCHEMA_DIR = Path(__file__).with_name("kinds") / "schemas"
DIRECTIVES = ("$patch", "$retainKeys", "$setElementOrder/", "$deleteFromPrimitiveList/")
WARNINGS = "pkube.warnings"
_VALUES = ("Strict", "Warn", "Ignore")
# Real Kubernetes fields that pkube's schemas leave out because nothing here acts on them (volume plugins
# of clouds, newer alpha/beta fields). A manifest written for Kubernetes may carry them: even under Strict
# they are let through with a warning instead of refusing the whole object.
KUBERNETES_ONLY = frozenset({
    "evictionResponders", "hostUsers", "hostnameOverride", "os", "resourceClaims", "resources", "schedulingGates",
    "schedulingGroup", "setHostnameAsFQDN", "resizePolicy", "restartPolicyRules", "volumeDevices",
    "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "ephemeral", "fc", "flexVolume",
    "flocker", "gcePersistentDisk", "gitRepo", "glusterfs", "image", "iscsi", "nfs", "photonPersistentDisk",
    "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume", "selfLink", "bindMountOptions",
    "recursiveReadOnly", "subPathExpr", "dataSource", "dataSourceRef", "volumeAttributesClassName",
    "loadBalancerSourceRanges", "trafficDistribution", "configSource", "externalID", "podPreemptionPolicy",
})


@lru_cache(maxsize=1)
def _shared() -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / "defs.json").read_text())["$defs"]


@lru_cache(maxsize=None)
def _kind_schema(kind: str, version: str = "") -> dict[str, Any] | None:
    """The kind's schema; a served version converted from the stored one has its own (`<kind>.<version>.json`)."""
    if version:
        f = SCHEMA_DIR / f"{kind.lower()}.{version}.json"
        if f.exists():
            return json.loads(f.read_text())  # type: ignore[no-any-return]
    f = SCHEMA_DIR / f"{kind.lower()}.json"
    return json.loads(f.read_text()) if f.exists() else None


def _resolve(schema: Any) -> Any:
    for _ in range(16):  # bounded: refs may chain, never loop
        if not isinstance(schema, dict) or "$ref" not in schema:
            return schema
        schema = _shared().get(schema["$ref"].rsplit("/", 1)[-1], {})
    return schema


def _walk(schema: Any, value: Any, path: str, out: list[str]) -> None:
    schema = _resolve(schema)
    if not isinstance(schema, dict):
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            if key.startswith(DIRECTIVES):
                continue
            where = f"{path}.{key}" if path else key
            if props and key in props:
                _walk(props[key], sub, where, out)
            elif isinstance(extra, dict):
                _walk(extra, sub, where, out)
            elif props and extra is None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                out.append(where)
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _walk(schema["items"], item, f"{path}[{i}]", out)


def unknown_fields(kind: str, body: Any, schema: dict[str, Any] | None = None, version: str = "") -> list[str]:
    """Dotted paths (`spec.template.spec.containers[0].imagez`) of fields the kind's schema (or `schema`, a
    custom kind's OpenAPI schema) does not have."""
    schema = schema or _kind_schema(kind, version)
    out: list[str] = []
    if schema is not None:
        # status is the system's: writes to the main resource drop it, so what a client echoes back
        # there (`kubectl get -o yaml | kubectl replace -f -`) is not judged.
        _walk(schema, {k: v for k, v in body.items() if k != "status"}, "", out)
    return out


def check(request: web.Request, res: Resource, body: Any) -> None:
    """Refuse (Strict) or note (Warn) unknown fields of a request body: an object or a merge-style patch."""
    mode = request.query.get("fieldValidation") or "Warn"
    if mode not in _VALUES:
        raise StatusError(400, "BadRequest", f'fieldValidation: Unsupported value: "{mode}": supported values: '
                                             '"Ignore", "Strict", "Warn"')
    if mode == "Ignore" or not isinstance(body, dict):
        return
    custom = kinds.strategy_for(res).openapi_schema() if res.custom else None
    if res.custom:
        if custom is None:
            return
        # A custom kind's metadata is ObjectMeta like any kind's: a typo there is as unknown.
        custom.setdefault("properties", {})["metadata"] = {"$ref": "defs.json#/$defs/ObjectMeta"}
    unknown = unknown_fields(res.kind, body, custom, res.version)
    typos = [f for f in unknown if f.rsplit(".", 1)[-1] not in KUBERNETES_ONLY]
    if mode == "Strict" and typos:
        listed = ", ".join(f'unknown field "{f}"' for f in typos)
        raise StatusError(400, "BadRequest", f'{res.kind} in version "{res.version}" cannot be handled as a '
                                             f"{res.kind}: strict decoding error: {listed}")
    request[WARNINGS] = [f'unknown field "{f}"' if f in typos else f'field "{f}" is not supported by pkube'
                         for f in unknown]


MAX_WARNINGS = 20  # Kubernetes also bounds its warning headers (in bytes); a body may name thousands of fields
MAX_WARNING_TEXT = 256
_CONTROL = dict.fromkeys([*range(0x20), 0x7F], "?")


async def add_warning_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: Warning headers in the form clients print (`299 - "text"`).

    The texts quote field names from the body: control characters (a header injection, which aiohttp
    refuses by dropping the connection) become `?`, long names are cut, and the count is bounded."""
    texts = request.get(WARNINGS) or []
    if len(texts) > MAX_WARNINGS:
        texts = [*texts[:MAX_WARNINGS - 1], f"and {len(texts) - MAX_WARNINGS + 1} more warnings"]
    for text in texts:
        text = text.translate(_CONTROL)
        if len(text) > MAX_WARNING_TEXT:
            text = text[:MAX_WARNING_TEXT] + "..."
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')  # RFC 7234 quoted-string
        response.headers.add("Warning", f'299 - "{quoted}"')
