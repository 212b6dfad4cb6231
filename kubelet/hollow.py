"""Hollow nodes (like kubemark): many fake Nodes from one process, for scale testing.

Each hollow node registers a Node with realistic capacity, heartbeats through its Lease
in kube-node-lease, and reports the pods bound to it Running and Ready (pod IP from the
node's podCIDR) without starting containers. A pod being deleted is finished at once
(DELETE with gracePeriodSeconds=0), which is what a kubelet does after its containers
stopped. One pod informer serves all nodes of the process; a work queue of pod keys
does the status writes, so a burst of bindings is absorbed with bounded concurrency.
"""
from __future__ import annotations

import asyncio
import copy
import hashlib
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from pklib.client import Client
from pklib.errors import ApiError, ConnectionFailed, is_already_exists, is_conflict, is_not_found
from pklib.informer import Handler, Informer, Obj
from pklib.api.timefmt import micro_now, now_rfc3339
from pklib.api.wellknown import NODE_LEASE_NAMESPACE as LEASE_NAMESPACE
from pklib.objects import key_of
from pklib.resources import LEASES, NAMESPACES, NODES, PODS
from pklib.workqueue import WorkQueue, run_workers

log = logging.getLogger("kubelet.hollow")


KUBELET_VERSION = "v1.32.0-pkube-hollow"


@dataclass
class HollowConfig:
    count: int = 1
    name_prefix: str = "hollow-node"
    cpu: str = "4"
    memory: str = "16Gi"
    max_pods: int = 110
    lease_duration: int = 40
    renew_interval: float = 10.0
    workers: int = 16


def node_names(cfg: HollowConfig) -> list[str]:
    return [f"{cfg.name_prefix}-{i}" for i in range(cfg.count)]


def internal_ip(name: str) -> str:
    """A stable, made-up address for the node (nothing is ever sent to it): 100.64.0.0/10 by name hash."""
    offset = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % (2**22 - 2) + 1
    return str(ipaddress.IPv4Address("100.64.0.0") + offset)


def node_object(name: str, cfg: HollowConfig) -> Obj:
    capacity = {"cpu": cfg.cpu, "memory": cfg.memory, "pods": str(cfg.max_pods), "ephemeral-storage": "100Gi"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
            "pkube.io/hollow": "true"}},
        "spec": {},
        "status": node_status(name, capacity),
    }


def node_status(name: str, capacity: dict[str, str]) -> Obj:
    now = now_rfc3339()

    def cond(type_: str, status: str, reason: str, message: str) -> Obj:
        return {"type": type_, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now}

    return {
        "capacity": capacity, "allocatable": dict(capacity),
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": internal_ip(name)}, {"type": "Hostname", "address": name}],
        "nodeInfo": {"kubeletVersion": KUBELET_VERSION, "containerRuntimeVersion": "hollow://0",
                     "operatingSystem": "linux", "architecture": "amd64", "osImage": "hollow",
                     "kernelVersion": "hollow", "machineID": "", "systemUUID": "", "bootID": ""},
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
    }


class PodIPs:
    """Per-node allocation of pod IPs from the node's podCIDR (.1 is left for the node's bridge)."""

    def __init__(self) -> None:
        self._used: dict[str, dict[str, str]] = {}  # node -> ip -> pod uid

    def claim(self, node: str, ip: str, uid: str) -> None:
        self._used.setdefault(node, {})[ip] = uid

    def allocate(self, node: str, cidr: str, uid: str) -> str | None:
        used = self._used.setdefault(node, {})
        for ip, owner in used.items():
            if owner == uid:
                return ip
        net = ipaddress.ip_network(cidr, strict=False)
        for n, addr in enumerate(net.hosts()):
            if n == 0:
                continue  # the gateway
            ip = str(addr)
            if ip not in used:
                used[ip] = uid
                return ip
        return None

    def release(self, node: str, uid: str) -> None:
        used = self._used.get(node, {})
        for ip in [ip for ip, owner in used.items() if owner == uid]:
            del used[ip]


