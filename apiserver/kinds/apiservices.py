"""apiregistration.k8s.io/v1 APIService: a group version served by this API server (Local) or by an aggregated
API server behind a Service.

pkube registers its own group versions as Local APIServices at startup (Kubernetes' autoregister controller);
their status is always Available. A user's APIService naming a Service is stored and its availability written by
the apiservice controller (controllers/apiservice.py); pkube does not proxy to aggregated API servers.
"""
from __future__ import annotations

from typing import Any

from pklib import resources
from pklib import validation as v
from pklib.api.apiservices import availability
from pklib.api.timefmt import now_rfc3339

from .base import KindStrategy
from .fields import Cause, Path, invalid, required
from .meta import as_dict

# Kubernetes' group priorities (kube-apiserver's apiVersionPriorities), for the groups pkube may serve.
_GROUP_PRIORITY = {"": 18000, "apiregistration.k8s.io": 17900, "apps": 17800, "events.k8s.io": 17750,
                   "authentication.k8s.io": 17700, "authorization.k8s.io": 17600, "autoscaling": 17500,
                   "batch": 17400, "certificates.k8s.io": 17300, "networking.k8s.io": 17200, "policy": 17100,
                   "rbac.authorization.k8s.io": 17000, "storage.k8s.io": 16800, "admissionregistration.k8s.io": 16700,
                   "apiextensions.k8s.io": 16700, "scheduling.k8s.io": 16600, "coordination.k8s.io": 16500,
                   "node.k8s.io": 16300, "discovery.k8s.io": 16200, "flowcontrol.apiserver.k8s.io": 16100,
                   "metrics.k8s.io": 100}


def local_status(apiservice: dict[str, Any]) -> dict[str, Any]:
    status, reason, message = availability(apiservice, None, None)
    return {"conditions": [{"type": "Available", "status": status, "lastTransitionTime": now_rfc3339(),
                            "reason": reason, "message": message}]}


def local_apiservices() -> list[dict[str, Any]]:
    """One Local APIService per built-in group version, named `version.group` (`v1.` for the core group)."""
    out = []
    for group, versions in resources.groups().items():
        for version in versions:
            out.append({"apiVersion": resources.APISERVICES.api_version, "kind": "APIService",
                        "metadata": {"name": f"{version}.{group}",
                                     "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                        "spec": {"group": group, "version": version,
                                 "groupPriorityMinimum": _GROUP_PRIORITY.get(group, 1000), "versionPriority": 15}})
    return out


class APIServiceStrategy(KindStrategy):
    kind = "APIService"
    namespaced = False

    def name_errors(self, name: str) -> list[str]:
        # Only a valid path segment (`v1.` names the core group); validate_object requires version.group.
        if name in (".", ".."):
            return [f"may not be '{name}'"]
        return [f"may not contain '{c}'" for c in ("/", "%") if c in name]

    def prepare_for_create(self, obj: dict[str, Any], status_subresource: bool) -> None:
        # A group version without a Service is served here: always available (the availability controller's
        # answer, given at once).
        obj["status"] = local_status(obj) if not as_dict(obj.get("spec")).get("service") else {}

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = as_dict(obj.get("spec"))
        path = Path("spec")
        causes: list[Cause] = []
        group, version = spec.get("group") or "", spec.get("version") or ""
        wanted = f"{version}.{group}"
        name = as_dict(obj.get("metadata")).get("name")
        if name != wanted:
            causes.append(invalid("metadata.name", name, f'must be `spec.version+"."+spec.group`: "{wanted}"'))
        if not version:
            causes.append(required(path.child("version")))
        else:
            causes += [invalid(path.child("version"), version, e) for e in v.is_dns1035_label(version)]
        if group:
            causes += [invalid(path.child("group"), group, e) for e in v.is_dns1123_subdomain(group)]
        minimum, priority = int(spec["groupPriorityMinimum"]), int(spec["versionPriority"])
        if not 0 < minimum <= 20000:
            causes.append(invalid(path.child("groupPriorityMinimum"), minimum,
                                  "must be positive and less than 20000"))
        if not 0 < priority <= 1000:
            causes.append(invalid(path.child("versionPriority"), priority, "must be positive and less than 1000"))
        if spec.get("insecureSkipTLSVerify") and spec.get("caBundle"):
            causes.append(invalid(path.child("insecureSkipTLSVerify"), True, "may not be true if caBundle is present"))
        service = as_dict(spec.get("service"))
        if spec.get("service"):
            if not service.get("namespace"):
                causes.append(required(path.child("service").child("namespace")))
            if not service.get("name"):
                causes.append(required(path.child("service").child("name")))
            port = service.get("port")
            if port is not None and not 1 <= port <= 65535:
                causes.append(invalid(path.child("service").child("port"), port,
                                      "must be a valid port number between 1 and 65535, inclusive"))
        return causes

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        service = as_dict(obj.get("spec")).get("service")
        if isinstance(service, dict):
            service.setdefault("port", 443)
