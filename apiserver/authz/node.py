"""The Node authorizer (Kubernetes' plugin/pkg/auth/authorizer/node): a kubelet reads only what its pods use.

A kubelet authenticates as `system:node:<name>` in the group `system:nodes`. For secrets, configmaps,
persistentvolumeclaims and persistentvolumes this authorizer decides alone: the object must be referenced by
a pod bound to that node (a volume, an env/envFrom source, an image pull secret; a volume through the claim
bound to it), and it may only be read (get, or list/watch of that one object by name). It may create tokens
(serviceaccounts/token) only for the ServiceAccounts of its pods. Its Lease in kube-node-lease is the only one
it may touch. What Kubernetes' NodeRestriction admission plugin adds is decided here too, from the request and
the cached pod: a node modifies only its own Node object, and updates the status of, deletes and evicts only
pods bound to it. Everything else it leaves to RBAC (the system:node role). Not done: NodeRestriction's checks
of the labels a node sets on itself.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Protocol

from .rbac import Attributes, Decision, UserInfo

Obj = dict[str, Any]
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
LEASE_NAMESPACE = "kube-node-lease"
_READ = ("get", "list", "watch")
_WRITE = ("update", "patch", "delete")


class NodeGraph(Protocol):
    def pods_on_node(self, node: str, namespace: str | None) -> Iterable[Obj]: ...
    def pod(self, namespace: str, name: str) -> Obj | None: ...
    def claim(self, namespace: str, name: str) -> Obj | None: ...


def node_name(attrs: Attributes) -> str | None:
    """The node a request comes from, or None when it is not a node's identity."""
    return node_name_of(attrs.user)


def node_name_of(user: UserInfo) -> str | None:
    """The node of a node's identity (system:node:<name> in system:nodes), else None."""
    if NODES_GROUP not in user.groups or not user.name.startswith(NODE_USER_PREFIX):
        return None
    return user.name[len(NODE_USER_PREFIX):] or None


def _names(pod: Obj, kind: str) -> Iterator[str]:
    """The secrets / configmaps / claims (kind) a pod refers to."""
    spec = pod.get("spec") or {}
    ref_key = {"secrets": "secretRef", "configmaps": "configMapRef"}.get(kind)
    key_ref = {"secrets": "secretKeyRef", "configmaps": "configMapKeyRef"}.get(kind)
    for volume in spec.get("volumes") or ():
        if kind == "secrets" and (volume.get("secret") or {}).get("secretName"):
            yield volume["secret"]["secretName"]
        if kind == "configmaps" and (volume.get("configMap") or {}).get("name"):
            yield volume["configMap"]["name"]
        if kind == "persistentvolumeclaims" and (volume.get("persistentVolumeClaim") or {}).get("claimName"):
            yield volume["persistentVolumeClaim"]["claimName"]
        for source in (volume.get("projected") or {}).get("sources") or ():
            if kind == "secrets" and (source.get("secret") or {}).get("name"):
                yield source["secret"]["name"]
            if kind == "configmaps" and (source.get("configMap") or {}).get("name"):
                yield source["configMap"]["name"]
    if kind == "secrets":
        for ref in spec.get("imagePullSecrets") or ():
            if ref.get("name"):
                yield ref["name"]
    if ref_key is None or key_ref is None:
        return
    for container in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
        for env in container.get("env") or ():
            name = ((env.get("valueFrom") or {}).get(key_ref) or {}).get("name")
            if name:
                yield name
        for source in container.get("envFrom") or ():
            name = (source.get(ref_key) or {}).get("name")
            if name:
                yield name


def _uses_service_account(graph: NodeGraph, node: str, namespace: str, name: str) -> bool:
    return any(((pod.get("spec") or {}).get("serviceAccountName") or "default") == name
               for pod in graph.pods_on_node(node, namespace))


def _related(graph: NodeGraph, node: str, attrs: Attributes) -> bool:
    if attrs.resource == "persistentvolumes":
        for pod in graph.pods_on_node(node, None):
            namespace = (pod.get("metadata") or {}).get("namespace", "")
            for claim_name in _names(pod, "persistentvolumeclaims"):
                claim = graph.claim(namespace, claim_name)
                if claim is not None and (claim.get("spec") or {}).get("volumeName") == attrs.name:
                    return True
        return False
    return any(attrs.name in _names(pod, attrs.resource) for pod in graph.pods_on_node(node, attrs.namespace))


def authorize(graph: NodeGraph, attrs: Attributes) -> Decision | None:
    """A decision for what this authorizer guards; None (no opinion) for the rest and for non-node users."""
    node = node_name(attrs)
    if node is None or not attrs.resource_request:
        return None
    if attrs.api_group == "" and attrs.resource in ("secrets", "configmaps", "persistentvolumeclaims",
                                                   "persistentvolumes") and not attrs.subresource:
        if attrs.verb not in _READ:
            return Decision(False, "can only read resources of this type")
        if not attrs.name:
            return Decision(False, "can only get individual resources of this type")
        if _related(graph, node, attrs):
            return Decision(True, "")
        return Decision(False, f"no relationship found between node '{node}' and this object")
    if attrs.api_group == "" and attrs.resource == "serviceaccounts" and attrs.subresource == "token":
        # the token of a pod's ServiceAccount; that it is bound to that pod is checked by TokenRequest itself
        if attrs.verb != "create":
            return Decision(False, "can only create tokens for individual service accounts")
        if attrs.name and _uses_service_account(graph, node, attrs.namespace, attrs.name):
            return None  # RBAC's system:node role grants the verb
        return Decision(False, f"no relationship found between node '{node}' and this object")
    if attrs.api_group == "" and attrs.resource == "nodes" and attrs.verb in _WRITE and attrs.name != node:
        return Decision(False, f"node '{node}' is not allowed to modify node '{attrs.name}'")
    if attrs.api_group == "" and attrs.resource == "pods" and attrs.name:
        action = {("update", "status"): "update pod status for", ("patch", "status"): "update pod status for",
                  ("delete", ""): "delete", ("create", "eviction"): "evict"}.get((attrs.verb, attrs.subresource))
        pod = graph.pod(attrs.namespace, attrs.name) if action else None
        # a pod that is not there gets its 404 from the handler, as NodeRestriction answers NotFound
        if action and pod is not None and (pod.get("spec") or {}).get("nodeName") != node:
            return Decision(False, f"node '{node}' can only {action} pods with spec.nodeName set to itself")
        return None
    if attrs.api_group == "coordination.k8s.io" and attrs.resource == "leases":
        if attrs.namespace != LEASE_NAMESPACE:
            return Decision(False, f"can only access leases in the {LEASE_NAMESPACE} namespace")
        if attrs.verb != "create" and attrs.name != node:
            return Decision(False, "can only access node lease with the same name as the requesting node")
        return None  # its own Lease: RBAC's system:node role decides the verb
    return None
