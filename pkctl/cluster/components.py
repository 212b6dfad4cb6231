"""The components of a local cluster: command lines, health checks and start order.

Availability is decided by looking for the component's module (importlib.util.find_spec),
so a component that lands in the tree is picked up by the next `up` with no change here.
The module names mirror launcher.main.COMPONENTS (pkctl may not import the launcher;
tests/e2e/test_cluster_logic.py checks the two agree).
"""
from __future__ import annotations

import functools
import http.client
import importlib.util
import json
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from pkctl.cluster import keepalive, procs
from pkctl.cluster.home import (CONTROLLER_MANAGER, INGRESS_CONTROLLER, KUBE_DNS, KUBE_PROXY, SCHEDULER, ClusterConfig,
                               Home, Member, Worker, node_user)

# (healthy, one-line detail) — detail is shown by `cluster status` and in `up`'s error messages.
Health = tuple[bool, str]


@dataclass(frozen=True)
class Component:
    name: str
    module: str | None          # python module run through `python -m launcher`; None: external binary
    binary: str | None          # executable looked up on PATH when module is None
    after: tuple[str, ...]      # started only once these are healthy
    argv: Callable[[Home, ClusterConfig], list[str]]
    probe: Callable[[Home, ClusterConfig, float], Health]  # (home, config, seconds running)
    # Hook for `cluster down`: undo node-level state the component may leave behind when it was
    # killed uncleanly (runc containers, netns, nft tables); returns what could not be removed.
    # The runc kubelet and the nftables proxy plug their cleanup in here.
    cleanup: Callable[[Home, ClusterConfig], list[str]] | None = None
    # Set for a process that hosts several components through `pkube group` (see GROUP below).
    members: tuple["Component", ...] = ()
    # The launcher's name for it when that is not `name` (a member's apiserver-cp2 runs `pkube apiserver`).
    launch: str = ""
    # The named network namespace it runs in (an extra node's kubelet and proxy); "": the host's.
    netns: str = ""
    # Programs it drives that must be installed for it to be used (the ingress controller's nginx).
    needs: tuple[str, ...] = ()

    def available(self) -> bool:
        if self.members:
            return _module_exists("launcher.group") and any(m.available() for m in self.members)
        if self.module is None:
            return shutil.which(self.binary or self.name) is not None
        return _module_exists(self.module) and all(_installed(b) for b in self.needs)

    def command(self, home: Home, cfg: ClusterConfig) -> list[str]:
        # nsenter enters only the network namespace (`ip netns exec` would also unshare the mount namespace,
        # hiding the pods' netns mounts from the host)
        enter = ["nsenter", f"--net=/run/netns/{self.netns}", "--"] if self.netns else []
        if self.module is None:
            return [*enter, shutil.which(self.binary or self.name) or self.name, *self.argv(home, cfg)]
        return [*enter, *procs.python_module("launcher", "group" if self.members else self.launch or self.name,
                                                *self.argv(home, cfg))]


def _installed(binary: str) -> bool:
    return shutil.which(binary) is not None or Path("/usr/sbin", binary).exists()  # sbin: not on a user's PATH


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package itself is missing
        return False


def _tls_context(home: Home, cfg: ClusterConfig) -> ssl.SSLContext | None:
    if not cfg.tls:
        return None
    ca = home.pki.ca_cert
    return _ca_context(str(ca), ca.stat().st_mtime_ns if ca.exists() else 0)


@functools.lru_cache(maxsize=4)
def _ca_context(ca_file: str, version: int) -> ssl.SSLContext:
    # Loading the CA is most of a probe's CPU, and the supervisor probes for days: load it once
    # per file version (a home purged and made again at the same path has a new CA).
    return ssl.create_default_context(cafile=ca_file)


def etcd_client_context(home: Home) -> ssl.SSLContext:
    """TLS to etcd with the health-check client certificate (etcd refuses clients without one)."""
    cert = home.pki.cert("etcd-healthcheck-client")
    return _client_cert_context(str(home.pki.ca_cert), str(cert), str(home.pki.key("etcd-healthcheck-client")),
                                cert.stat().st_mtime_ns if cert.exists() else 0)


@functools.lru_cache(maxsize=4)
def _client_cert_context(ca_file: str, cert_file: str, key_file: str, version: int) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def _http_ok(url: str, token: str | None = None, timeout: float = 1.0, tls: ssl.SSLContext | None = None) -> Health:
    try:
        status, body = keepalive.get(url, {"Authorization": f"Bearer {token}"} if token else None, timeout, tls)
    except (OSError, http.client.HTTPException) as e:
        return False, f"{url}: {e or type(e).__name__}"
    if status == 200:
        return True, f"{url}: 200"
    # the first line of the answer says why (an apiserver's /readyz: "etcd: not reachable")
    why = body[:200].decode(errors="replace").strip().splitlines()[:1]
    return False, f"{url}: HTTP {status}" + (f" ({why[0]})" if why else "")


def node_client_context(home: Home) -> ssl.SSLContext:
    """A joined node's TLS to its cluster's API: the cluster CA, and the client certificate it bootstrapped."""
    cert = home.pki.cert("kubelet-client")
    return _client_cert_context(str(home.pki.ca_cert), str(cert), str(home.pki.key("kubelet-client")),
                                cert.stat().st_mtime_ns if cert.exists() else 0)


