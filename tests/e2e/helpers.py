"""A local cluster driven as a user drives it (`pkctl cluster up --home <tmp>`), and what a test checks on it."""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from kubelet.network import forwarding as kubelet_forwarding
from pkctl.cluster.components import BY_NAME
from pkctl.cluster.procs import ProcRecord
from proxy import localnet
from proxy.netpol import table_for
from tests.support.leftovers import processes_mentioning
from tests.util import unique, wait_for_sync

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@dataclass
class Cluster:
    home: Path
    kubeconfig: Path
    up_output: str

    def state(self, component: str) -> dict[str, Any]:
        return json.loads((self.home / "run" / f"{component}.json").read_text())

    def record(self, component: str) -> ProcRecord | None:
        return ProcRecord.from_state(self.state(component))

    def config(self) -> dict[str, Any]:
        return json.loads((self.home / "config.json").read_text())

    def token(self) -> str:
        return (self.home / "tokens.csv").read_text().split(",")[0]

    def api_url(self) -> str:
        return f"{'https' if self.config()['tls'] else 'http'}://127.0.0.1:{self.config()['api_port']}"

    def api(self, path: str, body: dict[str, Any] | None = None, method: str | None = None
            ) -> tuple[int, dict[str, Any]]:
        """A raw request with the admin token: a client independent of pkctl."""
        req = urllib.request.Request(self.api_url() + path, data=json.dumps(body).encode() if body else None,
                                     method=method or ("POST" if body else "GET"),
                                     headers={"Authorization": f"Bearer {self.token()}",
                                              "Content-Type": "application/json"})
        ctx = ssl.create_default_context(cafile=str(self.home / "pki" / "ca.crt")) if self.config()["tls"] else None
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def names(self, path: str) -> set[str]:
        code, body = self.api(path)
        assert code == 200, body
        return {item["metadata"]["name"] for item in body["items"]}

    @property
    def runc_root(self) -> Path:
        """Where the cluster's kubelet keeps its runc state (`runc --root` there lists only its containers)."""
        return self.home / "runtime" / "runc"

    @property
    def runc_roots(self) -> list[Path]:
        """The runc state of every node of the cluster: the host's, then each extra node's (`up --nodes N`)."""
        return [self.runc_root, *(self.home / "nodes" / w["name"] / "runtime" / "runc"
                                  for w in self.config().get("workers") or [])]

    def runc_containers(self, root: Path | None = None) -> dict[str, str]:
        """Container id → runc status, as runc itself reports them (on the host's node, or at runc `root`)."""
        root = root or self.runc_root
        if not root.is_dir():
            return {}
        p = subprocess.run(["runc", "--root", str(root), "list", "--format", "json"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        return {c["id"]: c["status"] for c in json.loads(p.stdout or "null") or []}


def run(*argv: str, check: bool = True, env: dict[str, str] | None = None,
        timeout: float = 90) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "pkctl.main", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"pkctl {' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def kubectl(c: Cluster, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(c.kubeconfig), *argv], capture_output=True, text=True,
                          timeout=30)


def no_traceback(p: subprocess.CompletedProcess[str]) -> bool:
    return "Traceback" not in p.stdout + p.stderr


def make_namespace(cluster: Cluster) -> str:
    ns = unique("ns")
    code, body = cluster.api("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    assert code == 201, body
    return ns


# Highly available clusters (`up --control-planes N`): seconds within which writes succeed again after the SIGKILL
# of an apiserver or of the etcd leader.
FAILOVER = 15.0


def etcd_member(c: Cluster, member: str, path: str, timeout: float = 3) -> dict[str, Any]:
    """A request to one etcd member's v3 JSON gateway, with the cluster's health-check client certificate."""
    m = next(m for m in c.config()["members"] if m["name"] == member)
    pki = c.home / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "etcd-healthcheck-client.crt"), str(pki / "etcd-healthcheck-client.key"))
    req = urllib.request.Request(f"https://{m['host']}:{m['etcd_client_port']}{path}", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
        doc: dict[str, Any] = json.loads(r.read())
        return doc


def etcd_leader(c: Cluster) -> str:
    """The name of the member that leads etcd's raft, as the first member that answers reports it."""
    for member in (m["name"] for m in c.config()["members"]):
        try:
            status = etcd_member(c, member, "/v3/maintenance/status")
            names = {m["ID"]: m["name"] for m in etcd_member(c, member, "/v3/cluster/member/list")["members"]}
        except OSError:
            continue  # this member is down
        if status.get("leader") in names:
            return names[status["leader"]]
    raise AssertionError("no etcd member knows a leader")


def lease_holder(c: Cluster, name: str) -> str:
    """The holderIdentity of kube-system's Lease `name` (`<control-plane process>_<random>` in a local cluster)."""
    code, lease = c.api(f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}")
    assert code == 200, lease
    return str(lease["spec"]["holderIdentity"])


def node_state_left(c: Cluster) -> list[str]:
    """What this cluster's node put on the host and must not outlive `cluster down`: the proxy's nftables tables,
    the DNS address on lo and its NOTRACK table, and the kubelet's containers, netns, veths, bridge, NAT table,
    cgroup and mounts."""
    cfg, left = c.config(), []
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.split()
    left += [f"nft table {t}" for t in (cfg["proxy_table"], table_for(cfg["proxy_table"]), cfg["nat_table"])
             if t in tables]
    lo = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True).stdout
    dns_ip = str(ipaddress.ip_network(cfg["service_cidr"])[10])
    if f" {dns_ip}/" in lo:
        left.append(f"{dns_ip} on lo")
    dns_table = f"pkube-dns-{dns_ip.replace('.', '-')}-53"  # its NOTRACK rules (proxy/dns_notrack.py)
    left += [f"nft table {dns_table}"] if dns_table in tables else []
    left += [f"runc container {cid} ({status})" for cid, status in c.runc_containers().items()]
    netns = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    left += [f"netns {n}" for n in netns if n.startswith(cfg["netns_prefix"])]
    left += [f"link {n}" for n in os.listdir("/sys/class/net")
             if n == cfg["bridge"] or n.startswith(cfg["veth_prefix"])]
    with open("/proc/mounts") as mounts:
        left += [f"mount {line.split()[1]}" for line in mounts if str(c.home) in line]
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        left += [f"cgroup {os.path.join(root, d)}" for d in dirs if d == cfg["cgroup_parent"]]
    left += [f"process {pid}" for pid in processes_mentioning(str(c.home))]
    return left + workers_left(cfg, netns)


