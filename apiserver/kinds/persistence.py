"""PersistentVolume, PersistentVolumeClaim and StorageClass."""
from __future__ import annotations

from typing import Any

from pklib.quantity import QuantityError, parse_quantity

from .base import KindStrategy
from .fields import Cause, Path, forbidden, invalid, one_of, required
from .meta import as_dict, as_list
from .workloads import validate_selector

ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
VOLUME_MODES = ("Block", "Filesystem")
PV_SOURCES = ("hostPath", "local", "nfs", "csi")
# The class a claim gets when it names none (the local-path provisioner's).
DEFAULT_STORAGE_CLASS = "local-path"
PVC_UPDATE_FORBIDDEN = ("spec is immutable after creation except resources.requests and "
                        "volumeAttributesClassName for bound claims")


def _validate_access_modes(modes: list[Any], path: Path) -> list[Cause]:
    if not modes:
        return [required(path)]
    causes: list[Cause] = []
    for i, mode in enumerate(modes):
        causes += one_of(path.index(i), mode, ACCESS_MODES)
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        causes.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return causes


def _validate_storage(resources: dict[str, Any], path: Path) -> list[Cause]:
    if "storage" not in resources:
        return [required(path.key("storage"))]
    raw = resources["storage"]
    try:
        q = parse_quantity(raw)
    except QuantityError as e:
        return [invalid(path.key("storage"), raw, str(e))]
    if q.value <= 0:
        return [invalid(path.key("storage"), raw, "must be greater than zero")]
    return []


class _VolumeStrategy(KindStrategy):
    """Volumes and claims: Pending until the binder binds them; a Filesystem volume unless they say Block."""

    def prepare_for_create(self, obj: dict[str, Any], status_subresource: bool) -> None:
        obj["status"] = {"phase": "Pending"}

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("volumeMode", "Filesystem")
            self.default_spec(spec)

    def default_spec(self, spec: dict[str, Any]) -> None:
        pass


class PersistentVolumeStrategy(_VolumeStrategy):
    kind = "PersistentVolume"
    namespaced = False

    def default_spec(self, spec: dict[str, Any]) -> None:
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = as_dict(obj.get("spec"))
        path = Path("spec")
        causes = _validate_access_modes(as_list(spec.get("accessModes")), path.child("accessModes"))
        if not spec.get("capacity"):
            causes.append(required(path.child("capacity")))
        else:
            causes += _validate_storage(spec["capacity"], path.child("capacity"))
        causes += one_of(path.child("persistentVolumeReclaimPolicy"), spec.get("persistentVolumeReclaimPolicy"),
                         ("Retain", "Delete", "Recycle"))
        causes += one_of(path.child("volumeMode"), spec.get("volumeMode"), VOLUME_MODES)
        sources = [s for s in PV_SOURCES if spec.get(s) is not None]
        if not sources:
            causes.append(required(path, "must specify a volume type"))
        for extra in sources[1:]:
            causes.append(forbidden(path.child(extra), "may not specify more than 1 volume type"))
        for src in ("hostPath", "local"):
            if src in sources and not str(spec[src].get("path", "")).startswith("/"):
                causes.append(invalid(path.child(src).child("path"), spec[src].get("path"), "must be an absolute path"))
        if old is not None:
            old_spec = as_dict(old.get("spec"))
            if any(spec.get(s) != old_spec.get(s) for s in PV_SOURCES) or \
                    spec.get("volumeMode") != old_spec.get("volumeMode"):
                causes.append(forbidden(path.child("persistentvolumesource"),
                                        "spec.persistentvolumesource is immutable after creation"))
        return causes


class PersistentVolumeClaimStrategy(_VolumeStrategy):
    kind = "PersistentVolumeClaim"

    def default_spec(self, spec: dict[str, Any]) -> None:
        if spec.get("storageClassName") is None:  # "" explicitly asks for no class
            spec["storageClassName"] = DEFAULT_STORAGE_CLASS

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = obj["spec"]
        path = Path("spec")
        causes = _validate_access_modes(as_list(spec.get("accessModes")), path.child("accessModes"))
        causes += _validate_storage(as_dict(as_dict(spec.get("resources")).get("requests")), path.child("resources"))
        causes += one_of(path.child("volumeMode"), spec.get("volumeMode"), VOLUME_MODES)
        if isinstance(spec.get("selector"), dict):
            causes += validate_selector(spec["selector"], path.child("selector"))
        if old is not None:
            causes += _validate_claim_update(spec, as_dict(old.get("spec")), path)
        return causes


def _validate_claim_update(spec: dict[str, Any], old: dict[str, Any], path: Path) -> list[Cause]:
    def fixed(s: dict[str, Any], keep_volume_name: bool) -> dict[str, Any]:
        out = {k: x for k, x in s.items() if k not in ("resources", "volumeAttributesClassName")}
        if not keep_volume_name:
            out.pop("volumeName", None)  # the binder sets an unset volumeName once
        return out
    binding_once = not old.get("volumeName")
    if fixed(spec, not binding_once) != fixed(old, not binding_once):
        return [forbidden(path, PVC_UPDATE_FORBIDDEN)]
    new_res = {k: x for k, x in as_dict(spec.get("resources")).items() if k != "requests"}
    old_res = {k: x for k, x in as_dict(old.get("resources")).items() if k != "requests"}
    if new_res != old_res:
        return [forbidden(path, PVC_UPDATE_FORBIDDEN)]
    return []


class StorageClassStrategy(KindStrategy):
    kind = "StorageClass"
    namespaced = False

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        causes: list[Cause] = []
        if not obj.get("provisioner"):
            causes.append(required(Path("provisioner")))
        causes += one_of(Path("reclaimPolicy"), obj.get("reclaimPolicy"), ("Retain", "Delete"))
        causes += one_of(Path("volumeBindingMode"), obj.get("volumeBindingMode"), ("Immediate", "WaitForFirstConsumer"))
        if old is not None:
            for field in ("parameters", "provisioner", "reclaimPolicy", "volumeBindingMode"):
                if obj.get(field) != old.get(field):
                    causes.append(forbidden(Path(field), f"updates to {field} are forbidden."))
        return causes
