"""Hollow nodes (like kubemark): many Nodes from one process, each the real kubelet on a fake runtime.

Every hollow node is a NodeAgent (registration, Lease heartbeat, node status) and a PodWorkers (plan, act,
status) like a real node's, running its pods on its own in-memory FakeRuntime (no thread, process or file per
pod). What differs is only what must be made up: the machine (capacity from the flags, a stable made-up
InternalIP), pod IPs (from the node's podCIDR, never configured anywhere: httpGet/tcpSocket probes pass
unsent), and Events (not written: thousands of fake pods' Events would only load the API server). For
scale, the process shares one pod informer (each node sees its own share), one Service informer and one
node informer (a node starts its pods once the node IPAM controller gave it a podCIDR). A restarted process
gives each running pod its old IP again.
"""
from __future__ import annotations

import asyncio
import builtins
import hashlib
import ipaddress
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pklib.client import Client
from pklib.informer import Handler, Informer, Obj
from pklib.objects import key_of
from pklib.resources import NODES, PODS, SERVICES

from kubelet.containerconfig import PodConfigOptions
from kubelet.nodestatus import NodeAgent, NodeConfig
from kubelet.podworkers import PodWorkerConfig, PodWorkers
from kubelet.recorder import NullRecorder
from kubelet.runtime.fake import FakeRuntime
from kubelet.volumes import VolumeManager

log = logging.getLogger("kubelet.hollow")

KUBELET_VERSION = "v1.32.0-pkube-hollow"
RUNTIME_VERSION = "fake://0"


@dataclass
class HollowConfig:
    count: int = 1
    name_prefix: str = "hollow-node"
    cpu: str = "4"
    memory: str = "16Gi"
    max_pods: int = 110
    lease_duration: int = 40
    renew_interval: float = 10.0
    workers: int = 16             # registrations at once
    pod_workers: int = 2          # per node
    relist_period: float = 10.0   # fake containers only stop when told to: a relist rarely finds anything
    sync_frequency: float = 60.0
    status_interval: float = 60.0  # a made-up machine never changes: its node status is checked less often
    root_parent: str | None = None  # where the process's pod-volume directory is made (default: the temp dir)
    port: int = 10250             # the kubelet API port the Nodes advertise (nothing listens)


def node_names(cfg: HollowConfig) -> list[str]:
    return [f"{cfg.name_prefix}-{i}" for i in range(cfg.count)]


def internal_ip(name: str) -> str:
    """A stable, made-up address for the node (nothing is ever sent to it): 100.64.0.0/10 by name hash."""
    offset = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % (2**22 - 2) + 1
    return str(ipaddress.IPv4Address("100.64.0.0") + offset)


