"""Which PersistentVolume may serve a claim: shared by the PV binder (controllers/persistentvolume.py) and the
scheduler's VolumeBinding plugin, which must agree on it (Kubernetes' pkg/controller/volume/persistentvolume/util
FindMatchingVolume, used by both)."""
from __future__ import annotations

from typing import Any, Mapping

from pklib.api.nodeaffinity import node_selector_matches
from pklib.quantity import QuantityError, to_bytes

# The provisioner of a class whose volumes an admin makes by hand (local volumes): nothing is provisioned.
NO_PROVISIONER = "kubernetes.io/no-provisioner"


def _storage(obj: Mapping[str, Any], *path: str) -> int:
    cur: Any = obj
    for p in path:
        cur = (cur or {}).get(p)
    try:
        return to_bytes(cur) if cur is not None else 0
    except QuantityError:
        return 0


def claim_request(pvc: Mapping[str, Any]) -> int:
    return _storage(pvc, "spec", "resources", "requests", "storage")


def volume_capacity(pv: Mapping[str, Any]) -> int:
    return _storage(pv, "spec", "capacity", "storage")


def claimable(pv: Mapping[str, Any], pvc: Mapping[str, Any]) -> bool:
    """Could `pv` serve `pvc` wherever the pod lands (class, modes, size, pre-binding, not released)?"""
    pv_spec, pvc_spec = pv.get("spec") or {}, pvc.get("spec") or {}
    claim = pvc.get("metadata") or {}
    ref = pv_spec.get("claimRef")
    if ref and (ref.get("namespace"), ref.get("name")) != (claim.get("namespace"), claim.get("name")):
        return False
    if ref and ref.get("uid") and ref["uid"] != claim.get("uid"):
        return False
    if (pv.get("metadata") or {}).get("deletionTimestamp") or \
            (pv.get("status") or {}).get("phase") in ("Released", "Failed"):
        return False
    if (pv_spec.get("storageClassName") or "") != (pvc_spec.get("storageClassName") or ""):
        return False
    if not set(pvc_spec.get("accessModes") or []) <= set(pv_spec.get("accessModes") or []):
        return False
    return volume_capacity(pv) >= claim_request(pvc)


def reachable_from(pv: Mapping[str, Any], labels: Mapping[str, str], node_name: str) -> bool:
    """Does the volume's required nodeAffinity (if any) admit this node?"""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    return not required or node_selector_matches(required, labels, node_name)