def api_get(home: Home, cfg: ClusterConfig, path: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """A GET against the cluster's own apiserver with the admin token (a joined node's home: as the node,
    against the cluster it joined; a joined control-plane member's: its own apiserver); None if it fails."""
    headers: dict[str, str] = {}
    if cfg.joined and not cfg.members:
        try:
            tls: ssl.SSLContext | None = node_client_context(home)
        except (OSError, ssl.SSLError):
            return None
    else:
        headers["Authorization"] = f"Bearer {home.token()}"
        tls = _tls_context(home, cfg)
    try:
        status, body = keepalive.get(cfg.api_url + path, headers, timeout, tls)
        doc: dict[str, Any] = json.loads(body)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    return doc if 200 <= status < 300 else None


def node_ready(node: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in node.get("status", {}).get("conditions", []))


def probe_etcd(home: Home, cfg: ClusterConfig, running: float, member: Member | None = None) -> Health:
    try:
        tls = etcd_client_context(home)
    except (OSError, ssl.SSLError) as e:
        return False, f"etcd client certificate: {e}"
    # /health is true only while the member's cluster has a leader (a quorum). A NOSPACE alarm is left out, as
    # kubeadm's etcd probe does: the apiserver must start to recover from it (`cluster status` reports it).
    return _http_ok((member.etcd_url if member else cfg.etcd_url) + "/health?exclude=NOSPACE", tls=tls)


def _probe_apiserver(home: Home, cfg: ClusterConfig, running: float, member: Member | None = None) -> Health:
    url = f"{'https' if cfg.tls else 'http'}://{member.host}:{member.api_port}" if member else cfg.api_url
    return _http_ok(url + "/readyz", home.token(), tls=_tls_context(home, cfg))


def _renewed_since(home: Home, cfg: ClusterConfig, node: str, since: float) -> bool:
    lease = api_get(home, cfg, f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}")
    renew = ((lease or {}).get("spec") or {}).get("renewTime")
    if not renew:
        return False
    return datetime.fromisoformat(renew.replace("Z", "+00:00")).timestamp() >= since


def _probe_node(home: Home, cfg: ClusterConfig, running: float, node_name: str = "") -> Health:
    """Node Ready, and its Lease renewed by this kubelet process: after a restart the Node object
    still says Ready from the previous run, so Ready alone proves nothing."""
    node_name = node_name or cfg.node_name
    node = api_get(home, cfg, f"/api/v1/nodes/{node_name}")
    if node is None:
        return False, f"node {node_name} not registered yet (or the API does not answer)"
    started = time.time() - running - 1.0  # renewTime has second-level clock skew at worst on one host
    if node_ready(node) and _renewed_since(home, cfg, node_name, started):
        return True, f"node {node_name} Ready"
    return False, "node not Ready (no fresh heartbeat)"


def _as(user: str, gateway: bool = False) -> Callable[[Home, ClusterConfig], list[str]]:
    """--kubeconfig of the component's own identity (home.component_identities)."""
    return lambda home, cfg: ["--kubeconfig", str(home.identity_kubeconfig(user, gateway))]


ETCD_SNAPSHOT_COUNT = 10_000  # kubeadm's --snapshot-count for its etcd


def _etcd_flags(home: Home, cfg: ClusterConfig, member: Member | None = None) -> list[str]:
    # TLS for clients and peers, and only certificates of the cluster CA get in (kubeadm's etcd flags): etcd
    # holds every Secret, and a Pod written straight into it would run as root.
    if member is None:
        name, client, peer = "pkube", cfg.etcd_url, f"https://127.0.0.1:{cfg.etcd_peer_port}"
    else:
        name, client, peer = member.name, member.etcd_url, member.peer_url
    # With a cluster network the members also listen on its gateway and advertise themselves there, where a
    # machine joining as a control-plane member reaches them (cpjoin.py); the local clients keep loopback.
    def advertised(url: str) -> str:
        return url.replace("//127.0.0.1:", f"//{cfg.etcd_host}:")
    listen_client = ",".join(dict.fromkeys((client, advertised(client))))
    listen_peer = ",".join(dict.fromkeys((peer, advertised(peer))))
    if cfg.etcd_initial_cluster:  # a member that joined a running etcd cluster
        initial, state = cfg.etcd_initial_cluster, "existing"
    elif member is None:
        initial, state = f"pkube={advertised(peer)}", "new"
    else:
        initial, state = ",".join(f"{m.name}={advertised(m.peer_url)}" for m in cfg.members), "new"
    pki = home.pki
    return ["--name", name, "--data-dir", str(home.etcd_dir(member)),
            "--cert-file", str(pki.cert("etcd-server")), "--key-file", str(pki.key("etcd-server")),
            "--client-cert-auth", "--trusted-ca-file", str(pki.ca_cert),
            "--peer-cert-file", str(pki.cert("etcd-peer")), "--peer-key-file", str(pki.key("etcd-peer")),
            "--peer-client-cert-auth", "--peer-trusted-ca-file", str(pki.ca_cert),
            "--listen-client-urls", listen_client, "--advertise-client-urls", advertised(client),
            "--listen-peer-urls", listen_peer, "--initial-advertise-peer-urls", advertised(peer),
            "--initial-cluster", initial, "--initial-cluster-state", state,
            # A lone member still waits one election timeout on restart before it serves, so that
            # stays at the default 1 s (a warm `up` waits for it); it has no peers to send heartbeats
            # to, but its raft clock ticks every heartbeat interval: 150 ms instead of 50 ms took its
            # idle CPU from ~1.1 % to ~0.7 % of a core. Several members: the same timing elects a new
            # leader about 1 s after the old one died.
            "--heartbeat-interval", "150", "--election-timeout", "1000",
            # etcd keeps every raft entry since its last snapshot in memory: at its default of 100,000 (3.4 and
            # 3.5) a churning cluster's etcd grew ~10 MB a minute until the snapshot; kubeadm passes 10,000
            "--snapshot-count", str(ETCD_SNAPSHOT_COUNT),
            "--quota-backend-bytes", str(2 * 1024**3), "--log-level", "warn"]


def _apiserver_flags(home: Home, cfg: ClusterConfig, member: Member | None = None) -> list[str]:
    pki = home.pki
    # every etcd member, this control plane's own first (the client moves on when one is unavailable)
    etcd = [member.etcd_url] if member else []
    etcd += [u for u in cfg.etcd_urls if u not in etcd]
    return ["--etcd-servers", ",".join(etcd), "--etcd-prefix", "/registry",
            "--etcd-cafile", str(pki.ca_cert), "--etcd-certfile", str(pki.cert("apiserver-etcd-client")),
            "--etcd-keyfile", str(pki.key("apiserver-etcd-client")),
            "--kubelet-certificate-authority", str(pki.ca_cert),
            "--kubelet-client-certificate", str(pki.cert("apiserver-kubelet-client")),
            "--kubelet-client-key", str(pki.key("apiserver-kubelet-client")),
            "--bind-address", member.host if member else "127.0.0.1",
            "--port", str(member.api_port if member else cfg.api_port),
            "--token-auth-file", str(home.tokens_file), "--service-cluster-ip-range", cfg.service_cidr,
            *(["--tls-cert-file", str(home.pki.serving_cert), "--tls-private-key-file", str(home.pki.serving_key)]
              if cfg.tls else []),
            *(["--client-ca-file", str(pki.ca_cert)] if cfg.tls else []),
            # service-account tokens (kubeadm's sa.key/sa.pub), and the `kubernetes` Service pods reach the API by
            "--service-account-signing-key-file", str(pki.sa_key), "--service-account-key-file", str(pki.sa_pub),
            "--service-account-issuer", SERVICE_ACCOUNT_ISSUER,
            *(["--advertise-address", cfg.advertise_address, "--advertise-port", str(cfg.api_port)]
              if cfg.advertise_address else []),
            *(["--event-ttl", f"{cfg.event_ttl:g}s"] if cfg.event_ttl else [])]


SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"  # kubeadm's default


def apiserver_serves_tls() -> bool:
    """Whether this build's apiserver declares Kubernetes' serving flags --tls-cert-file/--tls-private-key-file.

    Read from its source rather than from `--help`: starting Python for that costs seconds
    on a loaded machine, on every `up`.
    """
    try:
        spec = importlib.util.find_spec("apiserver")
    except ModuleNotFoundError:
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    flags = {"--tls-cert-file": False, "--tls-private-key-file": False}
    for d in spec.submodule_search_locations:
        for src in Path(d).rglob("*.py"):
            text = src.read_text(errors="replace")
            for flag in flags:
                flags[flag] = flags[flag] or f'"{flag}"' in text
    return all(flags.values())


def _controller_flags(home: Home, cfg: ClusterConfig) -> list[str]:
    # each home's pod range is cut into /24s, the default home's 10.244.0.0/16 as in kubeadm; another home's
    # /24 is cut in as many parts as its nodes need
    return [*_as(CONTROLLER_MANAGER)(home, cfg), "--cluster-cidr", cfg.cluster_cidr,
            "--node-cidr-mask-size", str(cfg.node_cidr_mask), "--root-ca-file", str(home.pki.ca_cert),
            "--cluster-signing-cert-file", str(home.pki.ca_cert), "--cluster-signing-key-file", str(home.pki.ca_key),
            "--node-monitor-grace-period", f"{cfg.node_monitor_grace_period:g}",
            "--default-unreachable-toleration-seconds", f"{cfg.default_unreachable_toleration_seconds:g}",
            *(["--cluster-signing-duration", f"{cfg.cluster_signing_duration:g}"] if cfg.cluster_signing_duration
              else [])]


def _node_flags(home: Home, cfg: ClusterConfig) -> list[str]:
    """Where the kubelet keeps its state and how it names its host devices: what `--cleanup` needs too."""
    return ["--node-name", cfg.node_name, "--root-dir", str(home.kubelet), "--image-root",
            str(home.image_root(cfg.node_name)),
            "--runtime-state-dir", str(home.runtime), "--bridge", cfg.bridge, "--nat-table", cfg.nat_table,
            "--netns-prefix", cfg.netns_prefix, "--veth-prefix", cfg.veth_prefix,
            "--cgroup-parent", cfg.cgroup_parent, *_vni_flags(cfg)]


def _vni_flags(cfg: ClusterConfig) -> list[str]:
    """The VXLAN device's VNI: how the kubelet names it, to make it and (`--cleanup`) to remove it."""
    return ["--vxlan-vni", str(cfg.vxlan_vni)] if cfg.vxlan_vni else []


def _routing_flags(cfg: ClusterConfig) -> list[str]:
    """Several nodes: pods reach the others' pods unmasqueraded, through routes to their pod CIDRs."""
    return ["--cluster-cidr", cfg.cluster_cidr, "--pod-routes", "--network-backend", cfg.pod_routing]


def _lease_flags(cfg: ClusterConfig) -> list[str]:
    """The kubelet renews its Lease 4 times per grace period at least (Kubernetes' 10 s for 40 s), so that a
    shortened --node-monitor-grace-period never takes a live node for a lost one."""
    return ["--node-lease-renew-interval", f"{min(10.0, cfg.node_monitor_grace_period / 4):g}"]


def _kubelet_flags(home: Home, cfg: ClusterConfig) -> list[str]:
    # The kubelet API listens on the node's IP (where the apiserver reaches it for logs/exec/port-forward),
    # over TLS, and lets in only the apiserver's client certificate.
    node_ip = ["--node-ip", cfg.node_ip] if cfg.node_ip else []
    multi = _routing_flags(cfg) if cfg.workers else []
    return [*_as(node_user(cfg.node_name))(home, cfg), *_node_flags(home, cfg), *node_ip, *multi, *_lease_flags(cfg),
            "--port", str(cfg.kubelet_port),
            "--tls-cert-file", str(home.pki.cert("kubelet")), "--tls-private-key-file", str(home.pki.key("kubelet")),
            "--client-ca-file", str(home.pki.ca_cert), "--cluster-dns", cfg.dns_ip]


def _worker_node_flags(home: Home, cfg: ClusterConfig, w: Worker) -> list[str]:
    """An extra node's own state dirs and names. Its bridge, NAT table and veths live in its netns; the
    pods' netns names and the cgroup parent are host-wide, so they carry the node's index; the bridge too,
    since the kubelet records the host's ip_forward per bridge name."""
    d = home.node_dir(w.name)
    return ["--node-name", w.name, "--root-dir", str(d / "kubelet"), "--image-root", str(home.image_root(w.name)),
            "--runtime-state-dir", str(d / "runtime"), "--bridge", f"{cfg.bridge[:11]}w{w.index}",
            "--nat-table", cfg.nat_table, "--netns-prefix", f"{cfg.netns_prefix[:-1]}w{w.index}-",
            "--veth-prefix", cfg.veth_prefix, "--cgroup-parent", f"{cfg.cgroup_parent}-w{w.index}", *_vni_flags(cfg)]


def _worker_kubelet_flags(home: Home, cfg: ClusterConfig, w: Worker) -> list[str]:
    pki = home.pki
    return [*_as(node_user(w.name), gateway=True)(home, cfg), *_worker_node_flags(home, cfg, w), "--node-ip", w.ip,
            *_routing_flags(cfg), *_lease_flags(cfg), "--port", str(cfg.kubelet_port),
            "--tls-cert-file", str(pki.cert(f"kubelet-{w.name}")),
            "--tls-private-key-file", str(pki.key(f"kubelet-{w.name}")),
            "--client-ca-file", str(pki.ca_cert), "--cluster-dns", cfg.dns_ip]


def _in_worker_netns(w: Worker, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net=/run/netns/{w.netns}", "--", *procs.python_module("launcher", *argv)],
                          capture_output=True, text=True, timeout=timeout)


def _cleanup_worker(home: Home, cfg: ClusterConfig, w: Worker) -> list[str]:
    """The node's pods (containers, their netns, volumes, cgroups), from inside its netns; the netns itself
    goes with the cluster network (nodes.delete_network)."""
    if not home.node_dir(w.name).exists() or not Path(f"/run/netns/{w.netns}").exists():
        return []
    p = _in_worker_netns(w, ["kubelet", "--cleanup", *_worker_node_flags(home, cfg, w)], 120)
    return [] if p.returncode == 0 else [f"node {w.name}: {_last_line(p)}"]


def _cleanup_worker_proxy(home: Home, cfg: ClusterConfig, w: Worker) -> list[str]:
    """The table would go with the node's netns, but `--cleanup` also drops the proxy's record of the netns'
    route_localnet (pklib/sysctl.py keeps them per netns), which nothing else would remove."""
    if not Path(f"/run/netns/{w.netns}").exists():
        return []
    p = _in_worker_netns(w, ["proxy", "--cleanup", "--table", cfg.proxy_table], 60)
    return [] if p.returncode == 0 else [f"node {w.name} nftables table {cfg.proxy_table}: {_last_line(p)}"]


def _cleanup_worker_node(home: Home, cfg: ClusterConfig, w: Worker) -> list[str]:
    """What `down` cleans for a worker's one process: its proxy's part, then its kubelet's."""
    return [*_cleanup_worker_proxy(home, cfg, w), *_cleanup_worker(home, cfg, w)]


def _worker_proxy_flags(home: Home, cfg: ClusterConfig, w: Worker) -> list[str]:
    # its nftables table is the node's own: it lives in the node's netns
    return [*_as(KUBE_PROXY, gateway=True)(home, cfg), "--node-name", w.name, "--table", cfg.proxy_table,
            "--metrics-bind-address", f"{w.ip}:{cfg.proxy_metrics_port}"]


def _probe_worker(home: Home, cfg: ClusterConfig, running: float, w: Worker) -> Health:
    return _probe_node(home, cfg, running, w.name)


def _probe_worker_proxy(home: Home, cfg: ClusterConfig, running: float, w: Worker) -> Health:
    return _http_ok(f"http://{w.ip}:{cfg.proxy_metrics_port}/healthz")


def _worker_group_flags(home: Home, cfg: ClusterConfig, w: Worker) -> list[str]:
    return ["--", "kubelet", *_worker_kubelet_flags(home, cfg, w), "--", "proxy", *_worker_proxy_flags(home, cfg, w)]


def _all_ready(results: dict[str, Health], detail: str) -> Health:
    """A process hosting several components is ready once each one's check passes (`results`, by name); `detail`
    is what it shows then, else which are still waiting, and why."""
    waiting = [n for n, (ok, _) in results.items() if not ok]
    if waiting:
        return False, "waiting for " + ", ".join(f"{n} ({results[n][1]})" for n in waiting)
    return True, detail


def _cleanup_all(hosted: tuple["Component", ...]) -> Callable[[Home, ClusterConfig], list[str]]:
    """The `down` clean-up of a process hosting several components: each available one's, in order."""
    return lambda home, cfg: [problem for c in hosted if c.cleanup is not None and c.available()
                              for problem in c.cleanup(home, cfg)]


def _both_ready(results: dict[str, Health]) -> Health:
    """A node process (kubelet hosting its proxy) is ready once its kubelet's Node is Ready and its proxy
    answers /healthz; its detail is the kubelet's."""
    return _all_ready(results, results["kubelet"][1])


def _probe_worker_node(home: Home, cfg: ClusterConfig, running: float, w: Worker) -> Health:
    return _both_ready({"kubelet": _probe_worker(home, cfg, running, w),
                        "proxy": _probe_worker_proxy(home, cfg, running, w)})


def worker_components(cfg: ClusterConfig, after: str) -> tuple[Component, ...]:
    """Each extra node's kubelet and proxy, in its netns, started once the API answers (`after`).

    They share one `pkube group` process, as a k3s agent hosts its kubelet and kube-proxy: a second
    Python process would cost the node ~35 MB more (interpreter, asyncio, aiohttp, ssl) for nothing it
    needs. The process is named after the kubelet (kubelet-<node>); the proxy is its member proxy-<node>,
    whose log lines are tagged [proxy]."""
    out: list[Component] = []
    proxy = BY_NAME["proxy"]
    for w in cfg.workers:
        hosted = Component(w.proxy_component, proxy.module, None, (), functools.partial(_worker_proxy_flags, w=w),
                           functools.partial(_probe_worker_proxy, w=w), launch="proxy")
        out.append(Component(w.component, "launcher.group", None, (after,), functools.partial(_worker_group_flags, w=w),
                             functools.partial(_probe_worker_node, w=w), functools.partial(_cleanup_worker_node, w=w),
                             members=(hosted,), netns=w.netns))
    return tuple(out)


def _joined_kubelet_flags(home: Home, cfg: ClusterConfig) -> list[str]:
    """A joined node's kubelet: the node's own credentials; its API served first with a certificate of a
    node-local CA (pki.ensure_kubelet), then with one the cluster signs (--rotate-server-certificates, see join.py)."""
    pki = home.pki
    return ["--kubeconfig", str(home.node_kubeconfig), *_node_flags(home, cfg), "--node-ip", cfg.node_ip,
            "--cluster-cidr", cfg.cluster_cidr, "--pod-routes", "--network-backend", cfg.network_backend,
            "--port", str(cfg.kubelet_port),
            "--tls-cert-file", str(pki.cert("kubelet")), "--tls-private-key-file", str(pki.key("kubelet")),
            "--client-ca-file", str(pki.ca_cert), "--rotate-server-certificates", "--rotate-certificates",
            "--cluster-dns", cfg.dns_ip]


def _joined_proxy_flags(home: Home, cfg: ClusterConfig) -> list[str]:
    return ["--kubeconfig", str(home.node_kubeconfig), "--node-name", cfg.node_name, "--table", cfg.proxy_table,
            "--metrics-bind-address", f"127.0.0.1:{cfg.proxy_metrics_port}"]


def joined_components() -> tuple[Component, ...]:
    """What a joined node's home runs: its kubelet and proxy, against the cluster it joined, in one process
    (`kubelet`, hosting its member `proxy`), as a k3s agent does and as worker_components explains."""
    proxy = Component("proxy", "proxy.main", None, (), _joined_proxy_flags, _probe_proxy, _cleanup_proxy)

    def argv(home: Home, cfg: ClusterConfig) -> list[str]:
        return ["--", "kubelet", *_joined_kubelet_flags(home, cfg), "--", "proxy", *_joined_proxy_flags(home, cfg)]

    def probe(home: Home, cfg: ClusterConfig, running: float) -> Health:
        return _both_ready({"kubelet": _probe_node(home, cfg, running), "proxy": _probe_proxy(home, cfg, running)})

    def cleanup(home: Home, cfg: ClusterConfig) -> list[str]:
        return [*_cleanup_kubelet(home, cfg), *_cleanup_proxy(home, cfg)]

    return (Component("kubelet", "launcher.group", None, (), argv, probe, cleanup, members=(proxy,)),)


def _cleanup_kubelet(home: Home, cfg: ClusterConfig) -> list[str]:
    """The kubelet leaves its pods running when it stops (like Kubernetes'); `down` removes them
    (containers, netns, veths, volumes, overlay mounts), the bridge, the NAT table and the cgroup parent."""
    if not home.runtime.exists():
        return []  # this home never ran a node
    p = subprocess.run(procs.python_module("launcher", "kubelet", "--cleanup", *_node_flags(home, cfg)),
                       capture_output=True, text=True, timeout=120)
    return [] if p.returncode == 0 else [f"kubelet node state: {_last_line(p)}"]


def _last_line(p: subprocess.CompletedProcess[str]) -> str:
    """What a failed cleanup said, in one line (the error, or a traceback's last line)."""
    lines = (p.stderr or p.stdout).strip().splitlines()
    return lines[-1] if lines else f"exited {p.returncode}"


def _proxy_flags(home: Home, cfg: ClusterConfig) -> list[str]:
    return [*_as(KUBE_PROXY)(home, cfg), "--node-name", cfg.node_name, "--table", cfg.proxy_table,
            "--metrics-bind-address", f"127.0.0.1:{cfg.proxy_metrics_port}"]


def _probe_proxy(home: Home, cfg: ClusterConfig, running: float) -> Health:
    return _http_ok(f"http://127.0.0.1:{cfg.proxy_metrics_port}/healthz")


def _cleanup_proxy(home: Home, cfg: ClusterConfig) -> list[str]:
    """The proxy leaves its nftables table in place when it stops (like kube-proxy); `down` removes it."""
    p = subprocess.run(procs.python_module("launcher", "proxy", "--cleanup", "--table", cfg.proxy_table),
                       capture_output=True, text=True, timeout=60)
    return [] if p.returncode == 0 else [f"nftables table {cfg.proxy_table}: {_last_line(p)}"]


def _dns_flags(home: Home, cfg: ClusterConfig) -> list[str]:
    return [*_as(KUBE_DNS)(home, cfg), "--listen", f"{cfg.dns_ip}:53"]


def _cleanup_dns(home: Home, cfg: ClusterConfig) -> list[str]:
    """DNS adds its address to `lo` and its NOTRACK table, and removes them when it stops; a killed one cannot."""
    from pyroute2 import IPRoute  # imported here: only `down` needs netlink
    p = subprocess.run(procs.python_module("launcher", "dns", "--cleanup", "--listen", f"{cfg.dns_ip}:53"),
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        return [f"DNS NOTRACK table: {_last_line(p)}"]
    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")
        if not lo:
            return []
        for addr in ipr.get_addr(index=lo[0], family=socket.AF_INET):
            if addr.get_attr("IFA_ADDRESS") == cfg.dns_ip:
                try:
                    ipr.addr("del", index=lo[0], address=cfg.dns_ip, prefixlen=addr["prefixlen"])
                except OSError as e:
                    return [f"address {cfg.dns_ip} on lo: {e}"]
    return []


def _ingress_flags(home: Home, cfg: ClusterConfig) -> list[str]:
    """nginx on every address at the home's ingress ports (80/443 for the default home), state under the home; the
    controller makes the `pkube` IngressClass (the default one) if it is missing."""
    return [*_as(INGRESS_CONTROLLER)(home, cfg), "--http-port", str(cfg.ingress_http_port),
            "--https-port", str(cfg.ingress_https_port), "--state-dir", str(home.root / "ingress"),
            *(["--node-ip", cfg.node_ip] if cfg.node_ip else []), "--ensure-class", "pkube"]


def _cleanup_ingress(home: Home, cfg: ClusterConfig) -> list[str]:
    """A killed controller leaves its nginx running; `down` stops it."""
    p = subprocess.run(procs.python_module("launcher", "ingress", "--cleanup", "--state-dir",
                                           str(home.root / "ingress")), capture_output=True, text=True, timeout=60)
    return [] if p.returncode == 0 else [f"ingress nginx: {_last_line(p)}"]


def _group_flags(home: Home, cfg: ClusterConfig, member: Member | None = None,
                 hosted: tuple["Component", ...] | None = None) -> list[str]:
    port = member.control_plane_port if member else cfg.control_plane_port
    flags = ["--healthz-bind-address", f"{member.host if member else '127.0.0.1'}:{port}"]
    for m in MEMBERS if hosted is None else hosted:
        if m.available():
            flags += ["--", m.name, *m.argv(home, cfg)]
            if hosted is None and cfg.workers and m.name in ELECTED:
                # A cluster with a cluster network may take control-plane members (`cluster join --control-plane`,
                # cpjoin.py), whose controller-manager and scheduler elect their leader: this one takes part, as
                # the members do (a new identity at each start; a restart takes its predecessor's Lease at once).
                flags += _election(f"control-plane_{cfg.node_name}")
    return flags


def member_health(home: Home, cfg: ClusterConfig, member: Member | None = None) -> dict[str, bool] | None:
    """Each member's readiness from the group's verbose /healthz; None when it does not answer."""
    where = f"{member.host}:{member.control_plane_port}" if member else f"127.0.0.1:{cfg.control_plane_port}"
    try:  # a 503 (a member not ready) lists them all too
        _, body = keepalive.get(f"http://{where}/healthz?verbose")
    except (OSError, http.client.HTTPException):
        return None
    text = body.decode(errors="replace")
    return {line[3:].split()[0]: line.startswith("[+]") for line in text.splitlines() if line[:3] in ("[+]", "[-]")}


def _probe_group(home: Home, cfg: ClusterConfig, running: float, member: Member | None = None) -> Health:
    health = member_health(home, cfg, member)
    if health is None:
        where = f"{member.host}:{member.control_plane_port}" if member else f"127.0.0.1:{cfg.control_plane_port}"
        return False, f"no answer on {where}/healthz"
    waiting = [name for name, ok in health.items() if not ok]
    return not waiting, f"waiting for {', '.join(waiting)}" if waiting else f"{', '.join(health)} ready"


def _probe_member(home: Home, cfg: ClusterConfig, running: float, name: str, member: Member | None = None) -> Health:
    health = member_health(home, cfg, member)
    if health is None or name not in health:
        return False, "control-plane process not answering"
    return health[name], "in control-plane" if health[name] else "starting, in control-plane"


def _member_probe(name: str, member: Member | None = None) -> Callable[[Home, ClusterConfig, float], Health]:
    return lambda home, cfg, running: _probe_member(home, cfg, running, name, member)


def _cleanup_group(home: Home, cfg: ClusterConfig) -> list[str]:
    return _cleanup_all(MEMBERS)(home, cfg)


# Run inside the control-plane process, each through its own `run(config, ready)`: one Python
# process instead of four saves ~40 MB per member (see launcher/group.py).
MEMBERS: tuple[Component, ...] = (
    Component("controller-manager", "controllers.main", None, (), _controller_flags, _member_probe("controller-manager")),
    Component("scheduler", "scheduler.main", None, (), _as(SCHEDULER), _member_probe("scheduler")),
    Component("proxy", "proxy.main", None, (), _proxy_flags, _probe_proxy, _cleanup_proxy),
    Component("dns", "proxy.dns_main", None, (), _dns_flags, _member_probe("dns"), _cleanup_dns),
    Component("ingress", "ingress.main", None, (), _ingress_flags, _member_probe("ingress"), _cleanup_ingress,
              needs=("nginx",)),
)
GROUP = Component("control-plane", "launcher.group", None, ("apiserver",), _group_flags, _probe_group, _cleanup_group,
                  members=MEMBERS)

# The supervised processes, in dependency order: etcd → apiserver → kubelet, control-plane.
COMPONENTS: tuple[Component, ...] = (
    Component("etcd", None, "etcd", (), _etcd_flags, probe_etcd),
    Component("apiserver", "apiserver.main", None, ("etcd",), _apiserver_flags, _probe_apiserver),
    Component("kubelet", "kubelet.main", None, ("apiserver",), _kubelet_flags, _probe_node, _cleanup_kubelet),
    GROUP,
)

# Every component by name, the group's members included.
BY_NAME = {c.name: c for c in (*COMPONENTS, *MEMBERS)}

# What runs on every control-plane member of a highly available cluster; the proxy, DNS and ingress serve the
# node, so only the first member's process hosts them.
ELECTED = ("controller-manager", "scheduler")


def compact_components() -> tuple[Component, ...]:
    """`up --compact`: etcd, and one process hosting everything else, the apiserver and the kubelet with the
    control-plane members, as k3s runs its server. Each Python process costs ~39 MB before it does any work
    (launcher/group.py), so two fewer save ~80 MB; the price is that a failure of any of them restarts them all
    together, and that the apiserver and the kubelet share one interpreter lock."""
    api, kubelet = BY_NAME["apiserver"], BY_NAME["kubelet"]
    hosted = (api, kubelet, *MEMBERS)

    def probe(h: Home, cf: ClusterConfig, running: float) -> Health:
        # the apiserver's and the node's own checks, then the members' (from the process's /healthz)
        results = {x.name: x.probe(h, cf, running) for x in (api, kubelet, GROUP)}
        return _all_ready(results, results[GROUP.name][1])

    return (BY_NAME["etcd"], Component(GROUP.name, GROUP.module, None, ("etcd",),
                                       lambda h, c: _group_flags(h, c, hosted=hosted), probe, _cleanup_all(hosted),
                                       members=hosted))


def components(cfg: ClusterConfig) -> tuple[Component, ...]:
    """The supervised processes of this cluster: COMPONENTS for one control plane (compact_components with
    `up --compact`); with several, etcd-cpN, apiserver-cpN and control-plane-cpN per member (`cluster status`
    and `up` list them in this order), and one kubelet."""
    if cfg.joined:
        return joined_member_components(cfg) if cfg.members else joined_components()
    if cfg.compact:
        return compact_components() + worker_components(cfg, GROUP.name)
    if not cfg.members:
        return COMPONENTS + worker_components(cfg, "apiserver") if cfg.workers else COMPONENTS
    etcds = tuple(_member_component("etcd", m) for m in cfg.members)
    apis = tuple(_member_component("apiserver", m, after=tuple(e.name for e in etcds)) for m in cfg.members)
    groups = tuple(_member_group(m, first=i == 0) for i, m in enumerate(cfg.members))
    kubelet = BY_NAME["kubelet"]
    return (*etcds, *apis, Component(kubelet.name, kubelet.module, kubelet.binary, (apis[0].name,), kubelet.argv,
                                     kubelet.probe, kubelet.cleanup), *groups, *worker_components(cfg, apis[0].name))


def _member_component(kind: str, m: Member, after: tuple[str, ...] = ()) -> Component:
    base = BY_NAME[kind]
    if kind == "etcd":
        return Component(f"etcd-{m.name}", None, "etcd", after, lambda h, c: _etcd_flags(h, c, m),
                         lambda h, c, r: probe_etcd(h, c, r, m))
    return Component(f"apiserver-{m.name}", base.module, None, after, lambda h, c: _apiserver_flags(h, c, m),
                     lambda h, c, r: _probe_apiserver(h, c, r, m), launch="apiserver")


def joined_member_components(cfg: ClusterConfig) -> tuple[Component, ...]:
    """What a control-plane member that joined another machine's cluster runs (`pkctl cluster join
    --control-plane`): its etcd member, its apiserver, and its controller-manager and scheduler (leader-elected
    with the cluster's); no node."""
    m = cfg.members[0]
    etcd = _member_component("etcd", m)
    return etcd, _member_component("apiserver", m, after=(etcd.name,)), _member_group(m, first=False)


def _elected(argv: Callable[[Home, ClusterConfig], list[str]], process: str
             ) -> Callable[[Home, ClusterConfig], list[str]]:
    """argv plus leader election; the identity names the control-plane process (what `cluster status` shows),
    new at each start, as Kubernetes' are: a process that outlived its supervisor (stopping within its grace) and
    its successor never act as one leader. The supervisor names the identity of the process it saw exit
    (supervisor.with_predecessors), whose Lease the restarted process then takes at once."""
    return lambda h, c: [*argv(h, c), *_election(process)]


def _election(process: str) -> list[str]:
    """The flags of a leader-elected controller-manager or scheduler, with an identity new at every call."""
    return ["--leader-elect", "--leader-elect-identity", f"{process}_{uuid.uuid4().hex[:8]}"]


# The Leases the controller-manager and the scheduler elect their leader with (controllers/main.py, scheduler/main.py).
ELECTION_LEASES = {"controller-manager": "pkube-controller-manager", "scheduler": "kube-scheduler"}


def lease_holder(home: Home, cfg: ClusterConfig, name: str) -> str | None:
    """The control-plane process holding the Lease of controller-manager or scheduler (identities are
    <process>_<random>, see _elected); None when nobody holds it or the API does not answer."""
    lease = api_get(home, cfg, f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{ELECTION_LEASES[name]}")
    holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
    return str(holder).rsplit("_", 1)[0] if holder else None


def _probe_elected(home: Home, cfg: ClusterConfig, name: str, m: Member) -> Health:
    """A member that elects its leader is ready only while it leads; one that waits while another
    control plane leads is a healthy standby (as kube-controller-manager's /healthz says)."""
    health = member_health(home, cfg, m)
    if health is None or name not in health:
        return False, "control-plane process not answering"
    if health[name]:
        return True, "leading"
    holder = lease_holder(home, cfg, name)
    if holder and holder != f"control-plane-{m.name}":
        return True, f"standby, {holder} leads"
    return False, "starting"


def _elected_probe(name: str, m: Member) -> Callable[[Home, ClusterConfig, float], Health]:
    return lambda home, cfg, running: _probe_elected(home, cfg, name, m)


def _member_group(m: Member, first: bool) -> Component:
    hosted = tuple(Component(c.name, c.module, c.binary, c.after,
                             _elected(c.argv, f"control-plane-{m.name}") if c.name in ELECTED else c.argv,
                             _elected_probe(c.name, m) if c.name in ELECTED
                             else c.probe if c.name == "proxy" else _member_probe(c.name, m), c.cleanup,
                             needs=c.needs)
                   for c in MEMBERS if first or c.name in ELECTED)

    def probe(h: Home, cf: ClusterConfig, running: float) -> Health:
        results = {x.name: x.probe(h, cf, running) for x in hosted if x.available()}
        return _all_ready(results, ", ".join(results) + " ready")

    return Component(f"control-plane-{m.name}", "launcher.group", None, (f"apiserver-{m.name}",),
                     lambda h, c: _group_flags(h, c, m, hosted), probe, _cleanup_all(hosted), members=hosted)


def all_names(cfg: ClusterConfig) -> list[str]:
    """Every component name of this cluster, the members of control-plane processes included."""
    return [n for c in components(cfg) for n in (c.name, *(m.name for m in c.members))]