class HollowKubelet:
    def __init__(self, client: Client, cfg: HollowConfig):
        self.client = client
        self.cfg = cfg
        self.names = node_names(cfg)
        self._mine = set(self.names)
        self.pods = Informer(client, PODS)
        self.nodes = Informer(client, NODES, label_selector="pkube.io/hollow=true")
        self.queue = WorkQueue("hollow-pods")
        self.ips = PodIPs()
        self._leases: dict[str, Obj] = {}
        self.pods.add_handler(Handler(self._enqueue_pod, lambda old, new: self._enqueue_pod(new), self._pod_gone))
        self.nodes.add_handler(Handler(self._node_changed, lambda old, new: self._node_changed(new)))

    # -- handlers -------------------------------------------------------------------------------

    def _enqueue_pod(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName") in self._mine:
            self.queue.add(key_of(pod))

    def _pod_gone(self, pod: Obj) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node in self._mine:
            self.ips.release(node, (pod.get("metadata") or {}).get("uid") or "")

    def _node_changed(self, node: Obj) -> None:
        # A podCIDR may just have arrived: pods waiting for an IP can start now.
        name = key_of(node)
        if name in self._mine and (node.get("spec") or {}).get("podCIDR"):
            for pod in self.pods.store.by_index("node", name):
                self.queue.add(key_of(pod))

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, ready: asyncio.Event) -> None:
        await self._ensure_lease_namespace()
        sem = asyncio.Semaphore(self.cfg.workers)

        async def register(name: str) -> None:
            async with sem:
                await self._register(name)

        await asyncio.gather(*(register(n) for n in self.names))
        log.info("registered %d hollow nodes (%s-0..%d)", len(self.names), self.cfg.name_prefix, len(self.names) - 1)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.nodes.run(), name="hollow:nodes")
            tg.create_task(self.heartbeat(), name="hollow:leases")
            await self.nodes.synced.wait()
            for pod in await self._existing_pods():
                self._remember_ip(pod)
            tg.create_task(self.pods.run(), name="hollow:pods")
            await self.pods.synced.wait()
            tg.create_task(run_workers(self.queue, self.sync_pod, self.cfg.workers, "hollow-pods"))
            ready.set()

    async def _existing_pods(self) -> list[Obj]:
        items = (await self.client.list_all(PODS)).get("items") or []
        return [p for p in items if (p.get("spec") or {}).get("nodeName") in self._mine]

    def _remember_ip(self, pod: Obj) -> None:
        ip = (pod.get("status") or {}).get("podIP")
        if ip:
            self.ips.claim(pod["spec"]["nodeName"], ip, pod["metadata"].get("uid") or "")

    async def _ensure_lease_namespace(self) -> None:
        try:
            await self.client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": LEASE_NAMESPACE}})
        except ApiError as e:
            if not is_already_exists(e):
                raise

    async def _register(self, name: str) -> None:
        """Create the Node (or take over an existing one, as a restarted kubelet does) and its Lease."""
        wanted = node_object(name, self.cfg)
        try:
            node = await self.client.create(NODES, wanted)
        except ApiError as e:
            if not is_already_exists(e):
                raise
            node = await self.client.get(NODES, name)
        if (node.get("status") or {}).get("conditions") != wanted["status"]["conditions"]:
            node = copy.deepcopy(node)
            node["status"] = {**(node.get("status") or {}), **wanted["status"]}
            node = await self.client.update_status(NODES, node)
        await self._renew(name, node)

    # -- heartbeats -----------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Renew every node's Lease once per renew_interval, spread evenly over the interval.

        Renewals run as bounded concurrent tasks: a slow API server must delay a renewal by
        its own latency, not by the latency of every node before it in the round.
        """
        loop = asyncio.get_running_loop()
        step = self.cfg.renew_interval / max(1, len(self.names))
        slots = asyncio.Semaphore(self.cfg.workers)
        in_flight: dict[str, asyncio.Task[None]] = {}

        async def renew(name: str) -> None:
            async with slots:
                try:
                    await self._renew(name)
                except (ApiError, ConnectionFailed) as e:
                    log.warning("lease of %s not renewed: %s", name, e)

        next_at = loop.time()
        try:
            while True:
                for name in self.names:
                    next_at += step
                    delay = next_at - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if name not in in_flight:  # the previous renewal of this node is still going
                        task = in_flight[name] = asyncio.create_task(renew(name))
                        task.add_done_callback(lambda t, n=name: in_flight.pop(n, None))  # type: ignore[misc]
                # After a long stall (e.g. the API server was down) start afresh instead of catching up.
                next_at = max(next_at, loop.time())
        finally:
            for task in list(in_flight.values()):
                task.cancel()

    async def _renew(self, name: str, node: Obj | None = None) -> None:
        lease = self._leases.get(name)
        for _ in range(3):
            try:
                if lease is None:
                    lease = await self._get_or_create_lease(name, node)
                else:
                    spec = dict(lease.get("spec") or {}, renewTime=micro_now(), holderIdentity=name,
                                leaseDurationSeconds=self.cfg.lease_duration)
                    lease = await self.client.update(LEASES, {**lease, "spec": spec})
                self._leases[name] = lease
                return
            except ApiError as e:
                if not (is_conflict(e) or is_not_found(e)):
                    raise
                lease = None  # changed or deleted under us: start from what the server has

    async def _get_or_create_lease(self, name: str, node: Obj | None) -> Obj:
        try:
            lease = await self.client.get(LEASES, name, LEASE_NAMESPACE)
        except ApiError as e:
            if not is_not_found(e):
                raise
            if node is None:
                node = await self.client.get(NODES, name)
            now = micro_now()
            return await self.client.create(LEASES, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}]},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": self.cfg.lease_duration,
                         "acquireTime": now, "renewTime": now}}, LEASE_NAMESPACE)
        spec = dict(lease.get("spec") or {}, renewTime=micro_now(), holderIdentity=name,
                    leaseDurationSeconds=self.cfg.lease_duration)
        return await self.client.update(LEASES, {**lease, "spec": spec})

    # -- pods -----------------------------------------------------------------------------------

    async def sync_pod(self, key: Any) -> None:
        pod = self.pods.store.get(str(key))
        if pod is None:
            return
        meta = pod["metadata"]
        node_name = pod["spec"].get("nodeName")
        if meta.get("deletionTimestamp"):
            # Nothing runs, so nothing to wait for: finish the graceful deletion now.
            try:
                await self.client.request("DELETE", PODS.path(meta["namespace"], meta["name"]), body={
                    "kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                    "preconditions": {"uid": meta.get("uid")}})
            except ApiError as e:
                if not (is_not_found(e) or is_conflict(e)):
                    raise
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        node = self.nodes.store.get(node_name)
        cidr = ((node or {}).get("spec") or {}).get("podCIDR")
        if not cidr:
            return  # the node IPAM controller has not given this node a range yet; the node update requeues us
        ip = (pod.get("status") or {}).get("podIP") or self.ips.allocate(node_name, cidr, meta.get("uid") or "")
        if ip is None:
            log.warning("%s: no free pod IP left in %s on %s", key, cidr, node_name)
            return
        status = running_status(pod, node or {}, ip)
        if _same_status(pod.get("status") or {}, status):
            return
        # A merge patch of the whole status, like the kubelet's status manager: we own the
        # status, so there is nothing to conflict about with writers of other fields.
        try:
            await self.client.patch(PODS, meta["name"], {"status": status}, meta["namespace"], subresource="status")
        except ApiError as e:
            if not is_not_found(e):
                raise
            self.ips.release(node_name, meta.get("uid") or "")


def running_status(pod: Obj, node: Obj, ip: str) -> Obj:
    """The status a kubelet reports once all containers run and are ready."""
    old = pod.get("status") or {}
    started = old.get("startTime") or now_rfc3339()
    host_ip = next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                    if a.get("type") == "InternalIP"), "")
    uid = pod["metadata"].get("uid") or ""
    containers = []
    for c in pod["spec"].get("containers") or []:
        containers.append({
            "name": c["name"], "image": c.get("image", ""), "imageID": f"hollow://{c.get('image', '')}",
            "containerID": f"hollow://{uid}-{c['name']}", "ready": True, "started": True, "restartCount": 0,
            "state": {"running": {"startedAt": started}}})
    conditions = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": started}
                  for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    return {"phase": "Running", "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": ip, "podIPs": [{"ip": ip}], "startTime": started, "containerStatuses": containers,
            "qosClass": old.get("qosClass") or "BestEffort"}


def _same_status(old: Obj, new: Obj) -> bool:
    """Equal apart from timestamps we would only refresh needlessly."""
    return (old.get("phase") == new["phase"] and old.get("podIP") == new["podIP"]
            and old.get("hostIP") == new["hostIP"]
            and all(c.get("ready") for c in old.get("containerStatuses") or [{}])
            and len(old.get("containerStatuses") or []) == len(new["containerStatuses"]))
