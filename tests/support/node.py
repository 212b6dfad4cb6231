"""A private control plane with a real kubelet (its own apiserver, controller-manager, scheduler and `pkube kubelet`
as processes, with unique network and cgroup names) and the pod helpers its tests use: moved unchanged from
tests/kubelet/conftest.py, which keeps the fixtures."""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import uuid
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from images.store import ImageStore
from kubelet.runtime.interface import ExecResult
from kubelet.runtime.runc import RuncRuntime, RuntimeConfig
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import Resource, lookup
from tests.support.controlplane import (ROOT, ApiServer, Etcd, _stop, kubelet_serving_flags, make_test_pki,
                                       service_account_flags, start_apiserver)
from tests.support.leftovers import leftovers
from tests.util import free_port, unique, wait_for

PSA_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"


def res(plural: str) -> Resource:
    found = lookup(plural)
    assert found is not None, plural
    return found


PODS, NODES, NAMESPACES = res("pods"), res("nodes"), res("namespaces")
SERVICE_ACCOUNT_ADVERTISED = "192.0.2.10"  # TEST-NET-1: the `kubernetes` Service's endpoint, never dialled


@dataclass
class Node:
    api: ApiServer
    tmp: Path
    name: str
    cidr: str
    tag: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kubelet: subprocess.Popen[bytes] | None = None
    kubelet_log: Path | None = None
    port: int = field(default_factory=free_port)
    # extra environment of the node's processes: SSL_CERT_FILE = the test CA when the apiserver serves TLS
    env: dict[str, str] | None = None
    token: str | None = None  # the kubelet's own (system:node:<name>) token; None: the admin's
    kubelet_flags: tuple[str, ...] = ()   # extra flags of the kubelet (thresholds of a test node, ...)

    def runtime_config(self) -> RuntimeConfig:
        return RuntimeConfig(state_dir=self.tmp / "runtime", pod_cidr=self.cidr, bridge=f"pkt-br{self.tag}",
                             nat_table=f"pkube-t-{self.tag}", netns_prefix=f"pkt{self.tag}-",
                             veth_prefix=f"pt{self.tag}", cgroup_parent=f"pkube-t-{self.tag}",
                             enable_forwarding=False)

    def runtime(self) -> RuncRuntime:
        """A second view on the kubelet's runtime state (it is all files + runc): for exec and checks."""
        return RuncRuntime(self.runtime_config(), ImageStore(self.tmp / "images"))

    def start_kubelet(self, test_timings: bool = True) -> None:
        """`test_timings`: short back-off, lease, relist and sync periods so tests see effects within seconds;
        without, the kubelet runs with its production defaults (what the benchmark measures)."""
        self.kubelet_log = self.tmp / f"kubelet-{unique('log')}.log"
        timings = ["--crashloop-backoff-base", "1", "--crashloop-backoff-max", "8", "--node-lease-renew-interval", "2",
                   "--relist-period", "0.5", "--sync-frequency", "2", "--node-status-update-frequency", "1"
                   ] if test_timings else []
        self.kubelet = subprocess.Popen(
            [sys.executable, "-m", "launcher", "kubelet", "--server", self.api.url, "--token",
             self.token or self.api.token,
             "--node-name", self.name, *self.node_flags(), *timings,
             # the kubelet API on loopback only over TLS, reached there by the apiserver's pods/log and pods/exec
             # proxy with its client certificate
             "--address", "127.0.0.1", "--port", str(self.port), "--node-ip", "127.0.0.1",
             *kubelet_serving_flags(str(self.tmp)),
             "--cluster-dns", "10.96.0.10", *self.kubelet_flags],
            cwd=ROOT, stdout=open(self.kubelet_log, "wb"), stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})})

    def restart_kubelet(self, *flags: str) -> None:
        """Stop the kubelet (its pods keep running) and start it again with these flags added (a later flag
        wins over an earlier one); wait for it with `_wait_node`."""
        if self.kubelet:
            _stop(self.kubelet)
        self.kubelet_flags = (*self.kubelet_flags, *flags)
        self.start_kubelet()

    def node_flags(self) -> list[str]:
        """Where this node keeps its state and how its network pieces are named (also what --cleanup needs)."""
        rc = self.runtime_config()
        return ["--root-dir", str(self.tmp / "kubelet"), "--image-root", str(self.tmp / "images"),
                "--runtime-state-dir", str(rc.state_dir), "--bridge", rc.bridge, "--nat-table", rc.nat_table,
                "--netns-prefix", rc.netns_prefix, "--veth-prefix", rc.veth_prefix, "--cgroup-parent",
                rc.cgroup_parent, "--no-forwarding"]

    def stop_processes(self) -> None:
        """Stop the kubelet, the components started for the node (last first), then the apiserver."""
        if self.kubelet:
            _stop(self.kubelet)
            self.kubelet = None
        for p in reversed(self.procs):
            _stop(p)
        _stop(self.api.proc)

    def cleanup(self) -> subprocess.CompletedProcess[str]:
        """`pkube kubelet --cleanup`: what `pkctl cluster down` runs after an unclean stop."""
        return subprocess.run([sys.executable, "-m", "launcher", "kubelet", "--cleanup", *self.node_flags()],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    def log(self) -> str:
        return self.kubelet_log.read_text(errors="replace")[-6000:] if self.kubelet_log else ""

    def client(self) -> Client:
        return Client.from_kubeconfig(self.api.kubeconfig)  # carries the test CA when the apiserver serves TLS

    def kubelet_tls(self, client_cert: str | None = "apiserver-kubelet-client") -> ssl.SSLContext:
        """TLS to this node's kubelet API, trusting the test CA, presenting that certificate of it (None: none)."""
        pki = make_test_pki(str(self.tmp))
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        if client_cert:
            ctx.load_cert_chain(pki.cert(client_cert), pki.key(client_cert))
        return ctx


def _start(api: ApiServer, tmp: Path, component: str, *args: str,
           env: dict[str, str] | None = None, token: str | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "launcher", component, "--server", api.url, "--token", token or api.token, *args],
        cwd=ROOT, stdout=open(tmp / f"{component}.log", "wb"), stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})})


