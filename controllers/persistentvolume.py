"""PersistentVolume binder and the local-path provisioner.

A claim is bound to the smallest Available volume of its class that offers its
access modes and size; failing that, a claim of the `local-path` class (binding
mode WaitForFirstConsumer) gets a new volume once the scheduler has picked a node
for its first pod (annotation volume.kubernetes.io/selected-node): a hostPath
directory on that node, which the kubelet creates, with the node recorded in the
volume's nodeAffinity. Binding is written both ways (PV claimRef, PVC
volumeName) and reflected in both statuses. When a claim goes, its volume is
Released and, with reclaimPolicy Delete, deleted.
"""
from __future__ import annotations

import copy
from typing import Any

from pklib.api.volumes import claimable, reachable_from, volume_capacity
from pklib.api.wellknown import DEFAULT_CLASS_ANNOTATION, HOSTNAME_LABEL, SELECTED_NODE_ANNOTATION
from pklib.controller import Controller, ControllerContext
from pklib.errors import ApiError, is_already_exists
from pklib.informer import Obj
from pklib.resources import NODES, PVCS, PVS, STORAGECLASSES

from .util import meta, unless_gone, write_status


PROVISIONER = "pkube.io/local-path"
DEFAULT_CLASS = "local-path"
DEFAULT_BASE_PATH = "/var/lib/pkube/local-path"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def volume_fits(pv: Obj, pvc: Obj, node: Obj | None) -> bool:
    """Could `pv` serve `pvc` (class, modes, size, pre-binding, and node affinity once a node is chosen)?"""
    return claimable(pv, pvc) and (node is None or reachable_from(
        pv, meta(node).get("labels") or {}, meta(node).get("name") or ""))


