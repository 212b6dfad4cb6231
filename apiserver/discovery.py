"""Discovery documents, built from the kind table (pklib/resources.py) so they never drift.

Pure functions; the app serves them at /version, /api, /api/v1, /apis and
/apis/<group>/<version>, which is what kubectl and client libraries read to learn
which kinds exist, their plural names, scope, verbs and short names.
"""
from __future__ import annotations

import platform
import sys
from typing import Any

from pklib.resources import Resource, all_resources, groups

MAJOR, MINOR = "1", "32"
GIT_VERSION = f"v{MAJOR}.{MINOR}.0-pkube"
_MACHINES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}

# Subresource → (kind, verbs, group, version) of the subresource's own object, as Kubernetes lists it;
# None for kind/group/version means "the parent's".
_SUBRESOURCES: dict[str, tuple[str | None, tuple[str, ...], str | None, str | None]] = {
    "status": (None, ("get", "patch", "update"), None, None),
    "scale": ("Scale", ("get", "patch", "update"), "autoscaling", "v1"),
    "binding": ("Binding", ("create",), None, None),
    "eviction": ("Eviction", ("create",), "policy", "v1"),
    "log": ("Pod", ("get",), None, None),
    "exec": ("PodExecOptions", ("create", "get"), None, None),
    "attach": ("PodAttachOptions", ("create", "get"), None, None),
    "portforward": ("PodPortForwardOptions", ("create", "get"), None, None),
    "proxy": ("NodeProxyOptions", ("get",), None, None),
    "finalize": (None, ("update",), None, None),
    "ephemeralcontainers": (None, ("get", "patch", "update"), None, None),
    "token": ("TokenRequest", ("create",), "authentication.k8s.io", "v1"),
}


def version_info() -> dict[str, str]:
    """/version: the Kubernetes version we speak (kubectl checks it for skew)."""
    machine = platform.machine()
    return {
        "major": MAJOR,
        "minor": MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "compiler": sys.implementation.name,
        "platform": f"{sys.platform}/{_MACHINES.get(machine, machine)}",
    }


# The app wires `/version` to `discovery.version()`.
version = version_info


def api_versions(server_address: str = "") -> dict[str, Any]:
    """/api: the versions of the core group."""
    doc: dict[str, Any] = {"kind": "APIVersions", "versions": groups().get("", [])}
    if server_address:
        doc["serverAddressByClientCIDRs"] = [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    return doc


def api_group_list() -> dict[str, Any]:
    """/apis: every named group with its versions; the first listed version is preferred."""
    out = []
    for name, versions in groups().items():
        if not name:
            continue
        entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        out.append({"name": name, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}


def api_group(group: str) -> dict[str, Any] | None:
    """/apis/<group>: one APIGroup, None for a group we do not serve."""
    for g in api_group_list()["groups"]:
        if g["name"] == group:
            return {"kind": "APIGroup", "apiVersion": "v1", **g}
    return None


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """/api/v1 or /apis/<group>/<version>: the resources and subresources; None if not served."""
    rows = [r for r in all_resources() if r.group == group and r.version == version]
    if not rows:
        return None
    resources: list[dict[str, Any]] = []
    for r in sorted(rows, key=lambda r: r.plural):
        resources.append(_resource(r))
        for sub in r.subresources:
            resources.append(_subresource(r, sub))
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def _resource(r: Resource) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                             "kind": r.kind, "verbs": sorted(r.verbs)}
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    return entry


def _subresource(r: Resource, sub: str) -> dict[str, Any]:
    kind, verbs, group, version = _SUBRESOURCES.get(sub, (None, ("get",), None, None))
    entry: dict[str, Any] = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                             "kind": kind or r.kind, "verbs": list(verbs)}
    if group is not None:
        entry["group"], entry["version"] = group, version
    return entry
