"""VolumeBinding: a pod lands where its bound PersistentVolumes are reachable, and tells the provisioner where.

PreFilter resolves the pod's claims to volumes once per cycle (a missing claim or volume, or a claim still unbound
whose class binds at once, makes every node fail with that reason: the binder picks its volume, not the pod's
node); Filter compares each bound volume's required nodeAffinity with the node, and for an unbound
WaitForFirstConsumer claim of a class that provisions nothing (local volumes made by hand) looks for a volume
it could bind there; Reserve notes the claims that are still unbound (WaitForFirstConsumer); PreBind writes the `volume.kubernetes.io/selected-node`
annotation on those before the binding, which is how Kubernetes' scheduler asks the provisioner to make the
volume on the chosen node.
"""
from __future__ import annotations

from typing import Any

from pklib.api.nodeaffinity import node_selector_matches
from pklib.api.volumes import NO_PROVISIONER, claimable, reachable_from
from pklib.api.wellknown import SELECTED_NODE_ANNOTATION
from pklib.client import Client
from pklib.resources import PVCS

from ..framework import Listers, NodeInfo, PodInfo

REASON = "node(s) had volume node affinity conflict"
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NO_VOLUME = "node(s) didn't find available persistent volumes to bind"


def _claims(pod: PodInfo) -> list[str]:
    return [name for vol in pod.spec.get("volumes") or []
            if (name := (vol.get("persistentVolumeClaim") or {}).get("claimName"))]


def _namespace(pod: PodInfo) -> str:
    return pod.key.split("/", 1)[0]


def pre_filter(pod: PodInfo, listers: Listers) -> None:
    pod.volume_node_affinities, pod.volume_problem, pod.static_volume_choices = [], None, []
    for claim in _claims(pod):
        pvc = listers.claim(_namespace(pod), claim)
        if pvc is None:
            pod.volume_problem = f'persistentvolumeclaim "{claim}" not found'
            return
        if (pvc.get("metadata") or {}).get("deletionTimestamp"):
            pod.volume_problem = f'persistentvolumeclaim "{claim}" is being deleted'
            return
        volume_name = (pvc.get("spec") or {}).get("volumeName")
        if not volume_name:
            pod.volume_problem = _unbound_problem(pvc, listers)
            if pod.volume_problem:
                return
            sc = listers.storage_class((pvc.get("spec") or {}).get("storageClassName") or "")
            if sc is not None and sc.get("provisioner") == NO_PROVISIONER:
                pod.static_volume_choices.append([pv for pv in listers.volumes() if claimable(pv, pvc)])
            continue  # bound (or provisioned) where the pod lands (WaitForFirstConsumer)
        pv = listers.volume(volume_name)
        if pv is None:
            pod.volume_problem = (f'persistentvolumeclaim "{claim}" bound to non-existent '
                                  f'persistentvolume "{volume_name}"')
            return
        required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
        if required:
            pod.volume_node_affinities.append(required)


def _unbound_problem(pvc: dict[str, Any], listers: Listers) -> str | None:
    """Why the pod must wait for its unbound claim, as Kubernetes says it; None when the claim's class binds it
    where the pod lands (WaitForFirstConsumer). A claim bound at once (class "" or Immediate) may be bound to
    a volume with a node affinity: scheduling before the binder chose that volume would put the pod anywhere."""
    name = (pvc.get("spec") or {}).get("storageClassName")
    if name is None:
        return None  # the apiserver gives every new claim the default class (local-path, WaitForFirstConsumer)
    if name == "":
        return UNBOUND_IMMEDIATE
    sc = listers.storage_class(name)
    if sc is None:
        return f'storageclass.storage.k8s.io "{name}" not found'
    return None if sc.get("volumeBindingMode") == "WaitForFirstConsumer" else UNBOUND_IMMEDIATE


def relevant(pod: PodInfo) -> bool:
    return bool(pod.volume_node_affinities or pod.volume_problem or pod.static_volume_choices)


def filter(pod: PodInfo, node: NodeInfo) -> list[str] | None:  # noqa: A001 - the plugin's verb
    if pod.volume_problem:
        return [pod.volume_problem]
    for required in pod.volume_node_affinities:
        if not node_selector_matches(required, node.labels, node.name):
            return [REASON]
    # (two claims that could only take the same volume are not told apart: the binder leaves one Pending)
    for choices in pod.static_volume_choices:
        if not any(reachable_from(pv, node.labels, node.name) for pv in choices):
            return [NO_VOLUME]
    return None


def reserve(pod: PodInfo, node_name: str, listers: Listers) -> None:
    pod.claims_to_select = []
    for claim in _claims(pod):
        pvc = listers.claim(_namespace(pod), claim)
        if pvc is None or (pvc.get("spec") or {}).get("volumeName"):
            continue
        if ((pvc.get("metadata") or {}).get("annotations") or {}).get(SELECTED_NODE_ANNOTATION) != node_name:
            pod.claims_to_select.append(claim)


def unreserve(pod: PodInfo) -> None:
    pod.claims_to_select = []


async def pre_bind(pod: PodInfo, node_name: str, client: Client) -> None:
    for claim in pod.claims_to_select:
        await client.patch(PVCS, claim, {"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: node_name}}},
                           _namespace(pod))
