"""Aggregated discovery (apidiscovery.k8s.io/v2 APIGroupDiscoveryList): every group, version and resource in
one document at /api (the core group) and /apis (the named groups).

kubectl and client-go ask for it first (an Accept header naming `as=APIGroupDiscoveryList`) and fall back
to the legacy per-group-version documents otherwise, so serving it saves them one request per
group-version. Built from the same kind table as the legacy documents (pklib/resources.py).
"""
from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from pklib.resources import Resource, all_resources, groups

from .discovery import _SUBRESOURCES

VERSIONS = ("v2", "v2beta1")


def requested_version(accept: str) -> str | None:
    """The apidiscovery.k8s.io version the Accept header asks for (its first such entry), else None."""
    for media in accept.split(","):
        parts = [p.strip() for p in media.split(";")]
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if parts[0] == "application/json" and params.get("g") == "apidiscovery.k8s.io" \
                and params.get("as") == "APIGroupDiscoveryList" and params.get("v") in VERSIONS:
            return params["v"]
    return None


def _resource(r: Resource) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": sorted(r.verbs),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    subs = []
    for sub in r.subresources:
        kind, verbs, group, version = _SUBRESOURCES.get(sub, (None, ("get",), None, None))
        subs.append({"subresource": sub,
                     "responseKind": {"group": r.group if group is None else group,
                                      "version": r.version if version is None else version,
                                      "kind": kind or r.kind},
                     "verbs": list(verbs)})
    if subs:
        entry["subresources"] = subs
    return entry


def document(core: bool, version: str = "v2") -> dict[str, Any]:
    """/api (core=True: the one unnamed group) or /apis (every named group) in aggregated form."""
    items = []
    for name, versions in groups().items():
        if (name == "") != core:
            continue
        items.append({
            "metadata": {"name": name, "creationTimestamp": None},
            "versions": [{"version": v, "freshness": "Current",
                          "resources": [_resource(r) for r in sorted(all_resources(), key=lambda r: r.plural)
                                        if r.group == name and r.version == v]}
                         for v in versions],
        })
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


def response(request: web.Request, core: bool) -> web.Response | None:
    """The aggregated document if the request asks for it, else None (serve the legacy one)."""
    version = requested_version(request.headers.get("Accept", ""))
    if version is None:
        return None
    # The Content-Type names what was served; clients check it before decoding.
    return web.Response(body=orjson.dumps(document(core, version)),
                        headers={"Content-Type": f"application/json;g=apidiscovery.k8s.io;v={version};"
                                                 "as=APIGroupDiscoveryList"})
