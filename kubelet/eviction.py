"""Node-pressure eviction, as the kubelet's eviction manager.

Hard thresholds (`--eviction-hard`, Kubernetes' syntax `memory.available<100Mi,nodefs.available<10%`) are
compared with what the machine has left every monitoring period. A threshold that is crossed sets its node
condition (MemoryPressure, DiskPressure, PIDPressure; kept for `--eviction-pressure-transition-period` after the
signal recovers), which the node status reports and the node lifecycle controller turns into a NoSchedule
taint. While a threshold is crossed, the kubelet first reclaims node-level resources (unused images, for disk),
then evicts one pod per period: the pods using more than they requested first, then the lower priority, then
the one using the most above its request (so BestEffort pods go first, Guaranteed ones last). An evicted pod is
stopped and ends Failed with reason `Evicted` and Kubernetes' message ("The node was low on resource: memory.
..."). Under pressure, new pods that would make it worse are refused the same way (`admit`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Awaitable, Callable

from pklib.api.podresources import pod_amounts
from pklib.api.priority import BUILTIN_CLASSES, SYSTEM_CLUSTER_CRITICAL
from pklib.api.qos import qos_class
from pklib.api.tolerations import tolerates
from pklib.api.wellknown import MEMORY_PRESSURE_TAINT
from pklib.quantity import BINARY_SI, Quantity, QuantityError, parse_quantity

from kubelet.host import PodUsage
from kubelet.nodestatus import meminfo
from kubelet.recorder import Recorder

log = logging.getLogger("kubelet.eviction")

# signal -> (node condition, the resource named in messages), in the order thresholds are handled
SIGNALS: dict[str, tuple[str, str]] = {
    "memory.available": ("MemoryPressure", "memory"),
    "nodefs.available": ("DiskPressure", "ephemeral-storage"),
    "nodefs.inodesFree": ("DiskPressure", "inodes"),
    "imagefs.available": ("DiskPressure", "ephemeral-storage"),
    "imagefs.inodesFree": ("DiskPressure", "inodes"),
    "pid.available": ("PIDPressure", "pids"),
}
CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure")
DEFAULT_EVICTION_HARD = ("memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%,"
                         "imagefs.inodesFree<5%")
EVICTION_GRACE = 1.0   # seconds a pod evicted for a hard threshold gets (Kubernetes' immediate eviction)
CRITICAL_PRIORITY = BUILTIN_CLASSES[SYSTEM_CLUSTER_CRITICAL]


@dataclass(frozen=True)
class Threshold:
    signal: str
    quantity: Quantity | None = None     # an absolute amount (bytes, inodes, pids) ...
    percentage: Fraction | None = None   # ... or a share of the capacity

    def value(self, capacity: int) -> int:
        if self.quantity is not None:
            return self.quantity.int_value()
        assert self.percentage is not None
        return int(capacity * self.percentage)

    def __str__(self) -> str:
        amount = str(self.quantity) if self.quantity is not None else f"{float((self.percentage or 0) * 100):g}%"
        return f"{self.signal}<{amount}"


def parse_thresholds(text: str) -> list[Threshold]:
    """`memory.available<100Mi,nodefs.available<10%` (ValueError worded for the flag when it is not)."""
    out: dict[str, Threshold] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        signal, op, amount = item.partition("<")
        signal, amount = signal.strip(), amount.strip()
        if not op:
            raise ValueError(f"--eviction-hard: {item!r} is not SIGNAL<QUANTITY or SIGNAL<PERCENT% "
                             "(only the < operator is supported)")
        if signal not in SIGNALS:
            raise ValueError(f"--eviction-hard: unsupported eviction signal {signal!r} (one of "
                             f"{', '.join(SIGNALS)})")
        if signal in out:
            raise ValueError(f"--eviction-hard: found duplicate eviction threshold for signal {signal}")
        if amount.endswith("%"):
            try:
                pct = Fraction(amount[:-1])
            except ValueError:
                raise ValueError(f"--eviction-hard: invalid percentage {amount!r} for {signal}") from None
            if not 0 < pct <= 100:
                raise ValueError(f"--eviction-hard: eviction percentage threshold {signal} must be > 0% and "
                                 f"<= 100%: {amount}")
            out[signal] = Threshold(signal, percentage=pct / 100)
            continue
        try:
            q = parse_quantity(amount)
        except QuantityError as e:
            raise ValueError(f"--eviction-hard: {signal}: {amount!r}: {e}") from None
        if q.value < 0:
            raise ValueError(f"--eviction-hard: eviction threshold {signal} must be positive: {amount}")
        out[signal] = Threshold(signal, quantity=q)
    return list(out.values())


@dataclass(frozen=True)
class Observation:
    available: int
    capacity: int


Observations = dict[str, Observation]


def _fs(path: Path, prefix: str) -> Observations:
    st = os.statvfs(path)
    return {f"{prefix}.available": Observation(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize),
            f"{prefix}.inodesFree": Observation(st.f_favail, st.f_files)}


def observe_host(root_dir: Path, image_root: Path) -> Observations:
    """What the machine has left: memory (the kernel's MemAvailable estimate of what can be given without
    swapping), the filesystems of the kubelet's root dir (nodefs) and of the image store (imagefs), pids."""
    mem = meminfo()
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    tasks = int(Path("/proc/loadavg").read_text().split()[3].split("/")[1])   # running/total scheduling entities
    return {"memory.available": Observation(mem.get("MemAvailable", mem["MemFree"]), mem["MemTotal"]),
            **_fs(root_dir, "nodefs"), **_fs(image_root, "imagefs"),
            "pid.available": Observation(max(0, pid_max - tasks), pid_max)}


