"""Pod: PodSpec defaults and rules, plus what may change on a running Pod."""
from __future__ import annotations

import copy
from typing import Any

from pklib import validation as v
from pklib.api.qos import qos_class

from .base import KindStrategy, Rollback, nothing
from .fields import Cause, Path, forbidden, invalid
from .meta import as_dict, as_list
from .podspec import default_pod_spec, validate_pod_spec
from .priorityclasses import resolve_pod_priority

# Kubernetes' own message, so that users recognise it.
POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")
DEFAULT_GRACE = 30  # seconds, when neither the request nor spec.terminationGracePeriodSeconds gives one


class PodStrategy(KindStrategy):
    kind = "Pod"
    field_labels = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                    "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName")

    def prepare_for_create(self, obj: dict[str, Any], status_subresource: bool) -> None:
        obj["status"] = {"phase": "Pending"}

    def check_graceful_delete(self, obj: dict[str, Any], requested: int | None) -> int | None:
        """A pod on a node is kept for its grace period, until the kubelet has stopped its containers
        and deletes it with a grace period of 0; a grace period can only be shortened."""
        spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            grace = 0  # nothing running to stop: it goes at once
        elif requested is not None:
            grace = requested
        else:
            configured = spec.get("terminationGracePeriodSeconds")
            grace = DEFAULT_GRACE if configured is None else int(configured)
        current = as_dict(obj.get("metadata")).get("deletionGracePeriodSeconds")
        return grace if current is None else min(grace, int(current))

    def finished_deleting(self, obj: dict[str, Any]) -> bool:
        # A positive grace period: the kubelet still has to stop the containers.
        return super().finished_deleting(obj) and not (
            as_dict(obj.get("metadata")).get("deletionGracePeriodSeconds") or 0) > 0

    def prepare_for_update(self, obj: dict[str, Any], old: dict[str, Any]) -> None:
        """Ephemeral containers change only through pods/ephemeralcontainers: a pod update keeps the stored ones."""
        spec, old_spec = obj.get("spec"), as_dict(old.get("spec"))
        if isinstance(spec, dict):
            if "ephemeralContainers" in old_spec:
                spec["ephemeralContainers"] = copy.deepcopy(old_spec["ephemeralContainers"])
            else:
                spec.pop("ephemeralContainers", None)

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        default_pod_spec(spec, is_pod=True)
        status = obj.get("status")
        if isinstance(spec, dict) and isinstance(status, dict):
            status.setdefault("qosClass", qos_class(spec))

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        if old is not None:
            # Most writes to a pod (status, labels, binding) leave the spec as stored, where it already passed
            # these rules: an unchanged spec passes them again, and a binding's only new field is nodeName.
            spec, old_spec = obj["spec"], as_dict(old.get("spec"))
            if spec == old_spec:
                return []
            node = spec.get("nodeName")
            if node and not old_spec.get("nodeName") and len(spec) == len(old_spec) + 1 and all(
                    k == "nodeName" or k in old_spec and old_spec[k] == x for k, x in spec.items()):
                return validate_node_name(node)
        causes = validate_pod_spec(obj["spec"], Path("spec"))
        if old is None and obj["spec"].get("ephemeralContainers"):
            causes.append(forbidden(Path("spec").child("ephemeralContainers"), "cannot be set on create"))
        if old is not None:
            causes += validate_pod_update(obj["spec"], as_dict(old.get("spec")))
        return causes

    async def begin_create(self, obj: dict[str, Any], storage: Any) -> Rollback:
        await resolve_pod_priority(obj, storage)  # Kubernetes' Priority admission
        return nothing


def validate_node_name(node: str) -> list[Cause]:
    """What a binding may set spec.nodeName to (a node's name: a DNS-1123 subdomain)."""
    return [invalid(Path("spec").child("nodeName"), node, e) for e in v.is_dns1123_subdomain(node)]


def validate_pod_update(new: dict[str, Any], old: dict[str, Any]) -> list[Cause]:
    """Only images, a shorter activeDeadlineSeconds and added tolerations may change on a Pod.

    The binding subresource sets spec.nodeName through an update too, so an unset nodeName
    may be set once."""
    causes: list[Cause] = []
    path = Path("spec")
    munged = copy.deepcopy(new)
    for field in ("containers", "initContainers"):
        old_list, new_list = as_list(old.get(field)), as_list(munged.get(field))
        if len(old_list) == len(new_list):
            for o, n in zip(old_list, new_list):
                if isinstance(o, dict) and isinstance(n, dict) and "image" in o:
                    n["image"] = o["image"]
    old_deadline, new_deadline = old.get("activeDeadlineSeconds"), new.get("activeDeadlineSeconds")
    if old_deadline is not None and (new_deadline is None or new_deadline > old_deadline):
        causes.append(invalid(path.child("activeDeadlineSeconds"), new_deadline,
                              "must be less than or equal to previous value"))
    munged.pop("activeDeadlineSeconds", None)
    old_tolerations, new_tolerations = as_list(old.get("tolerations")), as_list(new.get("tolerations"))
    if any(t not in new_tolerations for t in old_tolerations):
        causes.append(forbidden(path.child("tolerations"),
                                "existing toleration can not be modified except its tolerationSeconds"))
    munged.pop("tolerations", None)
    # ephemeral containers are added through pods/ephemeralcontainers, never changed or removed
    old_ephemeral, new_ephemeral = as_list(old.get("ephemeralContainers")), as_list(new.get("ephemeralContainers"))
    for i, o in enumerate(old_ephemeral):
        n = next((x for x in new_ephemeral if isinstance(x, dict) and x.get("name") == as_dict(o).get("name")), None)
        p = path.child("ephemeralContainers").index(i)
        if n is None:
            causes.append(forbidden(p, f'existing ephemeral containers "{as_dict(o).get("name")}" may not be removed'))
        elif n != o:
            causes.append(forbidden(p, f'existing ephemeral containers "{as_dict(o).get("name")}" may not be '
                                       "changed"))
    munged.pop("ephemeralContainers", None)
    if not old.get("nodeName"):
        munged.pop("nodeName", None)
    comparable = {k: v for k, v in old.items() if k not in ("activeDeadlineSeconds", "tolerations",
                                                            "ephemeralContainers")}
    if not old.get("nodeName"):
        comparable.pop("nodeName", None)
    if munged != comparable:
        causes.append(forbidden(path, POD_UPDATE_FORBIDDEN))
    return causes
