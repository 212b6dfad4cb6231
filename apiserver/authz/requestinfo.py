"""What a request does, from its method, path and query: Kubernetes' RequestInfoFactory (requestinfo.go).

`/api/v1/namespaces/ns/pods/x/log` GET is verb get, resource pods, subresource log, name x, namespace ns;
GET of a collection is list (or watch with ?watch=true); DELETE of one is deletecollection. Everything
outside /api and /apis/<group>/<version> is a non-resource request whose verb is the lower-cased method.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

_API_PREFIXES = ("api", "apis")
_SPECIAL_VERBS = ("proxy", "watch")
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                 "DELETE": "delete"}


@dataclass(frozen=True)
class RequestInfo:
    """What a request does, read from its method and path (Kubernetes' request.RequestInfo); the authorizer's
    Attributes are these and the user."""
    verb: str
    resource_request: bool
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""
    api_prefix: str = ""


def _valid_path_segment(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "%" not in name


def _truthy(value: str) -> bool:
    return value.lower() in ("true", "1")


def parse(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    parts = path.strip("/").split("/") if path.strip("/") else []
    non_resource = RequestInfo(method.lower(), False, path=path)
    if len(parts) < 3 or parts[0] not in _API_PREFIXES:
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix != "api":
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    verb = _METHOD_VERBS.get(method.upper(), "")
    if parts[0] in _SPECIAL_VERBS:  # /api/v1/watch/..., /api/v1/proxy/...
        if len(parts) < 2:
            return non_resource
        verb, parts = parts[0], parts[1:]
    namespace = ""
    if parts[0] == "namespaces":
        if len(parts) > 1:
            namespace = parts[1]
            if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
                parts = parts[2:]
    resource = parts[0] if parts else ""
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 and verb != "proxy" else ""
    if not name and verb == "get":
        verb = "watch" if _truthy(query.get("watch", "")) else "list"
        selector = query.get("fieldSelector", "")
        # A list or watch of one object by name (client-go's informers for one object) is authorized by name.
        if selector.startswith("metadata.name=") and "," not in selector:
            wanted = selector.partition("=")[2].lstrip("=")
            if wanted and _valid_path_segment(wanted):
                name = wanted
    if not name and verb == "delete":
        verb = "deletecollection"
    return RequestInfo(verb, True, namespace, group, version, resource, subresource, name, path, prefix)
