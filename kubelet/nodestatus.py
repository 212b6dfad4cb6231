"""The kubelet's Node (NodeAgent): registration (capacity/allocatable, addresses, nodeInfo, labels, conditions), the Lease
heartbeat in kube-node-lease, node status computed every `status_interval` and written when it changed or
`report_interval` passed (Kubernetes' nodeStatusUpdateFrequency / nodeStatusReportFrequency: the Lease is
the liveness signal, so an unchanged status is only re-posted every few minutes), and the wait for
spec.podCIDR (given by the node IPAM controller)."""
from __future__ import annotations

import asyncio
import copy
import logging
import os
import platform
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from pklib.client import Client
from pklib.api.leases import NodeLease
from pklib.api.timefmt import now_rfc3339
from pklib.errors import ApiError, ConnectionFailed, is_already_exists
from pklib.quantity import to_bytes, to_millicores
from pklib.resources import NODES

log = logging.getLogger("kubelet.nodestatus")

KUBELET_VERSION = "v1.32.0-pkube"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


@dataclass
class NodeConfig:
    name: str
    root_dir: Path
    max_pods: int = 110
    reserved_cpu: str = "0"
    reserved_memory: str = "0"
    node_ip: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    lease_duration: int = 40
    renew_interval: float = 10.0
    status_interval: float = 10.0
    report_interval: float = 300.0
    port: int = 0                  # the kubelet API's port (0: not served)


def meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0]) * 1024
    return out


def _os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def runtime_version() -> str:
    try:
        out = subprocess.run(["runc", "--version"], capture_output=True, text=True, timeout=10).stdout
        return "runc://" + out.split()[2]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "runc://unknown"


def capacity(cfg: NodeConfig) -> tuple[dict[str, str], dict[str, str]]:
    """(capacity, allocatable): the host's cpu, memory and disk, minus the configured reservations."""
    cpus = os.cpu_count() or 1
    mem = meminfo()["MemTotal"]
    disk = shutil.disk_usage(cfg.root_dir).total
    cap = {"cpu": str(cpus), "memory": f"{mem // 1024}Ki", "pods": str(cfg.max_pods),
           "ephemeral-storage": f"{disk // 1024}Ki"}
    alloc_cpu = max(0, cpus * 1000 - to_millicores(cfg.reserved_cpu))
    alloc_mem = max(0, mem - to_bytes(cfg.reserved_memory))
    alloc = dict(cap, cpu=f"{alloc_cpu}m", memory=f"{alloc_mem // 1024}Ki")
    return cap, alloc


