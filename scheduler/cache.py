"""The scheduler's view of the cluster: NodeInfos with the pods on them, bound or assumed.

A pod is *assumed* on its chosen node the moment the decision is made, before the
binding reaches the API server, so that the next decision (made while the binding is
still in flight) already sees the node's resources as used. The informer later
confirms it (the pod arrives with spec.nodeName); a failed binding forgets it.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from .framework import NodeInfo, PodInfo, node_info, pod_info


class Cache:
    def __init__(self) -> None:
        self._nodes: dict[str, NodeInfo] = {}
        # Pods whose node the cache has not seen (yet): attached when the node appears.
        self._orphans: dict[str, dict[str, PodInfo]] = {}
        self._pod_node: dict[str, str] = {}  # pod key -> node name
        self.assumed: set[str] = set()
        self._list: list[NodeInfo] | None = None
        self.affinity_pods: set[str] = set()  # keys of placed pods with pod (anti-)affinity terms
        self._namespace_nodes: dict[str, Counter[str]] = {}  # namespace -> node name -> placed pods

    # -- nodes --------------------------------------------------------------------------------

    def set_node(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        info = self._nodes.get(name)
        if info is None:
            info = self._nodes[name] = node_info(node)
            for p in self._orphans.pop(name, {}).values():
                info.add_pod(p)
            self._list = None
        else:
            info.set_node(node)

    def remove_node(self, name: str) -> None:
        info = self._nodes.pop(name, None)
        if info is not None:
            self._list = None
            if info.pods:
                self._orphans[name] = dict(info.pods)

    def nodes(self) -> list[NodeInfo]:
        """All known nodes, in a stable order (the round-robin start index relies on it)."""
        if self._list is None:
            self._list = [self._nodes[n] for n in sorted(self._nodes)]
        return self._list

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes.get(name)

    def nodes_with_pods_in(self, namespace: str) -> list[NodeInfo]:
        names = self._namespace_nodes.get(namespace)
        if not names:
            return []
        return [info for n in names if (info := self._nodes.get(n)) is not None]

    # -- pods ---------------------------------------------------------------------------------

    def assume(self, p: PodInfo, node_name: str) -> None:
        self._place(p, node_name)
        self.assumed.add(p.key)

    def forget(self, key: str) -> None:
        """The binding failed: the pod no longer takes room on the node we picked."""
        if key in self.assumed:
            self.assumed.discard(key)
            self.remove_pod(key)

    def set_pod(self, pod: dict[str, Any], key: str) -> None:
        """A pod with spec.nodeName as the API server has it (confirms an assumed pod)."""
        node_name = pod["spec"]["nodeName"]
        if self._pod_node.get(key) == node_name:
            # Already counted there (assumed by us, or seen before): a bound pod's requests do not
            # change, so status updates (most of the pod events) cost nothing here.
            self.assumed.discard(key)
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                info = self._nodes.get(node_name)
                placed = info.pods.get(key) if info is not None else None
                if placed is not None:
                    placed.terminating = True
            return
        self._place(pod_info(pod), node_name)

    def remove_pod(self, key: str) -> None:
        node_name = self._pod_node.pop(key, None)
        if node_name is None:
            return
        self.assumed.discard(key)
        self.affinity_pods.discard(key)
        info = self._nodes.get(node_name)
        p = info.pods.get(key) if info is not None else self._orphans.get(node_name, {}).pop(key, None)
        if info is not None and p is not None:
            info.remove_pod(p)
        if p is not None:
            per_node = self._namespace_nodes.get(p.namespace)
            if per_node is not None:
                per_node[node_name] -= 1
                if per_node[node_name] <= 0:
                    del per_node[node_name]
                    if not per_node:
                        del self._namespace_nodes[p.namespace]

    def is_placed(self, key: str) -> bool:
        return key in self._pod_node

    def _place(self, p: PodInfo, node_name: str) -> None:
        if p.key in self._pod_node:
            self.remove_pod(p.key)  # moved, or placed again: counted once
        self._pod_node[p.key] = node_name
        if p.has_pod_affinity:
            self.affinity_pods.add(p.key)
        self._namespace_nodes.setdefault(p.namespace, Counter())[node_name] += 1
        info = self._nodes.get(node_name)
        if info is not None:
            info.add_pod(p)
        else:
            self._orphans.setdefault(node_name, {})[p.key] = p
