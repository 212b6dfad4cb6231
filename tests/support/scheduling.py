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
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}"}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": owner,
                                    "controller": True}]
    return pod_info({"metadata": meta, "spec": {"containers": [container], **spec}})
