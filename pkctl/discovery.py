"""The server's custom kinds (CustomResourceDefinitions), learned from its aggregated discovery document when a
command names a kind that is not built in, so that `pkctl get widgets`, `describe`, `delete` and `apply -f` work
on them as kubectl's discovery makes them work."""
from __future__ import annotations

import argparse
from typing import Any

from pklib.errors import ApiError, ConnectionFailed
from pklib.resources import RESOURCES, Resource, for_kind, set_custom
from pklib.syncclient import SyncClient

from .connect import connect

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
_BUILTIN_GROUPS = frozenset(r.group for r in RESOURCES)


def rows(document: dict[str, Any]) -> list[Resource]:
    """Kind-table rows of the named groups that are not built in, from an APIGroupDiscoveryList."""
    out: list[Resource] = []
    for group in document.get("items") or []:
        name = (group.get("metadata") or {}).get("name") or ""
        if name in _BUILTIN_GROUPS:
            continue
        for version in group.get("versions") or []:
            for r in version.get("resources") or []:
                kind = (r.get("responseKind") or {}).get("kind") or ""
                if not kind or not r.get("resource"):
                    continue
                out.append(Resource(
                    name, version.get("version") or "", kind, r["resource"], r.get("scope") == "Namespaced",
                    tuple(r.get("shortNames") or ()), tuple(s.get("subresource", "") for s in r.get("subresources") or []),
                    tuple(r.get("verbs") or ()), tuple(r.get("categories") or ()), f"{kind}List",
                    r.get("singularResource") or "", True))
    return out


def learn_custom_kinds(api: SyncClient) -> None:
    """Register the server's custom kinds in this process's kind table (nothing if the server cannot say)."""
    try:
        document = api.request("GET", "/apis", headers={"Accept": AGGREGATED})
    except (ApiError, ConnectionFailed):
        return
    if isinstance(document, dict) and document.get("kind") == "APIGroupDiscoveryList":
        set_custom(rows(document))


def learn_custom_kinds_now(args: argparse.Namespace) -> None:
    """`learn_custom_kinds` for commands that resolve their kinds before connecting."""
    with connect(args).api as api:
        learn_custom_kinds(api)


def learn_kinds_of(api: SyncClient, objects: list[dict[str, Any]]) -> None:
    """Learn the custom kinds if one of `objects` (manifests) is of a kind that is not built in."""
    if any(for_kind(str(o.get("apiVersion")), str(o.get("kind"))) is None for o in objects):
        learn_custom_kinds(api)
