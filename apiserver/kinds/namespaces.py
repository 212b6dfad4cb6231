"""Namespace and Node: the cluster-scoped kinds of the core group."""
from __future__ import annotations

import ipaddress
from typing import Any

from pklib import validation as v
from pklib.api.wellknown import DEFAULT_NAMESPACE, PUBLIC_NAMESPACE, SYSTEM_NAMESPACE

from .base import KindStrategy
from .fields import Cause, Path, duplicate, forbidden, invalid, one_of
from .meta import as_dict, as_list
from .podspec import TAINT_EFFECTS

UNDELETABLE_NAMESPACES = (DEFAULT_NAMESPACE, SYSTEM_NAMESPACE, PUBLIC_NAMESPACE)
_CIDR_ERROR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


class NamespaceStrategy(KindStrategy):
    """A namespace is deleted in two steps: DELETE marks it Terminating, the namespace controller
    empties it and clears spec.finalizers through /finalize, and only then is it removed."""
    kind = "Namespace"
    namespaced = False
    field_labels = ("status.phase",)

    def prepare_for_create(self, obj: dict[str, Any], status_subresource: bool) -> None:
        obj["status"] = {"phase": "Active"}  # spec.finalizers: apply_defaults

    def prepare_for_update(self, obj: dict[str, Any], old: dict[str, Any]) -> None:
        # spec.finalizers changes only through /finalize.
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec["finalizers"] = list(as_dict(old.get("spec")).get("finalizers") or [])

    def delete_refusal(self, obj: dict[str, Any]) -> str | None:
        # Kubernetes' NamespaceLifecycle admission: the namespaces the cluster itself lives in stay
        if as_dict(obj.get("metadata")).get("name") in UNDELETABLE_NAMESPACES:
            return "this namespace may not be deleted"
        return None

    def prepare_for_delete(self, obj: dict[str, Any]) -> None:
        obj.setdefault("status", {})["phase"] = "Terminating"

    def finished_deleting(self, obj: dict[str, Any]) -> bool:
        return super().finished_deleting(obj) and not as_dict(obj.get("spec")).get("finalizers")

    def name_errors(self, name: str) -> list[str]:
        return v.is_dns1123_label(name)

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("finalizers", ["kubernetes"])
        status = obj.setdefault("status", {})
        if isinstance(status, dict):
            status.setdefault("phase", "Active")

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        path = Path("spec").child("finalizers")
        causes: list[Cause] = []
        for i, f in enumerate(as_list(as_dict(obj.get("spec")).get("finalizers"))):
            causes += [invalid(path.index(i), f, e) for e in v.is_qualified_name(f)]
        causes += one_of(Path("status").child("phase"), as_dict(obj.get("status")).get("phase"),
                         ("Active", "Terminating"))
        return causes


NODE_INFO_FIELDS = ("machineID", "systemUUID", "bootID", "kernelVersion", "osImage", "containerRuntimeVersion",
                    "kubeletVersion", "kubeProxyVersion", "operatingSystem", "architecture")


class NodeStrategy(KindStrategy):
    kind = "Node"
    namespaced = False
    field_labels = ("spec.unschedulable",)

    def prepare_for_create(self, obj: dict[str, Any], status_subresource: bool) -> None:
        return None  # kubelets register their node with its status

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        # Kubernetes always serializes every NodeSystemInfo field (strict clients require them): a node agent
        # that leaves one out (a hollow node has no kube-proxy) reads back with "".
        info = as_dict(obj.get("status")).get("nodeInfo")
        if isinstance(info, dict):
            for field in NODE_INFO_FIELDS:
                info.setdefault(field, "")

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = as_dict(obj.get("spec"))
        path = Path("spec")
        causes: list[Cause] = []
        seen: set[tuple[str, str]] = set()
        for i, taint in enumerate(as_list(spec.get("taints"))):
            p = path.child("taints").index(i)
            causes += [invalid(p.child("key"), taint["key"], e) for e in v.is_qualified_name(taint["key"])]
            if taint.get("value"):
                causes += [invalid(p.child("value"), taint["value"], e) for e in v.is_label_value(taint["value"])]
            causes += one_of(p.child("effect"), taint["effect"], TAINT_EFFECTS)
            if (taint["key"], taint["effect"]) in seen:
                causes.append(duplicate(p, {"effect": taint["effect"], "key": taint["key"]}))
            seen.add((taint["key"], taint["effect"]))
        cidrs = as_list(spec.get("podCIDRs")) or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
        for i, cidr in enumerate(cidrs):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                causes.append(invalid(path.child("podCIDRs").index(i), cidr, _CIDR_ERROR))
        if old is not None:
            old_spec = as_dict(old.get("spec"))
            for field in ("podCIDR", "podCIDRs", "providerID"):
                if old_spec.get(field) and spec.get(field) != old_spec.get(field):
                    causes.append(forbidden(path.child(field),
                                            f"node updates may not change {field} except from \"\" to valid"))
        return causes