class HollowMachine:
    """The machine a hollow node reports (nodestatus.Machine): capacity from the flags, never under pressure."""

    def __init__(self, name: str, cfg: HollowConfig) -> None:
        self.name = name
        self.cfg = cfg

    def labels(self) -> dict[str, str]:
        return {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", "pkube.io/hollow": "true"}

    def capacity(self) -> tuple[dict[str, str], dict[str, str]]:
        cap = {"cpu": self.cfg.cpu, "memory": self.cfg.memory, "pods": str(self.cfg.max_pods),
               "ephemeral-storage": "100Gi"}
        return cap, dict(cap)

    def pressure(self) -> dict[str, bool]:
        return {"MemoryPressure": False, "DiskPressure": False, "PIDPressure": False}

    def addresses(self, ip: str) -> list[dict[str, str]]:
        return [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": self.name}]

    def node_info(self, runtime_version: str) -> dict[str, str]:
        return {"kubeletVersion": KUBELET_VERSION, "containerRuntimeVersion": runtime_version,
                "operatingSystem": "linux", "architecture": "amd64", "osImage": "hollow", "kernelVersion": "hollow",
                "machineID": "", "systemUUID": "", "bootID": ""}


def node_agent(client: Client, name: str, cfg: HollowConfig, root: Path) -> NodeAgent:
    return NodeAgent(client, NodeConfig(name=name, root_dir=root, max_pods=cfg.max_pods, node_ip=internal_ip(name),
                                        lease_duration=cfg.lease_duration, renew_interval=cfg.renew_interval,
                                        status_interval=cfg.status_interval, port=cfg.port),
                     RUNTIME_VERSION, HollowMachine(name, cfg))


def node_object(name: str, cfg: HollowConfig) -> Obj:
    """The Node a hollow node registers."""
    agent = node_agent(None, name, cfg, Path("/nonexistent"))  # type: ignore[arg-type]  # no API call here
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": agent.labels()},
            "spec": {}, "status": agent.desired_status({})}


class NodePods:
    """One node's share of the process's pod informer (podworkers.PodSource)."""

    def __init__(self, informer: Informer, node: str) -> None:
        self.informer = informer
        self.node = node
        self.handlers: list[Handler] = []

    @property
    def store(self) -> "NodePods":
        return self

    @property
    def synced(self) -> asyncio.Event:
        return self.informer.synced

    def add_handler(self, handler: Handler) -> None:
        """Like Informer.add_handler: a handler added after the initial list hears of the pods already there."""
        self.handlers.append(handler)
        if self.informer.has_synced and handler.on_add:
            for pod in self.list():
                handler.on_add(pod)

    async def run(self) -> None:
        raise RuntimeError("the shared pod informer is run by HollowKubelet")

    def get(self, key: str) -> Obj | None:
        pod = self.informer.store.get(key)
        return pod if pod is not None and (pod.get("spec") or {}).get("nodeName") == self.node else None

    def list(self) -> list[Obj]:
        return list(self.informer.store.by_index("node", self.node))

    def keys(self) -> builtins.list[str]:
        return [key_of(p) for p in self.list()]


def _node_of(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


class HollowKubelet:
    def __init__(self, client: Client, cfg: HollowConfig):
        self.client = client
        self.cfg = cfg
        self.names = node_names(cfg)
        self.pods = Informer(client, PODS)
        self.nodes = Informer(client, NODES, label_selector="pkube.io/hollow=true")
        self.services = Informer(client, SERVICES)
        self.views = {name: NodePods(self.pods, name) for name in self.names}
        self.pods.add_handler(Handler(self._added, self._updated, self._deleted))
        # Pod volumes, if a pod has any; removed when the process stops, left in root_parent if it is killed.
        self.root = Path(tempfile.mkdtemp(prefix="pkube-hollow-", dir=cfg.root_parent))
        self.agents = {name: node_agent(client, name, cfg, self.root / name) for name in self.names}
        self.workers: dict[str, PodWorkers] = {}

    def _handlers(self, pod: Obj) -> list[Handler]:
        view = self.views.get(_node_of(pod))
        return view.handlers if view else []

    def _added(self, pod: Obj) -> None:
        for h in self._handlers(pod):
            if h.on_add:
                h.on_add(pod)

    def _updated(self, old: Obj, new: Obj) -> None:
        for h in self._handlers(new):   # a binding moves a pod into a node's share: an update it must see
            if h.on_update:
                h.on_update(old, new)

    def _deleted(self, pod: Obj) -> None:
        for h in self._handlers(pod):
            if h.on_delete:
                h.on_delete(pod)

    async def _services(self, namespace: str) -> list[Obj]:
        return list(self.services.store.by_index("namespace", namespace))

    async def run(self, ready: asyncio.Event) -> None:
        try:
            await self._run(ready)
        finally:
            try:
                for w in self.workers.values():
                    await w.probes.close()
            finally:
                shutil.rmtree(self.root, ignore_errors=True)

    async def _run(self, ready: asyncio.Event) -> None:
        sem = asyncio.Semaphore(self.cfg.workers)

        async def register(agent: NodeAgent) -> None:
            async with sem:
                await agent.register()

        await asyncio.gather(*(register(a) for a in self.agents.values()))
        log.info("registered %d hollow nodes (%s-0..%d)", len(self.names), self.cfg.name_prefix, len(self.names) - 1)
        async with asyncio.TaskGroup() as tg:
            for informer, what in ((self.nodes, "nodes"), (self.services, "services"), (self.pods, "pods")):
                tg.create_task(informer.run(), name=f"hollow:{what}")
            for informer in (self.nodes, self.services, self.pods):
                await informer.synced.wait()
            for i, name in enumerate(self.names):
                tg.create_task(self._run_node(name, i), name=f"hollow:{name}")
            ready.set()

    async def _pod_cidr(self, name: str) -> str:
        """The node's podCIDR from the node informer (no API call per node while we wait)."""
        while True:
            cidr = ((self.nodes.store.get(name) or {}).get("spec") or {}).get("podCIDR")
            if cidr:
                return str(cidr)
            await asyncio.sleep(0.5)

    async def _run_node(self, name: str, index: int) -> None:
        agent = self.agents[name]
        # heartbeats spread evenly over the renew interval (the nodes registered at about the same time)
        first = (index + 1) * self.cfg.renew_interval / len(self.names)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(agent.heartbeat(first_delay=first), name=f"hollow:{name}:heartbeat")
            runtime = FakeRuntime(await self._pod_cidr(name), record_calls=False)
            for pod in self.views[name].list():   # a restarted process: running pods keep their IPs
                status = pod.get("status") or {}
                if status.get("podIP") and status.get("phase") not in ("Succeeded", "Failed"):
                    runtime.reserve_ip(pod["metadata"]["uid"], status["podIP"])
            workers = self.workers[name] = PodWorkers(
                self.client, agent.ip, runtime, VolumeManager(self.root / name), PodWorkerConfig(
                    node_name=name, workers=self.cfg.pod_workers, relist_period=self.cfg.relist_period,
                    sync_frequency=self.cfg.sync_frequency, network_probes=False,
                    pod=PodConfigOptions(allocatable=agent.machine.capacity()[1])),
                pods=self.views[name], recorder=NullRecorder(), services=self._services)
            tg.create_task(workers.run(asyncio.Event(), watch_pods=False), name=f"hollow:{name}:pods")