_CONDITION_TEXT = {
    "MemoryPressure": (("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                       ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available")),
    "DiskPressure": (("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                     ("KubeletHasDiskPressure", "kubelet has disk pressure")),
    "PIDPressure": (("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    ("KubeletHasInsufficientPID", "kubelet has insufficient PID available")),
}


class Machine(Protocol):
    """What a node reports about the machine it runs on: the host (HostMachine), or a made-up one (hollow)."""
    def labels(self) -> dict[str, str]: ...
    def capacity(self) -> tuple[dict[str, str], dict[str, str]]: ...
    def pressure(self) -> dict[str, bool]: ...
    def addresses(self, ip: str) -> list[dict[str, str]]: ...
    def node_info(self, runtime_version: str) -> dict[str, str]: ...


NO_PRESSURE = {"MemoryPressure": False, "DiskPressure": False, "PIDPressure": False}


class HostMachine:
    """`pressure`: the node's pressure conditions, as the eviction manager (kubelet/eviction.py) sees them."""
    def __init__(self, cfg: NodeConfig, pressure: Callable[[], dict[str, bool]] = lambda: NO_PRESSURE) -> None:
        self.cfg = cfg
        self._pressure = pressure

    def labels(self) -> dict[str, str]:
        arch = _ARCH.get(platform.machine(), platform.machine())
        return {"kubernetes.io/hostname": self.cfg.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
                "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch}

    def capacity(self) -> tuple[dict[str, str], dict[str, str]]:
        return capacity(self.cfg)

    def pressure(self) -> dict[str, bool]:
        return self._pressure()

    def addresses(self, ip: str) -> list[dict[str, str]]:
        return [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": socket.gethostname()}]

    def node_info(self, runtime_version: str) -> dict[str, str]:
        return {"kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                "containerRuntimeVersion": runtime_version, "operatingSystem": "linux",
                "architecture": _ARCH.get(platform.machine(), platform.machine()), "osImage": _os_image(),
                "kernelVersion": platform.release(), "machineID": _read("/etc/machine-id"),
                "systemUUID": _read("/etc/machine-id"), "bootID": _read("/proc/sys/kernel/random/boot_id")}


class NodeAgent:
    def __init__(self, client: Client, cfg: NodeConfig, runtime_version: str, machine: Machine | None = None) -> None:
        self.client = client
        self.cfg = cfg
        self.runtime_version = runtime_version
        self.machine: Machine = machine or HostMachine(cfg)
        self.ip = cfg.node_ip  # resolved by the caller (host_ip() must run outside the event loop)
        self.node: dict[str, Any] = {}
        self.lease = NodeLease(client, cfg.name, cfg.lease_duration, self._node_uid)

    async def _node_uid(self) -> str:
        if not self.node:
            self.node = await self.client.get(NODES, self.cfg.name)
        return str(self.node["metadata"]["uid"])

    def labels(self) -> dict[str, str]:
        return {**self.machine.labels(), **self.cfg.labels}

    def desired_status(self, old: dict[str, Any]) -> dict[str, Any]:
        cap, alloc = self.machine.capacity()
        now = now_rfc3339()
        conds = []
        old_conds = {c.get("type"): c for c in old.get("conditions") or []}
        flags = self.machine.pressure()
        wanted: list[tuple[str, str, str, str]] = []
        for t, (ok, bad) in _CONDITION_TEXT.items():
            reason, msg = bad if flags[t] else ok
            wanted.append((t, "True" if flags[t] else "False", reason, msg))
        wanted.append(("Ready", "True", "KubeletReady", "kubelet is posting ready status"))
        for t, status, reason, msg in wanted:
            prev = old_conds.get(t) or {}
            since = prev.get("lastTransitionTime") if prev.get("status") == status else None
            conds.append({"type": t, "status": status, "reason": reason, "message": msg,
                          "lastHeartbeatTime": now, "lastTransitionTime": since or now})
        return {
            "capacity": cap, "allocatable": alloc, "conditions": conds, "addresses": self.machine.addresses(self.ip),
            "nodeInfo": self.machine.node_info(self.runtime_version),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.cfg.port}},
        }

    async def register(self) -> dict[str, Any]:
        """Create the Node, or take over an existing one (a restarted kubelet), and its Lease (in kube-node-lease,
        which the apiserver keeps)."""
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.cfg.name, "labels": self.labels()},
                "spec": {}, "status": self.desired_status({})}
        try:
            node = await self.client.create(NODES, body)
        except ApiError as e:
            if not is_already_exists(e):
                raise
            node = await self.client.get(NODES, self.cfg.name)
            labels = node["metadata"].get("labels") or {}
            if any(labels.get(k) != v for k, v in self.labels().items()):
                node = await self.client.patch(NODES, self.cfg.name, {"metadata": {"labels": self.labels()}})
        # the status subresource: a create may have dropped it, and a taken-over node has stale conditions
        node = await self.client.patch(NODES, self.cfg.name, {"status": self.desired_status(node.get("status") or {})},
                                       subresource="status")
        self.node = node
        await self.lease.renew()
        return node

    async def wait_pod_cidr(self) -> str:
        """spec.podCIDR, once the node IPAM controller has set it."""
        waited = 0.0
        while True:
            node = await self.client.get(NODES, self.cfg.name)
            cidr = (node.get("spec") or {}).get("podCIDR")
            if cidr:
                self.node = node
                return str(cidr)
            if waited % 10 < 0.25:
                log.info("waiting for node %s to get a podCIDR (is the nodeipam controller running?)", self.cfg.name)
            await asyncio.sleep(0.25)
            waited += 0.25

    async def renew_lease(self) -> None:
        await self.lease.renew()

    async def heartbeat(self, first_delay: float | None = None) -> None:
        """Renew the Lease every renew_interval; compute the node status every status_interval and write it
        when it changed or report_interval passed. One timer serves both (by default they coincide).
        `first_delay` (default: one interval) spreads the heartbeats of many nodes of one process."""
        loop = asyncio.get_running_loop()
        now = last_report = loop.time()
        next_lease = now + (self.cfg.renew_interval if first_delay is None else first_delay)
        next_status = now + (self.cfg.status_interval if first_delay is None else first_delay)
        while True:
            await asyncio.sleep(max(0.0, min(next_lease, next_status) - loop.time()))
            now = loop.time()
            try:
                if now >= next_lease:
                    next_lease = now + self.cfg.renew_interval
                    await self.renew_lease()
                if now >= next_status:
                    next_status = now + self.cfg.status_interval
                    old = self.node.get("status") or {}
                    new = self.desired_status(old)
                    if now - last_report >= self.cfg.report_interval or _changed(old, new):
                        self.node = await self.client.patch(NODES, self.cfg.name, {"status": new},
                                                            subresource="status")
                        last_report = loop.time()
            except (ApiError, ConnectionFailed) as e:
                log.warning("node %s heartbeat failed: %s", self.cfg.name, e)


def _changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Anything but heartbeat times differs."""
    def strip(s: dict[str, Any]) -> dict[str, Any]:
        s = copy.deepcopy(s)
        for c in s.get("conditions") or []:
            c.pop("lastHeartbeatTime", None)
        return {k: s.get(k) for k in ("capacity", "allocatable", "conditions", "addresses", "nodeInfo")}
    return strip(old) != strip(new)