async def _wait_node(node: Node) -> None:
    async with node.client() as c:
        async def ready() -> bool:
            if node.kubelet and node.kubelet.poll() is not None:
                raise AssertionError(f"kubelet exited:\n{node.log()}")
            try:
                n = await c.get(NODES, node.name)
            except ApiError:
                return False
            conds = {x["type"]: x["status"] for x in n.get("status", {}).get("conditions") or []}
            return conds.get("Ready") == "True" and bool(n["spec"].get("podCIDR"))
        await wait_for(ready, 60, 0.1, message=f"node {node.name} Ready with a podCIDR")


@asynccontextmanager
async def pod_namespace(c: Client, prefix: str, pod_security: str | None = None) -> AsyncIterator[str]:
    """A fresh namespace for a test's pods, cleaned (clean_namespace) when the test ends.

    `pod_security`: the namespace's Pod Security enforce level (`privileged` for pods that use the host:
    hostPath volumes, host ports, added capabilities, seccomp Unconfined); the cluster default otherwise."""
    name = unique(prefix)
    labels = {PSA_ENFORCE_LABEL: pod_security} if pod_security else {}
    await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    try:
        yield name
    finally:
        await clean_namespace(c, name)


async def allow_privileged_pods(c: Client, ns: str) -> None:
    """Label an existing namespace with the Pod Security level `privileged` (no checks on its pods)."""
    await c.patch(NAMESPACES, ns, {"metadata": {"labels": {PSA_ENFORCE_LABEL: "privileged"}}})


async def clean_namespace(c: Client, ns: str) -> None:
    """Workloads first (else their controllers recreate the pods), then the pods, force-deleted."""
    for plural in ("cronjobs", "jobs", "deployments", "replicasets", "statefulsets", "daemonsets", "pods"):
        kind = res(plural)
        for obj in (await c.list(kind, ns)).get("items") or []:
            try:
                await c.delete(kind, obj["metadata"]["name"], ns, grace_period_seconds=0 if plural == "pods" else None,
                               propagation_policy="Orphan" if plural != "pods" else None)
            except ApiError:
                pass


async def _delete_all_pods(node: Node) -> None:
    async with node.client() as c:
        for ns in (await c.list(NAMESPACES)).get("items") or []:
            await clean_namespace(c, ns["metadata"]["name"])