def workers_left(cfg: dict[str, Any], netns: list[str]) -> list[str]:
    """What the extra nodes of a multi-node cluster (`up --nodes N`) put on the host: their netns and their
    pods', the cluster bridge and veths, routes through it, their cgroups."""
    left: list[str] = []
    for w in cfg.get("workers") or []:
        pods = f"{cfg['netns_prefix'][:-1]}w{w['index']}-"
        left += [f"netns {n}" for n in netns if n == w["netns"] or n.startswith(pods)]
        left += [f"link {w['veth']}" for n in os.listdir("/sys/class/net") if n == w["veth"]]
        for root, dirs, _ in os.walk("/sys/fs/cgroup"):
            left += [f"cgroup {os.path.join(root, d)}" for d in dirs if d == f"{cfg['cgroup_parent']}-w{w['index']}"]
    if cfg.get("node_bridge"):
        left += [f"link {n}" for n in os.listdir("/sys/class/net")
                 if n in (cfg["node_bridge"], f"pkube.{cfg.get('vxlan_vni')}")]  # and the first node's VXLAN device
        routes = subprocess.run(["ip", "-4", "route", "show", "proto", "201"], capture_output=True, text=True).stdout
        left += [f"route {r}" for r in routes.splitlines() if cfg["node_subnet"].rsplit(".", 1)[0] + "." in r]
    return left


def recorded_processes(c: Cluster) -> list[ProcRecord]:
    names = ["supervisor", *(n for n in BY_NAME if (c.home / "run" / f"{n}.json").exists())]
    return [r for n in names if (r := c.record(n))]


