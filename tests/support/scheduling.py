"""Scheduler framework inputs for the pure-logic scheduler tests: a NodeInfo and a PodInfo from a few numbers."""
from __future__ import annotations

from typing import Any

from scheduler.framework import NodeInfo, PodInfo, node_info, pod_info


def make_node(name: str = "n1", cpu: str = "4", memory: str = "16Gi", pods: str = "110",
              labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None,
              unschedulable: bool = False) -> NodeInfo:
    return node_info({"metadata": {"name": name, "labels": labels or {}},
                      "spec": {"taints": taints or [], "unschedulable": unschedulable},
                      "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}})


def make_pod(name: str = "p", cpu: str | None = None, memory: str | None = None, **spec: Any) -> PodInfo:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    container: dict[str, Any] = {"name": "c", "image": "busybox", "resources": {"requests": requests}}
    if "ports" in spec:
        container["ports"] = spec.pop("ports")
    owner = spec.pop("owner", None)
    meta: dict[str, Any] = {"name": name, "namespace": spec.pop("namespace", "ns"), "uid": f"uid-{name}"}
    if "labels" in spec:
        meta["labels"] = spec.pop("labels")
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": owner,
                                    "controller": True}]
    return pod_info({"metadata": meta, "spec": {"containers": [container], **spec}})


class FakeListers:
    def __init__(self, claims: dict[str, dict] | None = None, volumes: dict[str, dict] | None = None,
                 nodes: list[NodeInfo] | None = None, namespaces: dict[str, dict[str, str]] | None = None,
                 selectors: list[dict[str, Any]] | None = None, storage_classes: dict[str, dict] | None = None):
        self.claims, self.volumes_by_name, self.storage_classes = claims or {}, volumes or {}, storage_classes or {}
        self.node_list, self.namespaces, self.selectors = nodes or [], namespaces or {}, selectors or []

    def claim(self, namespace: str, name: str) -> dict | None:
        return self.claims.get(f"{namespace}/{name}")

    def volume(self, name: str) -> dict | None:
        return self.volumes_by_name.get(name)

    def storage_class(self, name: str) -> dict | None:
        return self.storage_classes.get(name)

    def volumes(self) -> list[dict]:
        return list(self.volumes_by_name.values())

    def nodes(self) -> list[NodeInfo]:
        return self.node_list

    def nodes_with_pods_in(self, namespace: str) -> list[NodeInfo]:
        return [n for n in self.node_list if n.namespace_pods.get(namespace)]

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        return self.namespaces.get(name)

    def owner_selectors(self, pod: PodInfo) -> list[dict[str, Any]]:
        return [s for s in self.selectors if all(pod.labels.get(k) == v for k, v in s["matchLabels"].items())]

    def affinity_pods(self) -> int:
        return sum(len(n.affinity_pods) for n in self.node_list)
