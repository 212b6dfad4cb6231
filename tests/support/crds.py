"""CustomResourceDefinitions for tests: a sample CRD (a `Widget` with replicas, a size enum, printer columns,
status and scale subresources), its kind-table row, and creating it until Established."""
from __future__ import annotations

import copy
from typing import Any

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import CRDS, Resource
from tests.util import unique, wait_for

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "string", "enum": ["small", "large"]},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "color": {"type": "string", "default": "blue", "maxLength": 10},
                "port": {"x-kubernetes-int-or-string": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "weight": {"type": "integer", "default": 5}}}},
            },
        },
        "status": {
            "type": "object",
            "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"},
                           "phase": {"type": "string"}},
        },
    },
}
COLUMNS = [
    {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def widget_crd(group: str | None = None, *, scope: str = "Namespaced", versions: tuple[str, ...] = ("v1",),
               storage: str = "v1", plural: str = "widgets", kind: str = "Widget",
               short_names: tuple[str, ...] = ("wd",), singular: str = "") -> dict[str, Any]:
    group = group or f"{unique('g')}.example.com"
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "scope": scope,
            "names": {"plural": plural, "singular": singular or kind.lower(), "kind": kind, "shortNames": list(short_names),
                      "categories": ["pktest"]},  # not "all": other tests `get all`
            "versions": [{"name": v, "served": True, "storage": v == storage,
                          "schema": {"openAPIV3Schema": copy.deepcopy(SCHEMA)},
                          "subresources": {"status": {}, "scale": {
                              "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                              "labelSelectorPath": ".status.selector"}},
                          "additionalPrinterColumns": copy.deepcopy(COLUMNS)} for v in versions],
        },
    }


def row(crd: dict[str, Any], version: str | None = None) -> Resource:
    """The kind-table row clients use for the CRD's objects (at `version`, else the first one)."""
    spec = crd["spec"]
    subs = tuple(s for s in ("status", "scale") if s in (spec["versions"][0].get("subresources") or {}))
    return Resource(spec["group"], version or spec["versions"][0]["name"], spec["names"]["kind"],
                    spec["names"]["plural"], spec["scope"] == "Namespaced", tuple(spec["names"].get("shortNames", ())),
                    subs, list_kind=spec["names"]["kind"] + "List", custom=True)


async def established(client: Client, name: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        crd = await client.get(CRDS, name)
        conds = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
        return crd if conds.get("Established") == "True" else None
    return await wait_for(check, 15, message=f"CRD {name} Established")  # type: ignore[no-any-return]


async def create_crd(client: Client, crd: dict[str, Any]) -> dict[str, Any]:
    await client.create(CRDS, crd)
    return await established(client, crd["metadata"]["name"])


def widget(name: str, namespace: str, api_version: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "Widget", "metadata": {"name": name, "namespace": namespace},
            "spec": {"size": "small", **spec}}


async def delete_crd(client: Client, name: str) -> None:
    """Delete a CRD and wait until it is gone (its objects deleted, its kind no longer served), so that later
    tests of the session do not meet its kind."""
    try:
        await client.delete(CRDS, name)
    except ApiError as e:
        if e.code == 404:
            return
        raise

    async def gone() -> bool:
        try:
            await client.get(CRDS, name)
        except ApiError as e:
            if e.code == 404:
                return True
            raise
        return False

    await wait_for(gone, 30, message=f"CRD {name} deleted")