@contextmanager
def private_node(etcd: Etcd, tls: bool = False, own_identities: bool = False,
                 service_accounts: bool = False, controller_flags: tuple[str, ...] = (),
                 kubelet_flags: tuple[str, ...] = ()) -> Iterator[Node]:
    """The whole private control plane + kubelet; `tls`: the apiserver serves HTTPS (what kubectl needs), its
    components trust the test CA through SSL_CERT_FILE. `own_identities`: each component authenticates as itself
    (system:kube-controller-manager, system:kube-scheduler, system:node:<name> in system:nodes), so RBAC's
    default roles are all it may use; otherwise all of them use the admin's token. `service_accounts`: the
    apiserver issues service-account tokens (pods get the kube-api-access volume) and keeps the `kubernetes`
    Service pointing at SERVICE_ACCOUNT_ADVERTISED (no proxy runs here: it is never dialled); the
    controller-manager publishes the test CA as kube-root-ca.crt. `controller_flags` go to the controller-manager,
    `kubelet_flags` to the kubelet."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tmp = Path(tempfile.mkdtemp(prefix="pkt-kubelet-"))
    name = unique("node")
    identities = {"system:kube-controller-manager": (), "system:kube-scheduler": (),
                  f"system:node:{name}": ("system:nodes",)} if own_identities else None
    sa_flags = [*service_account_flags(str(tmp)), "--advertise-address", SERVICE_ACCOUNT_ADVERTISED]
    api = start_apiserver(str(tmp), etcd.url, tls=tls, identities=identities,
                          extra=sa_flags if service_accounts else None)
    cidr = f"10.{random.randint(208, 215)}.{random.randint(0, 255)}.0/24"
    env = {"SSL_CERT_FILE": str(make_test_pki(str(tmp)).ca_cert)} if tls else None
    n = Node(api, tmp, name, cidr, uuid.uuid4().hex[:6], env=env, token=api.tokens.get(f"system:node:{name}"),
             kubelet_flags=kubelet_flags)
    rt = n.runtime_config()
    try:
        root_ca = ["--root-ca-file", str(make_test_pki(str(tmp)).ca_cert)] if service_accounts else []
        n.procs.append(_start(api, tmp, "controller-manager", "--cluster-cidr", cidr, "--node-cidr-mask-size", "24",
                              *root_ca, *controller_flags, env=env,
                              token=api.tokens.get("system:kube-controller-manager")))
        n.procs.append(_start(api, tmp, "scheduler", env=env, token=api.tokens.get("system:kube-scheduler")))
        n.start_kubelet()
        asyncio.run(_wait_node(n))
        yield n
    finally:
        try:
            asyncio.run(_delete_all_pods(n))
            sandboxes = rt.state_dir / "sandboxes"

            def drained() -> bool:
                return not sandboxes.is_dir() or not any(sandboxes.iterdir())
            if n.kubelet and n.kubelet.poll() is None:
                asyncio.run(wait_for(_async(drained), 30, 0.1, message="kubelet removed every pod"))
        finally:
            n.stop_processes()
            runtime = n.runtime()
            cleaned = n.cleanup()
            if cleaned.returncode != 0:
                asyncio.run(runtime.destroy_node())  # leave the machine clean all the same
            left = asyncio.run(leftovers(runtime, mount_markers=(str(tmp),)))
            shutil.rmtree(tmp, ignore_errors=True)
            assert cleaned.returncode == 0, f"pkube kubelet --cleanup failed: {cleaned.stderr}"
            assert not left, f"the kubelet left resources behind: {left}"


def _async(fn: Any) -> Any:
    async def call() -> Any:
        return fn()
    return call


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", None)
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    spec.setdefault("terminationGracePeriodSeconds", 2)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": list(containers), **spec}}


BUSYBOX = "pkube.local/busybox:latest"


def ctr(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", script],
            **extra}


async def wait_pod(c: Client, ns: str, name: str, pred: Any, timeout: float = 30, what: str = "") -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        p = await c.get(PODS, name, ns)
        return p if pred(p) else None
    try:
        result: dict[str, Any] = await wait_for(check, timeout, 0.1, message=what or f"pod {ns}/{name}")
    except AssertionError:
        p = await c.get(PODS, name, ns)
        raise AssertionError(f"{what or 'pod condition'} not reached; status: {p.get('status')}") from None
    return result


def phase(p: dict[str, Any]) -> str:
    return str((p.get("status") or {}).get("phase", ""))


def cond(p: dict[str, Any], type_: str) -> str | None:
    for x in (p.get("status") or {}).get("conditions") or []:
        if x["type"] == type_:
            return str(x["status"])
    return None


def cstatus(p: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    return next((s for s in (p.get("status") or {}).get(key) or [] if s["name"] == name), {})


def running(p: dict[str, Any]) -> bool:
    return phase(p) == "Running" and all("running" in s.get("state", {})
                                         for s in (p.get("status") or {}).get("containerStatuses") or [{}])


async def exec_in(node: Node, p: dict[str, Any], container: str, cmd: list[str], timeout: float = 10) -> ExecResult:
    cid = cstatus(p, container)["containerID"].split("://", 1)[1]
    return await node.runtime().exec(cid, cmd, timeout=timeout)