class PersistentVolumeController(Controller):
    name = "persistentvolume"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.pvc_informer = self.watch(PVCS, self._pvc, lambda old, new: self._pvc(new), self._pvc)
        self.pv_informer = self.watch(PVS, self._pv, lambda old, new: self._pv(new), self._pv)
        self.class_informer = self.watch(STORAGECLASSES, self._class_changed, lambda old, new: self._class_changed(new))
        self.node_informer = self.watch(NODES)

    def _pvc(self, pvc: Obj) -> None:
        self.queue.add(f"pvc|{meta(pvc)['namespace']}/{meta(pvc)['name']}")
        name = (pvc.get("spec") or {}).get("volumeName")
        if name:
            self.queue.add(f"pv|{name}")

    def _pv(self, pv: Obj) -> None:
        self.queue.add(f"pv|{meta(pv)['name']}")
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref:
            self.queue.add(f"pvc|{ref.get('namespace')}/{ref.get('name')}")

    def _class_changed(self, sc: Obj) -> None:
        for pvc in self.pvc_informer.store.list():
            if not (pvc.get("spec") or {}).get("volumeName"):
                self._pvc(pvc)

    async def run(self) -> None:
        await self._ensure_default_class()
        await super().run()

    async def _ensure_default_class(self) -> None:
        """The local-path class claims default to must exist (what an addon manager would install)."""
        try:
            await self.client.create(STORAGECLASSES, {
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": DEFAULT_CLASS,
                             "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
                "provisioner": PROVISIONER, "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer", "parameters": {"basePath": DEFAULT_BASE_PATH}})
        except ApiError as e:
            if not is_already_exists(e):
                self.log.warning("could not create the default StorageClass: %s", e.message)

    async def sync(self, key: str) -> None:
        kind, _, name = key.partition("|")
        if kind == "pvc":
            await self._sync_claim(name)
        else:
            await self._sync_volume(name)

    # -- claims ---------------------------------------------------------------------------------

    async def _sync_claim(self, key: str) -> None:
        pvc = self.pvc_informer.store.get(key)
        if pvc is None or meta(pvc).get("deletionTimestamp"):
            return
        volume_name = (pvc.get("spec") or {}).get("volumeName")
        if volume_name:
            pv = self.pv_informer.store.get(volume_name)
            if pv is None:
                await self._claim_status(pvc, "Lost")
                return
            await self._bind(pv, pvc)
            return
        selected = (meta(pvc).get("annotations") or {}).get(SELECTED_NODE_ANNOTATION)
        node = self.node_informer.store.get(selected) if selected else None
        sc_name = (pvc.get("spec") or {}).get("storageClassName")
        sc = self.class_informer.store.get(sc_name) if sc_name else None
        waits = sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"
        if waits and not selected:
            self.recorder.normal(pvc, "WaitForFirstConsumer",
                                 "waiting for first consumer to be created before binding")
            await self._claim_status(pvc, "Pending")
            return
        fitting = [pv for pv in self.pv_informer.store.list() if volume_fits(pv, pvc, node)]
        if fitting:
            best = min(fitting, key=volume_capacity)
            await self._bind(best, pvc)
            return
        if sc is not None and sc.get("provisioner") == PROVISIONER and selected:
            await self._provision(pvc, sc, selected)
            return
        await self._claim_status(pvc, "Pending")

    async def _provision(self, pvc: Obj, sc: Obj, node: str) -> None:
        base = ((sc.get("parameters") or {}).get("basePath") or DEFAULT_BASE_PATH).rstrip("/")
        name = f"pvc-{meta(pvc)['uid']}"
        spec = pvc.get("spec") or {}
        pv = {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {
                "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")},
                "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                "storageClassName": meta(sc)["name"],
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "hostPath": {"path": f"{base}/{name}_{meta(pvc)['namespace']}_{meta(pvc)['name']}",
                             "type": "DirectoryOrCreate"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}},
                "claimRef": self._claim_ref(pvc),
            },
        }
        try:
            created = await self.client.create(PVS, pv)
        except ApiError as e:
            if not is_already_exists(e):
                self.recorder.warning(pvc, "ProvisioningFailed", e.message)
                raise
            return  # provisioned on an earlier round; the PV's event brings us back
        self.recorder.normal(pvc, "ProvisioningSucceeded",
                             f"Successfully provisioned volume {name} on node {node}")
        await self._bind(created, pvc)

    def _claim_ref(self, pvc: Obj) -> dict[str, Any]:
        m = meta(pvc)
        return {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": m["namespace"], "name": m["name"],
                "uid": m["uid"], "resourceVersion": m.get("resourceVersion")}

    async def _bind(self, pv: Obj, pvc: Obj) -> None:
        """PV -> claim first (so that no other claim can take it), then claim -> PV, then both statuses."""
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") and ref["uid"] != meta(pvc)["uid"]:
            await self._claim_status(pvc, "Lost")
            return
        if ref.get("uid") != meta(pvc)["uid"]:
            body = copy.deepcopy(pv)
            body["spec"]["claimRef"] = self._claim_ref(pvc)
            pv = await self.client.update(PVS, body)
        if (pvc.get("spec") or {}).get("volumeName") != meta(pv)["name"]:
            body = copy.deepcopy(pvc)
            body["spec"]["volumeName"] = meta(pv)["name"]
            body["metadata"].setdefault("annotations", {})[BIND_COMPLETED] = "yes"
            pvc = await self.client.update(PVCS, body)
            self.recorder.normal(pvc, "Bound", f"bound to volume {meta(pv)['name']}")
        await self._volume_status(pv, "Bound")
        await self._claim_status(pvc, "Bound", pv)

    async def _claim_status(self, pvc: Obj, phase: str, pv: Obj | None = None) -> None:
        status: dict[str, Any] = {"phase": phase}
        if pv is not None and phase == "Bound":
            status["accessModes"] = list((pv.get("spec") or {}).get("accessModes") or [])
            status["capacity"] = dict((pv.get("spec") or {}).get("capacity") or {})
        if (pvc.get("status") or {}) == status:
            return
        await write_status(self.client, PVCS, pvc, status)

    # -- volumes --------------------------------------------------------------------------------

    async def _sync_volume(self, name: str) -> None:
        pv = self.pv_informer.store.get(name)
        if pv is None or meta(pv).get("deletionTimestamp"):
            return
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref:
            await self._volume_status(pv, "Available")
            return
        pvc = self.pvc_informer.store.get(f"{ref.get('namespace')}/{ref.get('name')}")
        if pvc is not None and (not ref.get("uid") or meta(pvc).get("uid") == ref.get("uid")):
            if (pvc.get("spec") or {}).get("volumeName") == name:
                await self._volume_status(pv, "Bound")
            elif not ref.get("uid"):
                await self._volume_status(pv, "Available")  # pre-bound by name; the claim's sync binds it
            return
        if not ref.get("uid"):
            await self._volume_status(pv, "Available")
            return
        # The claim is gone: reclaim.
        if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy", "Retain") == "Delete":
            await unless_gone(self.client.delete(PVS, name))
            return
        await self._volume_status(pv, "Released")

    async def _volume_status(self, pv: Obj, phase: str) -> None:
        if (pv.get("status") or {}).get("phase") == phase:
            return
        await write_status(self.client, PVS, pv, {"phase": phase})
