"""A private control plane per test module (own apiserver on the session etcd, under its own
prefix) plus component processes: scheduler, controller-manager, hollow kubelets.

Nodes are cluster-scoped, so scheduling tests cannot share an API server with tests that
create nodes of their own: a private apiserver gives each module its own set of nodes.
Every process is stopped by its PID at the end; a test may SIGKILL one on purpose.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.controlplane import ROOT, ApiServer, Etcd, _stop, start_apiserver
from tests.util import unique, wait_for

PODS = lookup("pods")
NODES = lookup("nodes")
LEASES = lookup("leases")
EVENTS = lookup("events")
NAMESPACES = lookup("namespaces")
PVS = lookup("persistentvolumes")
PVCS = lookup("persistentvolumeclaims")
assert PODS and NODES and LEASES and EVENTS and NAMESPACES and PVS and PVCS


@dataclass
class Component:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: str

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL: the process dies without releasing anything (a crashed or partitioned node/leader)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class Cluster:
    api: ApiServer
    tmp: str
    components: list[Component] = field(default_factory=list)

    def start(self, component: str, *args: str) -> Component:
        log = os.path.join(self.tmp, f"{component}-{unique('log')}.log")
        proc = subprocess.Popen(
            [sys.executable, "-m", "launcher", component, "--server", self.api.url, "--token", self.api.token, *args],
            cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        c = Component(component, proc, log)
        self.components.append(c)
        return c

    def stop_all(self) -> None:
        for c in reversed(self.components):
            _stop(c.proc)
        self.components.clear()

    def client(self) -> Client:
        return Client(self.api.url, self.api.token)


@pytest.fixture(scope="module")
def cluster(etcd: Etcd) -> Iterator[Cluster]:
    tmp = tempfile.mkdtemp(prefix="pkt-cluster-")
    api = start_apiserver(tmp, etcd.url)
    c = Cluster(api, tmp)
    try:
        yield c
    finally:
        c.stop_all()
        _stop(api.proc)
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
async def cclient(cluster: Cluster) -> AsyncIterator[Client]:
    c = cluster.client()
    yield c
    await c.close()


@pytest.fixture
async def cns(cclient: Client) -> AsyncIterator[str]:
    """A fresh namespace in the private cluster; its pods are force-deleted afterwards so that a
    pending pod left over cannot land on the next test's nodes."""
    name = unique("ns")
    await cclient.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    for pod in (await cclient.list(PODS, name)).get("items") or []:
        try:
            await cclient.delete(PODS, pod["metadata"]["name"], name, grace_period_seconds=0)
        except ApiError:
            pass


async def start_hollow(cluster: Cluster, client: Client, count: int, *flags: str,
                       prefix: str | None = None, timeout: float = 30) -> tuple[Component, list[str]]:
    """Start a hollow kubelet and wait until its nodes are registered and Ready."""
    prefix = prefix or unique("hollow")
    # --root-dir: a hollow process killed by a test leaves its pod-volume directory in the cluster's tmp
    comp = cluster.start("kubelet", "--hollow", "--count", str(count), "--name-prefix", prefix,
                         "--root-dir", cluster.tmp, *flags)
    names = [f"{prefix}-{i}" for i in range(count)]

    async def all_ready() -> bool:
        if comp.proc.poll() is not None:
            raise AssertionError(f"hollow kubelet exited:\n{comp.log()}")
        for n in names:
            try:
                node = await client.get(NODES, n)
            except ApiError:
                return False
            if condition(node, "Ready") != "True":
                return False
        return True

    await wait_for(all_ready, timeout, message=f"{count} hollow nodes {prefix}-* Ready")
    return comp, names


async def delete_nodes(client: Client, names: list[str]) -> None:
    for n in names:
        for res, ns in ((NODES, None), (LEASES, "kube-node-lease")):
            try:
                await client.delete(res, n, ns)
            except ApiError:
                pass


def condition(obj: dict[str, Any], type_: str, field_: str = "status") -> Any:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c.get(field_)
    return None


def pod_body(name: str, cpu: str | None = None, memory: str | None = None, **spec: Any) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    meta: dict[str, Any] = {"name": name}
    if "labels" in spec:
        meta["labels"] = spec.pop("labels")
    if "owner_references" in spec:
        meta["ownerReferences"] = spec.pop("owner_references")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": requests}}], **spec}}


async def node_of(client: Client, ns: str, name: str) -> str | None:
    pod = await client.get(PODS, name, ns)
    node: str | None = (pod.get("spec") or {}).get("nodeName")
    return node


async def wait_bound(client: Client, ns: str, name: str, timeout: float = 15) -> str:
    async def bound() -> str | None:
        return await node_of(client, ns, name)
    node: str = await wait_for(bound, timeout, message=f"pod {ns}/{name} bound")
    return node


async def events_for(client: Client, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    items = (await client.list(EVENTS, ns)).get("items") or []
    return [e for e in items if e.get("reason") == reason and (e.get("involvedObject") or {}).get("name") == name]