def host_sysctls() -> dict[str, str | None]:
    """The host sysctls pkube turns on (route_localnet, ip_forward) -> the host's value; None while a pkube user
    on this machine has a record of changing it (another cluster or test still running: its cleanup restores)."""
    out: dict[str, str | None] = {}
    for setting in (localnet.setting(), kubelet_forwarding.setting()):
        value = setting.sysctl.read_text().strip()
        # any netns' records, and those of an older pkube that kept them all in one directory
        out[setting.name] = None if any(setting.state_dir.rglob(f"*.{setting.name}")) else value
    return out


def assert_host_sysctls_kept(before: dict[str, str | None]) -> None:
    """`cluster down` gave the host back its sysctls (unless another pkube user held them before or after)."""
    after = host_sysctls()
    changed = {name: (was, after[name]) for name, was in before.items()
               if was is not None and after[name] is not None and after[name] != was}
    assert not changed, f"sysctls left changed after cluster down (before, after): {changed}"


@contextmanager
def local_cluster(*extra: str, command: tuple[str, ...] = ("up",), sysctls_kept: bool = False,
                  env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """`cluster up` (or `command`, e.g. ("restore", FILE)) in a fresh home, `extra` added to its flags;
    at the end `cluster down --purge`, which must leave nothing behind.

    The kubelet turns IPv4 forwarding on (pods reach Services through the host, as in Kubernetes);
    the host's previous setting is put back afterwards. `sysctls_kept`: `down` must itself have given the host
    its route_localnet and ip_forward back (assert_host_sysctls_kept). `env`: added to the environment of `up`,
    which the supervisor and every component it starts (and restarts) inherit, e.g. a fake clock
    (tests/support/faketime.py); `down` runs without it. With PKUBE_TEST_KEEP_LOGS=DIR in the environment the
    components' logs are copied to DIR/<home name> before `down`, for debugging a failed run.
    """
    home = Path(tempfile.mkdtemp(prefix="pkt-home-"))
    forwarding = IP_FORWARD.read_text()
    sysctls = host_sysctls()
    try:
        up = run("cluster", *command, "--home", str(home), "--wait-timeout", "60", *extra, check=False,
                 env={**os.environ, **env} if env else None)
        assert up.returncode == 0, f"cluster up failed:\n{up.stdout}\n{up.stderr}"
        yield Cluster(home, home / "kubeconfig", up.stdout)
    finally:
        try:
            if (home / "config.json").exists():
                last = Cluster(home, home / "kubeconfig", "")
                config = last.config()
                if os.environ.get("PKUBE_TEST_KEEP_LOGS"):  # debugging: the components' logs outlive the cluster
                    shutil.copytree(home / "logs", Path(os.environ["PKUBE_TEST_KEEP_LOGS"]) / home.name)
                down = run("cluster", "down", "--purge", "--home", str(home), check=False)
                assert down.returncode == 0, f"cluster down failed:\n{down.stdout}\n{down.stderr}"
                if sysctls_kept:
                    assert_host_sysctls_kept(sysctls)
                home.mkdir()  # node_state_left reads only the config
                (home / "config.json").write_text(json.dumps(config))
                assert node_state_left(last) == []
        finally:
            shutil.rmtree(home, ignore_errors=True)
            IP_FORWARD.write_text(forwarding)


@contextmanager
def joining_machine(cluster_config: dict[str, Any], host: int = 200) -> Iterator[tuple[str, str]]:
    """(netns, IP): a fresh "machine" for `pkctl cluster join`, a network namespace on the cluster bridge of a
    multi-node cluster (`up --nodes N`) at an address the cluster gave to no node (the subnet's `host`th, for
    several machines at once); removed afterwards."""
    subnet = ipaddress.ip_network(cluster_config["node_subnet"])
    tag = unique("j").replace("-", "")[-6:]
    netns, veth, ip = f"pkj{tag}", f"pkj{tag}h", str(subnet[host])
    try:
        for cmd in (["ip", "netns", "add", netns],
                    ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns],
                    ["ip", "link", "set", veth, "master", cluster_config["node_bridge"], "up"],
                    ["ip", "-n", netns, "link", "set", "lo", "up"],
                    ["ip", "-n", netns, "addr", "add", f"{ip}/{subnet.prefixlen}", "dev", "eth0"],
                    ["ip", "-n", netns, "link", "set", "eth0", "up"],
                    ["ip", "-n", netns, "route", "add", "default", "via", str(subnet[1])]):
            subprocess.run(cmd, check=True, capture_output=True)
        yield netns, ip
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def on_machine(netns: str, *argv: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """pkctl run on a joining machine (inside its network namespace only, as worker nodes' kubelets are)."""
    return subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "--", sys.executable, "-m", "pkctl.main", *argv],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