def thresholds_met(thresholds: list[Threshold], observed: Observations) -> list[Threshold]:
    return [t for t in thresholds if t.signal in observed
            and observed[t.signal].available < t.value(observed[t.signal].capacity)]


def _priority(pod: dict[str, Any]) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


def is_critical(pod: dict[str, Any]) -> bool:
    """Never evicted: system-critical priority, or a static pod (its mirror)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return _priority(pod) >= CRITICAL_PRIORITY or "kubernetes.io/config.mirror" in annotations


def _memory_request(pod: dict[str, Any]) -> int:
    q = pod_amounts(pod.get("spec") or {}).get("memory")
    return q.int_value() if q is not None else 0


QOS_ORDER = {"BestEffort": 0, "Burstable": 1, "Guaranteed": 2}


def rank_for(resource: str, pods: list[dict[str, Any]], memory: dict[str, int]) -> list[dict[str, Any]]:
    """The pods in eviction order for a shortage of `resource`. For memory, Kubernetes' order: those using more
    than they requested first, then by priority (lowest first), then by usage above the request (largest first).
    For the others, whose per-pod usage the kubelet does not measure, by priority, then QoS class (BestEffort,
    Burstable, Guaranteed: what requesting nothing and using something would give)."""
    def usage(p: dict[str, Any]) -> int:
        return memory.get(p["metadata"]["uid"], 0)

    if resource != "memory":
        return sorted(pods, key=lambda p: (_priority(p), QOS_ORDER.get(qos_class(p.get("spec") or {}), 0)))
    return sorted(pods, key=lambda p: (not usage(p) > _memory_request(p), _priority(p),
                                       -(usage(p) - _memory_request(p))))


def _bytes(n: int) -> str:
    return str(Quantity(Fraction(n), BINARY_SI))


def eviction_message(resource: str, threshold: Threshold, observed: Observation, pod: dict[str, Any],
                     container_memory: dict[str, int]) -> str:
    """Kubernetes' words: "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi.
    Container app was using 60Mi, request is 0, has larger consumption of memory." """
    quantity = threshold.quantity if threshold.quantity is not None else Quantity(
        Fraction(threshold.value(observed.capacity)), BINARY_SI)
    available = _bytes(observed.available) if resource in ("memory", "ephemeral-storage") else str(observed.available)
    message = f"The node was low on resource: {resource}. Threshold quantity: {quantity}, available: {available}. "
    if resource == "memory":
        for c in (pod.get("spec") or {}).get("containers") or []:
            used = container_memory.get(c["name"])
            if used is None:
                continue
            request = ((c.get("resources") or {}).get("requests") or {}).get("memory")
            requested = parse_quantity(request).int_value() if request is not None else 0
            if used > requested:
                message += (f"Container {c['name']} was using {_bytes(used)}, request is {request or 0}, "
                            f"has larger consumption of {resource}. ")
    return message.rstrip()


