"""Subresources beyond status: scale (autoscaling/v1 Scale) and pods/binding."""
from __future__ import annotations

from typing import Any, Callable

from pklib.api.timefmt import now_rfc3339
from pklib.resources import Resource

from . import kinds
from .bodies import member
from .handlers_objects import Objects, clone_stored
from .kinds.pods import validate_node_name
from .status import StatusError, bad_request, conflict
from .storage.interface import Entry
from .watchcache import with_rv


def to_scale(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    spec_replicas, status_replicas, selector = kinds.strategy_for(res).scale_of(obj)
    status: dict[str, Any] = {"replicas": status_replicas}
    if selector or not res.custom:
        status["selector"] = selector
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": spec_replicas}, "status": status}


def _replicas_from(scale: dict[str, Any]) -> int:
    if scale.get("kind") not in (None, "Scale"):
        raise bad_request(f"expected a Scale object, got kind {scale.get('kind')!r}")
    replicas = member(scale, "spec").get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        name = member(scale, "metadata").get("name", "")
        cause = {"reason": "FieldValueInvalid", "field": "spec.replicas",
                 "message": f"Invalid value: {replicas!r}: must be greater than or equal to 0"}
        raise StatusError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                                          f'{cause["message"]}',
                          {"name": name, "group": "autoscaling", "kind": "Scale", "causes": [cause]})
    return replicas


async def update_scale(objects: Objects, res: Resource, namespace: str | None, name: str,
                       scale_of: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """`scale_of(current_scale) -> wanted Scale`; writes spec.replicas, retrying on conflicts."""
    def mutate(entry: Entry) -> dict[str, Any]:
        current = with_rv(dict(entry.value, metadata=dict(entry.value.get("metadata") or {})), entry.mod_revision)
        wanted = scale_of(to_scale(res, current))  # to_scale only reads
        wanted_rv = str(member(wanted, "metadata").get("resourceVersion") or "")
        if wanted_rv and wanted_rv != str(entry.mod_revision):
            raise conflict(res.plural, name, res.group)
        new = clone_stored(entry.value)
        kinds.strategy_for(res).set_replicas(new, _replicas_from(wanted))
        return new

    return to_scale(res, await objects.guaranteed_update(res, namespace, name, mutate))


async def bind(objects: Objects, res: Resource, namespace: str | None, name: str,
               binding: dict[str, Any]) -> dict[str, Any]:
    if binding.get("kind") not in (None, "Binding"):
        raise bad_request(f"expected a Binding object, got kind {binding.get('kind')!r}")
    target = member(binding, "target")
    uid = member(binding, "metadata").get("uid")
    node = target.get("name")
    if not node:
        raise StatusError(422, "Invalid", f'Binding "{name}" is invalid: target.name: Required value',
                          {"name": name, "kind": "Binding", "causes": [
                              {"reason": "FieldValueRequired", "field": "target.name", "message": "Required value"}]})
    if target.get("kind") not in (None, "", "Node"):
        raise bad_request(f"a pod can only be bound to a Node, not to a {target.get('kind')}")

    # As in Kubernetes, the pod is then written without its update strategy (nodeName and the PodScheduled
    # condition are all a binding changes): only the name it sets is checked.
    Objects.refuse_invalid(res, {"metadata": {"name": name}}, validate_node_name(node))

    def mutate(entry: Entry) -> dict[str, Any]:
        # entry.value is this write's own copy, kept unchanged to compare with: copy only the maps a binding (and
        # write_update: resourceVersion, generation) changes.
        value = entry.value
        pod = dict(value, metadata=dict(value.get("metadata") or {}), spec=dict(value.get("spec") or {}),
                   status=dict(value.get("status") or {}))
        meta, spec = pod["metadata"], pod["spec"]
        if uid and uid != meta.get("uid"):
            raise conflict("pods", name, "", f"Precondition failed: UID in precondition: {uid}, "
                                             f"UID in object meta: {meta.get('uid')}")
        if meta.get("deletionTimestamp"):
            raise conflict("pods", name, "", f"pod {name} is being deleted, cannot be assigned to a host")
        if spec.get("nodeName"):
            raise conflict("pods", name, "", f'pod {name} is already assigned to node "{spec["nodeName"]}"')
        spec["nodeName"] = node
        conditions = [c for c in (pod["status"].get("conditions") or [])
                      if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": now_rfc3339()})
        pod["status"]["conditions"] = conditions
        return pod

    await objects.guaranteed_update(res, namespace, name, mutate, checks=False)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