class NodeLoss:
    """A worker node of a multi-node local cluster (`up --nodes N`) dying as a machine dies, and coming back.

    die(): its kubelet and proxy stop (frozen by SIGSTOP: a dead machine runs nothing, and the supervisor must
    not restart them yet), every process of its pods is killed, its network namespace is unplugged from the
    cluster bridge. come_back(): the link is plugged back and the frozen kubelet and proxy are killed, so the
    supervisor starts them afresh, as a rebooted machine starts its services."""

    def __init__(self, home: Path, node: str):
        cfg = json.loads((home / "config.json").read_text())
        self.worker: dict[str, Any] = next(w for w in cfg["workers"] if w["name"] == node)
        self.bridge: str = cfg["node_bridge"]
        self.cgroup = f"{cfg['cgroup_parent']}-w{self.worker['index']}"
        self.runtime = home / "nodes" / node / "runtime"
        # the node's one process: its kubelet, which hosts its proxy
        record = ProcRecord.from_state(json.loads((home / "run" / f"kubelet-{node}.json").read_text()))
        assert record is not None, node
        self.daemons = {record.pid}
        self.dead = False

    def die(self, kill_pods: bool = True) -> None:
        """`kill_pods` False: a network partition rather than a dead machine (its pods keep running)."""
        self.dead = True
        _signal(self.daemons, signal.SIGSTOP)
        if kill_pods:
            pods = {int(p) for p in processes_mentioning(str(self.runtime))} | self._cgroup_pids()
            _signal(pods - self.daemons, signal.SIGKILL)
        subprocess.run(["ip", "link", "set", self.worker["veth"], "nomaster"], check=True)

    def come_back(self) -> None:
        """(Once; again does nothing, so that a test's `finally` may call it.)"""
        if self.dead:
            self.dead = False
            subprocess.run(["ip", "link", "set", self.worker["veth"], "master", self.bridge, "up"], check=True)
            _signal(self.daemons, signal.SIGKILL)

    def container_pod_uids(self, running_only: bool = False) -> list[str | None]:
        """The pod of each container runc knows on the node, or of each running one (the kubelet labels its
        containers with their pod's UID)."""
        from kubelet.plan import POD_UID_LABEL
        def runc_list() -> subprocess.CompletedProcess[str] | None:
            p = subprocess.run(["runc", "--root", str(self.runtime / "runc"), "list", "--format", "json"],
                               capture_output=True, text=True, timeout=30)
            return p if p.returncode == 0 else None
        # runc fails to list a container the kubelet removes meanwhile: ask again
        p: subprocess.CompletedProcess[str] = wait_for_sync(runc_list, timeout=10, message="runc list")
        uids: list[str | None] = []
        for c in json.loads(p.stdout or "null") or []:
            if c["status"] == "running" or not running_only:
                meta = self.runtime / "containers" / c["id"] / "meta.json"
                uids.append(json.loads(meta.read_text())["labels"].get(POD_UID_LABEL) if meta.exists() else None)
        return uids

    def _cgroup_pids(self) -> set[int]:
        pids: set[int] = set()
        for root, _, files in os.walk("/sys/fs/cgroup"):
            if self.cgroup in Path(root).parts and "cgroup.procs" in files:
                pids |= {int(x) for x in Path(root, "cgroup.procs").read_text().split()}
        return pids


def _signal(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