@dataclass
class EvictionManager:
    thresholds: list[Threshold]
    observe: Callable[[], Observations]
    recorder: Recorder
    node_ref: Callable[[], dict[str, Any]]
    period: float = 10.0                  # seconds between two checks (Kubernetes' monitoring period)
    transition_period: float = 300.0      # a condition stays true this long after its signal recovered
    clock: Callable[[], float] = time.monotonic
    _last_met: dict[str, float] = field(default_factory=dict)   # condition -> when a threshold of it was met
    _evicted: set[str] = field(default_factory=set)             # uids evicted (until they leave the active pods)
    _met_now: set[str] = field(default_factory=set)             # conditions whose thresholds the last check met

    def conditions(self) -> dict[str, bool]:
        """The node's pressure conditions (for the node status)."""
        now = self.clock()
        return {c: c in self._met_now or (c in self._last_met and now - self._last_met[c] < self.transition_period)
                for c in CONDITIONS}

    def admit(self, pod: dict[str, Any]) -> str | None:
        """Why a new pod may not start on this node under pressure (None: it may): under memory pressure alone a
        BestEffort pod that does not tolerate the memory-pressure taint; under disk or PID pressure any pod
        but a critical one (Kubernetes' eviction admission)."""
        conditions = [c for c, on in self.conditions().items() if on]
        if not conditions or is_critical(pod):
            return None
        if conditions == ["MemoryPressure"]:
            spec = pod.get("spec") or {}
            taint = {"key": MEMORY_PRESSURE_TAINT, "effect": "NoSchedule"}
            if qos_class(spec) != "BestEffort" or any(tolerates(t, taint) for t in spec.get("tolerations") or []):
                return None
        return f"The node had condition: [{' '.join(conditions)}]."

    async def synchronize(self, active_pods: list[dict[str, Any]],
                          usage: Callable[[], Awaitable[list[PodUsage]]],
                          evict: Callable[[dict[str, Any], str], None],
                          reclaim: Callable[[str, int | None], Awaitable[None]] | None = None
                          ) -> dict[str, Any] | None:
        """One check; the pod it evicted, if any."""
        observed = await asyncio.to_thread(self.observe)
        met = thresholds_met(self.thresholds, observed)
        now = self.clock()
        self._met_now = {SIGNALS[t.signal][0] for t in met}
        for condition in self._met_now:
            self._last_met[condition] = now
        if not met:
            return None
        threshold = met[0]
        resource = SIGNALS[threshold.signal][1]
        self.recorder.warning(self.node_ref(), "EvictionThresholdMet", f"Attempting to reclaim {resource}")
        if reclaim is not None and resource != "memory":
            # unused images, before any pod: the bytes missing (None: inodes, as many as can go)
            seen = observed[threshold.signal]
            missing = threshold.value(seen.capacity) - seen.available if threshold.signal.endswith(".available") \
                else None
            await reclaim(threshold.signal, missing)
            observed = await asyncio.to_thread(self.observe)
            if threshold not in thresholds_met(self.thresholds, observed):
                log.info("eviction threshold %s no longer met after reclaiming node-level resources", threshold)
                return None
        uids = {p["metadata"]["uid"] for p in active_pods}
        self._evicted &= uids
        candidates = [p for p in active_pods if not is_critical(p) and p["metadata"]["uid"] not in self._evicted]
        if not candidates:
            log.warning("eviction threshold %s met, but no pod may be evicted", threshold)
            return None
        usages = {u.pod["metadata"]["uid"]: u for u in await usage()}
        memory = {uid: u.stats.memory_working_set_bytes for uid, u in usages.items()}
        pod = rank_for(resource, candidates, memory)[0]
        uid = pod["metadata"]["uid"]
        container_memory: dict[str, int] = {}
        if uid in usages:
            names = usages[uid].container_names
            container_memory = {names.get(c.container_id, c.container_id): c.memory_working_set_bytes
                                for c in usages[uid].stats.containers}
        message = eviction_message(resource, threshold, observed[threshold.signal], pod, container_memory)
        log.info("evicting pod %s/%s: %s", pod["metadata"].get("namespace"), pod["metadata"]["name"], message)
        self._evicted.add(uid)
        evict(pod, message)
        return pod

    async def run(self, active_pods: Callable[[], list[dict[str, Any]]],
                  usage: Callable[[], Awaitable[list[PodUsage]]], evict: Callable[[dict[str, Any], str], None],
                  reclaim: Callable[[str, int | None], Awaitable[None]] | None = None) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.synchronize(active_pods(), usage, evict, reclaim)
            except OSError as e:
                log.warning("eviction manager: cannot observe the node: %s", e)
