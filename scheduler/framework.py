"""What the plugins see: a pod's scheduling-relevant facts and a node's running totals.

Both are computed once (a PodInfo per scheduling attempt, a NodeInfo kept up to date
incrementally by the cache) so that each plugin call is a handful of comparisons; that is
what keeps one scheduling cycle cheap with a thousand nodes.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from pklib.api.podresources import pod_amounts
from pklib.quantity import Quantity, parse_quantity, to_bytes, to_millicores

# What Kubernetes assumes a container without requests uses, for scoring only (filtering
# uses the real requests): schedutil.DefaultMilliCPURequest / DefaultMemoryRequest.
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
NON_ZERO_DEFAULTS = {"cpu": parse_quantity(f"{DEFAULT_MILLI_CPU}m"), "memory": parse_quantity(DEFAULT_MEMORY)}

HostPort = tuple[str, str, int]  # (hostIP, protocol, hostPort)


class Listers(Protocol):
    """What plugins may look up besides the node being filtered: the scheduler's caches, read only."""

    def claim(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def volume(self, name: str) -> dict[str, Any] | None: ...

    def storage_class(self, name: str) -> dict[str, Any] | None: ...

    def volumes(self) -> Sequence[dict[str, Any]]: ...

    def nodes(self) -> Sequence[NodeInfo]: ...

    def nodes_with_pods_in(self, namespace: str) -> Sequence[NodeInfo]:
        """The nodes holding at least one pod of `namespace` (what spreading counts, without scanning them all)."""
        ...

    def namespace_labels(self, name: str) -> dict[str, str] | None: ...

    def owner_selectors(self, pod: PodInfo) -> list[dict[str, Any]]:
        """The label selectors (metav1.LabelSelector) of the Services, ReplicaSets and StatefulSets that select
        the pod: what Kubernetes' default topology spreading counts as "the same workload"."""
        ...

    def affinity_pods(self) -> int:
        """How many pods on nodes carry pod (anti-)affinity terms; 0 lets plain pods skip InterPodAffinity."""
        ...


def milli_cpu(value: Any) -> int:
    return to_millicores(value)


def memory_bytes(value: Any) -> int:
    return to_bytes(value)


@dataclass
class PodInfo:
    key: str  # namespace/name
    uid: str
    pod: dict[str, Any]
    cpu: int = 0  # milli-CPU requested
    memory: int = 0  # bytes requested
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    host_ports: list[HostPort] = field(default_factory=list)
    owner_uid: str | None = None
    priority: int = 0
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    namespace: str = ""
    terminating: bool = False  # metadata.deletionTimestamp is set
    nominated_node: str = ""  # status.nominatedNodeName
    preemption_policy: str = "PreemptLowerPriority"
    labels: dict[str, str] = field(default_factory=dict)
    # spec.affinity.podAffinity / podAntiAffinity present: the pod counts for InterPodAffinity everywhere.
    has_pod_affinity: bool = False
    # Cycle state of the VolumeBinding plugin. PreFilter: the required nodeAffinity of each bound PV the pod
    # mounts, or why its volumes cannot be resolved; Reserve: the unbound claims to annotate in PreBind.
    volume_node_affinities: list[dict[str, Any]] = field(default_factory=list)
    volume_problem: str | None = None
    # For each unbound WaitForFirstConsumer claim of a class that provisions nothing: the volumes it could bind.
    static_volume_choices: list[list[dict[str, Any]]] = field(default_factory=list)
    claims_to_select: list[str] = field(default_factory=list)
    # Cycle state of PodTopologySpread and InterPodAffinity (plugins/podtopologyspread.py, interpodaffinity.py):
    # None when the plugin has nothing to do for this pod, which is the common case.
    spread: Any = None
    interpod: Any = None
    pod_terms: Any = None  # InterPodAffinity's parsed terms of this pod (kept with the PodInfo in the cache)

    @property
    def spec(self) -> dict[str, Any]:
        return self.pod.get("spec") or {}


def pod_info(pod: dict[str, Any]) -> PodInfo:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    requests = pod_amounts(spec)
    nonzero = pod_amounts(spec, defaults=NON_ZERO_DEFAULTS)
    ports: list[HostPort] = [(p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", int(p["hostPort"]))
                             for c in spec.get("containers") or [] for p in c.get("ports") or [] if p.get("hostPort")]
    affinity = spec.get("affinity") or {}
    owner = next((o.get("uid") for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    return PodInfo(key=f"{meta.get('namespace')}/{meta.get('name')}", uid=meta.get("uid") or "", pod=pod,
                   cpu=_milli(requests.get("cpu")), memory=_whole(requests.get("memory")),
                   nonzero_cpu=_milli(nonzero.get("cpu")), nonzero_memory=_whole(nonzero.get("memory")),
                   host_ports=ports, owner_uid=owner, priority=int(spec.get("priority") or 0),
                   tolerations=spec.get("tolerations") or [], namespace=meta.get("namespace") or "",
                   labels=meta.get("labels") or {}, terminating=bool(meta.get("deletionTimestamp")),
                   nominated_node=(pod.get("status") or {}).get("nominatedNodeName") or "",
                   preemption_policy=spec.get("preemptionPolicy") or "PreemptLowerPriority",
                   has_pod_affinity=bool(affinity.get("podAffinity") or affinity.get("podAntiAffinity")))


def _milli(q: Quantity | None) -> int:
    return q.milli_value() if q else 0


def _whole(q: Quantity | None) -> int:
    return q.int_value() if q else 0


@dataclass
class NodeInfo:
    """A node plus the sums over the pods on it (bound or assumed), updated incrementally."""
    name: str
    node: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)
    # Split by effect once, so that the common untainted node costs the taint plugins nothing.
    hard_taints: list[dict[str, Any]] = field(default_factory=list)  # NoSchedule, NoExecute
    soft_taints: list[dict[str, Any]] = field(default_factory=list)  # PreferNoSchedule
    unschedulable: bool = False
    # Cordoned or with a NoSchedule/NoExecute taint: only such nodes can fail the taint filters.
    restricted: bool = False
    alloc_cpu: int = 0
    alloc_memory: int = 0
    alloc_pods: int = 0
    requested_cpu: int = 0
    requested_memory: int = 0
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    pods: dict[str, PodInfo] = field(default_factory=dict)
    used_ports: Counter[HostPort] = field(default_factory=Counter)
    # The same pods by namespace: spreading counts only the incoming pod's namespace.
    namespace_pods: dict[str, dict[str, PodInfo]] = field(default_factory=dict)
    affinity_pods: dict[str, PodInfo] = field(default_factory=dict)  # the pods with pod (anti-)affinity terms
    # Filter and score results that depend only on this node's state and a pod's shape (its requests), keyed by
    # the plugins and that shape (scheduler/algorithm.py): most pods of a burst look alike, and a node changes only
    # when a pod lands on it, so a decision mostly looks these up. Emptied whenever the node or its pods change.
    memo: dict[str, Any] = field(default_factory=dict)

    def set_node(self, node: dict[str, Any]) -> None:
        self.memo.clear()
        self.node = node
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.labels = meta.get("labels") or {}
        self.taints = spec.get("taints") or []
        self.hard_taints = [t for t in self.taints if t.get("effect") in ("NoSchedule", "NoExecute")]
        self.soft_taints = [t for t in self.taints if t.get("effect") == "PreferNoSchedule"]
        self.unschedulable = bool(spec.get("unschedulable"))
        self.restricted = self.unschedulable or bool(self.hard_taints)
        alloc = status.get("allocatable") or status.get("capacity") or {}
        self.alloc_cpu = milli_cpu(alloc["cpu"]) if "cpu" in alloc else 0
        self.alloc_memory = memory_bytes(alloc["memory"]) if "memory" in alloc else 0
        self.alloc_pods = parse_quantity(alloc["pods"]).int_value() if "pods" in alloc else 0

    def clone(self, without: frozenset[str] = frozenset()) -> NodeInfo:
        """A copy to try things on (preemption, nominated pods), less the pods with the keys in `without`."""
        copy = node_info(self.node)
        for key, p in self.pods.items():
            if key not in without:
                copy.add_pod(p)
        return copy

    def add_pod(self, p: PodInfo) -> None:
        if p.key in self.pods:
            self.remove_pod(self.pods[p.key])
        self.memo.clear()
        self.pods[p.key] = p
        self.requested_cpu += p.cpu
        self.requested_memory += p.memory
        self.nonzero_cpu += p.nonzero_cpu
        self.nonzero_memory += p.nonzero_memory
        self.used_ports.update(p.host_ports)
        self.namespace_pods.setdefault(p.namespace, {})[p.key] = p
        if p.has_pod_affinity:
            self.affinity_pods[p.key] = p

    def remove_pod(self, p: PodInfo) -> None:
        if self.pods.pop(p.key, None) is None:
            return
        self.memo.clear()
        self.requested_cpu -= p.cpu
        self.requested_memory -= p.memory
        self.nonzero_cpu -= p.nonzero_cpu
        self.nonzero_memory -= p.nonzero_memory
        self.used_ports.subtract(p.host_ports)
        self.used_ports = +self.used_ports  # drop ports whose count fell to zero
        same = self.namespace_pods.get(p.namespace)
        if same is not None:
            same.pop(p.key, None)
            if not same:
                del self.namespace_pods[p.namespace]
        self.affinity_pods.pop(p.key, None)


def node_info(node: dict[str, Any]) -> NodeInfo:
    info = NodeInfo(name=(node.get("metadata") or {}).get("name") or "", node=node)
    info.set_node(node)
    return info
