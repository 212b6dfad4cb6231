"""The pkube home: every file a local cluster owns lives under one directory.

    <home>/config.json      ports and ranges chosen at the first `up` (kept so restarts reuse them)
    <home>/tokens.csv       static bearer tokens for the apiserver (a random admin token)
    <home>/kubeconfig       admin kubeconfig, usable by pkctl and kubectl
    <home>/pki/             the cluster's CA and the certificates it issued (pki.py)
    <home>/etcd/            etcd data (survives `down`, removed by `down --purge`); with several control
                            planes, one data dir per etcd member: etcd/<member>/
    <home>/images/          node image store (bundled busybox)
    <home>/kubelet/         kubelet state: pod volumes, local-path PVs
    <home>/runtime/         container runtime state (runc root at runtime/runc, IPAM, sandboxes)
    <home>/nodes/<node>/    kubelet and runtime state of each extra node (`up --nodes N`)
    <home>/identities/      one kubeconfig per component identity (system:kube-scheduler, system:node:<node>, ...),
                            each with its own token in tokens.csv, so RBAC gives each component only what it uses;
                            the extra nodes' (`up --nodes N`) reach the API at the cluster network's gateway
    <home>/ingress/         the ingress controller's nginx: configuration, certificates, pid file, error log
    <home>/logs/<c>.log     stdout/stderr of each component and of the supervisor
    <home>/run/<c>.json     state the supervisor publishes for each component
    <home>/run/supervisor.json  the supervisor's own pid record; run/supervisor.lock held while it lives
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pklib import kubeconfig
from pklib.api.ingress import INGRESS_CONTROLLER_USER

DEFAULT_PORTS = {"etcd_client_port": 2379, "etcd_peer_port": 2380, "api_port": 6443, "proxy_metrics_port": 10249,
                 "kubelet_port": 10250, "control_plane_port": 10257}
DEFAULT_PROXY_TABLE = "pkube-proxy"
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"  # kube-dns at 10.96.0.10 as in Kubernetes; the rest of /12 for other homes
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"


class HomeError(Exception):
    """A problem with the home the user must fix (printed as one line)."""


def resolve(arg: str | None) -> Path:
    """--home, else $PKUBE_HOME, else /var/lib/pkube; always absolute (the supervisor changes cwd)."""
    return (Path(arg) if arg else kubeconfig.pkube_home()).expanduser().absolute()


@dataclass(frozen=True)
class Pki:
    """Where the cluster's certificates live (pkctl/cluster/pki.py makes them)."""
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        """Signs service-account tokens (kubeadm's sa.key)."""
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def cert(self, name: str) -> Path:
        """A leaf certificate by name: etcd-server, etcd-peer, apiserver-etcd-client, etcd-healthcheck-client,
        apiserver-kubelet-client, kubelet."""
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


@dataclass
class Member:
    """One control-plane member of a highly available cluster: an etcd member, an apiserver and a
    controller-manager + scheduler. `host` is the address its servers listen on and are reached at
    (127.0.0.1 today, with distinct ports; a member in its own network namespace gets its own IP)."""
    name: str  # cp1, cp2, ...: the etcd member name, and the suffix of its components (etcd-cp1, ...)
    host: str
    etcd_client_port: int
    etcd_peer_port: int
    api_port: int
    control_plane_port: int

    @property
    def etcd_url(self) -> str:
        return f"https://{self.host}:{self.etcd_client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.host}:{self.etcd_peer_port}"


@dataclass
class Worker:
    """An extra node of a multi-node cluster (`up --nodes N`), like a kind worker container: a network
    namespace of its own joined by a veth to the cluster bridge, where its kubelet and proxy run."""
    name: str    # the Node's name: <home>-worker, <home>-worker2, ...
    index: int   # 2, 3, ...: its suffix in every name below
    ip: str      # its InternalIP on the cluster network
    netns: str   # the named network namespace (/run/netns/<netns>)
    veth: str    # the host end of its link to the cluster bridge

    @property
    def component(self) -> str:
        return f"kubelet-{self.name}"

    @property
    def proxy_component(self) -> str:
        return f"proxy-{self.name}"

    @property
    def client_cert(self) -> str:
        """Its kubelet's client certificate in the home's pki (system:node:<name>, group system:nodes)."""
        return f"kubelet-{self.name}-client"


@dataclass
class ClusterConfig:
    etcd_client_port: int
    etcd_peer_port: int
    api_port: int
    service_cidr: str = DEFAULT_SERVICE_CIDR
    cluster_cidr: str = DEFAULT_CLUSTER_CIDR
    node_name: str = field(default_factory=lambda: socket.gethostname().lower())
    tls: bool = False  # the API is served over HTTPS (decided at each `up` by what the apiserver supports)
    proxy_metrics_port: int = DEFAULT_PORTS["proxy_metrics_port"]
    proxy_table: str = DEFAULT_PROXY_TABLE  # nftables table the service proxy owns
    kubelet_port: int = DEFAULT_PORTS["kubelet_port"]
    control_plane_port: int = DEFAULT_PORTS["control_plane_port"]  # /healthz of the control-plane process
    # How the kubelet names what it puts on the host; a non-default home gets its own names (node_names()),
    # so two clusters never share a bridge, a NAT table, netns, veths or a cgroup.
    bridge: str = "pkube0"
    nat_table: str = "pkube-nat"
    netns_prefix: str = "pkube-"
    veth_prefix: str = "pkv"
    cgroup_parent: str = "pkube"
    node_ip: str = ""  # the node's InternalIP, found again at each `up` (the kubelet's certificate names it)
    # Highly available control plane (`up --control-planes N`, N > 1): its members. Empty for the
    # single-member default, which uses the ports above directly; with members, api_port is the
    # supervisor's load balancer in front of the members' apiservers.
    members: list[Member] = field(default_factory=list)
    # Several nodes (`up --nodes N`, N > 1): the extra ones, the bridge joining them to the host (which runs
    # the first node) and its subnet; the host holds the subnet's first address and reaches them through it.
    workers: list[Worker] = field(default_factory=list)
    node_bridge: str = ""
    node_subnet: str = ""
    # A node that joined another machine's cluster (`pkctl cluster join`): that cluster's API URL. Such a home
    # runs only this node's kubelet and proxy, authenticated by the client certificate it bootstrapped.
    joined: str = ""
    # A control-plane member that joined another machine's cluster (`pkctl cluster join --control-plane`, see
    # pkctl/cluster/cpjoin.py): its one Member is in `members`; its etcd member's --initial-cluster (every
    # member when it was added; it starts with --initial-cluster-state existing), the other members' client
    # URLs (its apiserver's fallbacks) and how the kubelets of a joined worker route pods.
    etcd_initial_cluster: str = ""
    etcd_peers: list[str] = field(default_factory=list)
    # The ingress controller's nginx (0: not chosen yet; the default home prefers 80 and 443).
    ingress_http_port: int = 0
    ingress_https_port: int = 0
    # How the controller-manager treats a silent node (`up --node-monitor-grace-period`,
    # `--default-unreachable-toleration-seconds`; Kubernetes' defaults), kept for later `up`s and restarts.
    node_monitor_grace_period: float = 40.0
    default_unreachable_toleration_seconds: float = 300.0
    # Seconds a certificate the controller-manager signs lasts (`up --cluster-signing-duration`; 0: its default,
    # a year), kept for later `up`s: short ones show the kubelets renewing theirs.
    cluster_signing_duration: float = 0.0
    # Seconds an Event lives (`up --event-ttl`, kube-apiserver's flag; 0: its default, an hour), kept for later
    # `up`s: a short one keeps a churning cluster's Events (and etcd) small, and makes a soak reach its plateau.
    event_ttl: float = 0.0
    # How the nodes route each other's pod CIDRs (`up --network-backend`): host-gw, vxlan or auto; and the VNI of
    # the VXLAN devices (0: not chosen yet; 1 for the default home, another per home so that two clusters' host
    # nodes never share a VXLAN device).
    network_backend: str = "auto"
    vxlan_vni: int = 0
    # Each node's share of the pod range, fixed once nodes are added to a running cluster (`cluster node add`):
    # the nodes already running keep their ranges. 0: computed from the number of nodes (node_cidr_mask).
    node_cidr_mask_size: int = 0
    # One process for the apiserver, the kubelet and the control-plane members (`up --compact`, k3s' layout), kept
    # for later `up`s; only with one control plane.
    compact: bool = False

    def __post_init__(self) -> None:
        self.members = [m if isinstance(m, Member) else Member(**m) for m in self.members]
        self.workers = [w if isinstance(w, Worker) else Worker(**w) for w in self.workers]

    @property
    def nodes(self) -> int:
        return len(self.workers) + 1

    @property
    def node_gateway(self) -> str:
        """The host's address on the cluster network: the other nodes reach the API there."""
        return str(ipaddress.ip_network(self.node_subnet)[1]) if self.node_subnet else ""

    @property
    def advertise_address(self) -> str:
        """Where pods reach the API (the `kubernetes` Service's endpoint, port api_port): the cluster network's
        gateway with several nodes, else the node's own address; both served by the supervisor's balancer."""
        if self.joined:
            return ""
        if self.workers:
            return self.node_gateway
        if self.node_ip and not ipaddress.ip_address(self.node_ip).is_loopback:
            return self.node_ip
        return ""

    @property
    def pod_routing(self) -> str:
        """The backend the kubelets run: `auto` is decided here, where the whole cluster network is known: host-gw
        when every node's InternalIP is on a subnet the others reach directly, else vxlan. A local cluster's extra
        nodes are all on the cluster bridge, whose gateway is the first node (the host) itself, so that is
        host-gw; VXLAN is for nodes without a shared L2 network (`--network-backend vxlan` forces it)."""
        if self.network_backend != "auto":
            return self.network_backend
        subnet = ipaddress.ip_network(self.node_subnet) if self.node_subnet else None
        direct = subnet is not None and all(ipaddress.ip_address(w.ip) in subnet for w in self.workers)
        return "host-gw" if direct else "vxlan"

    @property
    def node_cidr_mask(self) -> int:
        """Each node's share of the pod range: /24s where they fit (kubeadm's default), else cut to fit them all."""
        if self.node_cidr_mask_size:
            return self.node_cidr_mask_size
        prefix = ipaddress.ip_network(self.cluster_cidr).prefixlen
        return max(24, prefix + (self.nodes - 1).bit_length())

    @property
    def control_planes(self) -> int:
        return len(self.members) or 1

    @property
    def etcd_urls(self) -> list[str]:
        return [m.etcd_url for m in self.members] + self.etcd_peers or [self.etcd_url]

    @property
    def etcd_host(self) -> str:
        """Where this cluster's etcd members advertise themselves (to each other, and to a machine joining as a
        control-plane member): the cluster network's gateway when there is one, which other machines reach (the
        members listen there as well as on loopback), else loopback."""
        return self.node_gateway if self.workers and not self.joined else "127.0.0.1"

    @property
    def dns_ip(self) -> str:
        """The cluster DNS address: the 10th of the service range, like kube-dns' 10.96.0.10."""
        return str(ipaddress.ip_network(self.service_cidr)[10])

    @property
    def etcd_url(self) -> str:
        return f"https://127.0.0.1:{self.etcd_client_port}"  # TLS with client certificates (pki.py)

    @property
    def api_url(self) -> str:
        if self.joined and self.members:  # a joined control-plane member: its own apiserver
            return f"https://{self.members[0].host}:{self.members[0].api_port}"
        if self.joined:
            return self.joined
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.api_port}"


class Home:
    def __init__(self, root: Path):
        self.root = root
        self.config_file = root / "config.json"
        self.tokens_file = root / "tokens.csv"
        self.kubeconfig = root / "kubeconfig"
        self.pki = Pki(root / "pki")
        self.etcd_data = root / "etcd"
        self.images = root / "images"
        self.kubelet = root / "kubelet"
        self.runtime = root / "runtime"
        self.logs = root / "logs"
        self.run = root / "run"
        self.supervisor_lock = self.run / "supervisor.lock"

    def image_root(self, node: str) -> Path:
        """The image store of a node of this home's cluster (its kubelet's --image-root): the nodes of one
        machine (`up --nodes N`) share the machine's store, so an image built or loaded once runs on all."""
        return self.images

    def node_image_roots(self, cfg: ClusterConfig) -> dict[str, Path]:
        """Node name -> its image store, for every node `cluster up` runs (not those joined from elsewhere)."""
        return {node: self.image_root(node) for node in [cfg.node_name, *(w.name for w in cfg.workers)]}

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def state_file(self, component: str) -> Path:
        return self.run / f"{component}.json"

    def exists(self) -> bool:
        return self.config_file.exists()

    def load_config(self) -> ClusterConfig:
        return self.read_config()[0]

    def read_config(self) -> tuple[ClusterConfig, str]:
        """The config and the digest of the file it was read from (the supervisor records the one it runs)."""
        try:
            data = self.config_file.read_bytes()
            return ClusterConfig(**json.loads(data)), config_digest(data)
        except FileNotFoundError:
            raise HomeError(f"no pkube cluster at {self.root}: run `pkctl cluster up --home {self.root}`") from None
        except (ValueError, TypeError) as e:
            raise HomeError(f"{self.config_file} is damaged ({e}); remove the home with "
                            f"`pkctl cluster down --purge --home {self.root}`") from None

    def token(self) -> str:
        return self.tokens_file.read_text().split(",", 1)[0].strip()

    def read_state(self, component: str) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.state_file(component).read_text())
            return state
        except (FileNotFoundError, ValueError):
            return None

    def write_state(self, component: str, state: dict[str, Any]) -> None:
        write_json(self.state_file(component), state)

    def etcd_dir(self, member: Member | None) -> Path:
        return self.etcd_data / member.name if member else self.etcd_data

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def identity_kubeconfig(self, user: str, gateway: bool = False) -> Path:
        """The kubeconfig a component authenticates with as `user` (its own token in tokens.csv); `gateway`:
        the API at the cluster network's gateway, where the extra nodes reach it."""
        slug = user.removeprefix("system:").replace(":", "-")
        return self.root / "identities" / f"{slug}{'-gateway' if gateway else ''}.kubeconfig"

    def _ensure_identities(self, cfg: ClusterConfig) -> None:
        """A token per component identity in tokens.csv (the admin's line stays first) and its kubeconfigs."""
        wanted = component_identities(cfg)
        rows = list(csv.reader(self.tokens_file.read_text().splitlines()))
        tokens = {row[1]: row[0] for row in rows if len(row) >= 2}
        missing = [user for user in wanted if user not in tokens]
        if missing:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerows(rows)
            for user in missing:
                tokens[user] = secrets.token_hex(32)
                writer.writerow([tokens[user], user, user, ",".join(wanted[user])])
            tmp = self.tokens_file.with_name(f".tokens.{secrets.token_hex(4)}")
            write_private(tmp, out.getvalue())
            os.replace(tmp, self.tokens_file)
        (self.root / "identities").mkdir(mode=0o700, exist_ok=True)
        gateway = f"{'https' if cfg.tls else 'http'}://{cfg.node_gateway}:{cfg.api_port}"
        worker_users = {node_user(w.name) for w in cfg.workers} | ({KUBE_PROXY} if cfg.workers else set())
        for user in wanted:
            self._write_kubeconfig(self.identity_kubeconfig(user), cfg.api_url, cfg.tls, tokens[user])
            if user in worker_users:
                self._write_kubeconfig(self.identity_kubeconfig(user, gateway=True), gateway, cfg.tls, tokens[user])
        if cfg.tls:
            from pkctl.cluster import pki  # cryptography: heavy, and only `up` and `cluster node add` get here
            for w in cfg.workers:
                pki.ensure_node_client(self.pki.dir, w.name, w.client_cert)
                self._write_kubeconfig(self.identity_kubeconfig(node_user(w.name), gateway=True), gateway, cfg.tls,
                                       client_cert=w.client_cert)

    def forget_node(self, w: Worker) -> list[str]:
        """Everything a removed extra node (`cluster node remove`) kept in the home: its token (the API stops
        taking it at the next start) or client certificate, kubeconfigs, serving certificate, state dirs, state
        records and logs.
        Returns what could not be removed."""
        user = node_user(w.name)
        rows = [r for r in csv.reader(self.tokens_file.read_text().splitlines()) if not (len(r) >= 2 and r[1] == user)]
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        tmp = self.tokens_file.with_name(f".tokens.{secrets.token_hex(4)}")
        write_private(tmp, out.getvalue())
        os.replace(tmp, self.tokens_file)
        problems = []
        for path in (self.identity_kubeconfig(user), self.identity_kubeconfig(user, gateway=True),
                     self.pki.cert(w.component), self.pki.key(w.component), self.pki.cert(w.client_cert),
                     self.pki.key(w.client_cert), self.state_file(w.component),
                     self.state_file(w.proxy_component), self.log(w.component), self.log(w.proxy_component)):
            path.unlink(missing_ok=True)
        try:
            shutil.rmtree(self.node_dir(w.name))
        except FileNotFoundError:
            pass
        except OSError as e:  # e.g. a volume still mounted there
            problems.append(f"{self.node_dir(w.name)}: {e}")
        return problems

    def prepare_check(self, control_planes: int | None, nodes: int | None = None) -> None:
        """HomeError when an existing home was made with another number of control planes or nodes."""
        cfg = self.load_config()
        if nodes is not None and nodes != cfg.nodes:
            raise HomeError(f"the cluster at {self.root} was created with --nodes {cfg.nodes}; run `pkctl cluster "
                            f"up` without --nodes to start it as it is, or remove it (`pkctl cluster down --purge "
                            f"--home {self.root}`) and create it again with --nodes {nodes}")
        if control_planes is None:
            return
        if control_planes != cfg.control_planes:
            raise HomeError(f"the cluster at {self.root} was created with --control-planes {cfg.control_planes}; "
                            f"run `pkctl cluster up` without --control-planes to start it as it is, or back it up "
                            f"(`pkctl cluster backup FILE`), remove it (`pkctl cluster down --purge --home "
                            f"{self.root}`) and restore it with `pkctl cluster restore FILE --control-planes "
                            f"{control_planes}`")

    def prepare(self, api_port: int | None, default_home: bool, tls: bool,
                control_planes: int | None = None, nodes: int | None = None,
                node_monitor_grace_period: float | None = None,
                default_unreachable_toleration_seconds: float | None = None,
                network_backend: str | None = None, cluster_signing_duration: float | None = None,
                event_ttl: float | None = None, compact: bool | None = None) -> ClusterConfig:
        """Create the layout on the first `up`; later calls reuse what was recorded (the node-loss
        timings and the layout given replace the recorded ones).

        Ports: the default home prefers Kubernetes' well-known ports; any other home (tests,
        a second cluster) takes free ones, so two clusters never collide.
        """
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # holds the admin token (and may have been made by someone else)
        for d in (self.etcd_data, self.images, self.logs, self.run):
            d.mkdir(parents=True, exist_ok=True)
        if self.exists():
            cfg = self.load_config()
            if api_port is not None and api_port != cfg.api_port:
                raise HomeError(f"the cluster at {self.root} uses API port {cfg.api_port}; to change it, "
                                f"remove it first with `pkctl cluster down --purge --home {self.root}`")
            self.prepare_check(control_planes, nodes)
        else:
            taken: set[int] = set()

            def choose(default: int, wanted: int | None = None) -> int:
                port = wanted or pick_port(default if default_home else None, taken)
                taken.add(port)
                return port
            # the API port first: an explicit --api-port must not be handed to etcd
            api = choose(DEFAULT_PORTS["api_port"], api_port)
            cfg = ClusterConfig(etcd_client_port=choose(DEFAULT_PORTS["etcd_client_port"]),
                                etcd_peer_port=choose(DEFAULT_PORTS["etcd_peer_port"]), api_port=api,
                                proxy_metrics_port=choose(DEFAULT_PORTS["proxy_metrics_port"]),
                                kubelet_port=choose(DEFAULT_PORTS["kubelet_port"]),
                                control_plane_port=choose(DEFAULT_PORTS["control_plane_port"]))
            if not default_home:
                # Services and pods of two clusters on one host must not share addresses, nftables
                # rules or network devices.
                digest = hashlib.sha256(str(self.root).encode()).digest()
                cfg.service_cidr = private_service_range(digest)
                cfg.cluster_cidr = private_pod_range(digest)
                private_node_names(cfg, self.root)
            if control_planes is not None and control_planes > 1:
                # The first member keeps the home's etcd and control-plane ports; api_port becomes the balancer's.
                cfg.members = [Member(f"cp{i + 1}", "127.0.0.1",
                                      cfg.etcd_client_port if i == 0 else choose(DEFAULT_PORTS["etcd_client_port"]),
                                      cfg.etcd_peer_port if i == 0 else choose(DEFAULT_PORTS["etcd_peer_port"]),
                                      choose(DEFAULT_PORTS["api_port"] + 1 + i),
                                      cfg.control_plane_port if i == 0 else choose(DEFAULT_PORTS["control_plane_port"]))
                               for i in range(control_planes)]
            if nodes is not None and nodes > 1:
                add_workers(cfg, self.root, nodes)
        if not cfg.ingress_http_port or not cfg.ingress_https_port:
            taken = {cfg.etcd_client_port, cfg.etcd_peer_port, cfg.api_port, cfg.proxy_metrics_port, cfg.kubelet_port,
                     cfg.control_plane_port}
            cfg.ingress_http_port = pick_port(80 if default_home else None, taken)
            cfg.ingress_https_port = pick_port(443 if default_home else None, taken | {cfg.ingress_http_port})
        cfg.tls = tls
        if node_monitor_grace_period is not None:
            cfg.node_monitor_grace_period = node_monitor_grace_period
        if default_unreachable_toleration_seconds is not None:
            cfg.default_unreachable_toleration_seconds = default_unreachable_toleration_seconds
        if network_backend is not None:
            cfg.network_backend = network_backend
        if cluster_signing_duration is not None:
            cfg.cluster_signing_duration = cluster_signing_duration
        if event_ttl is not None:
            cfg.event_ttl = event_ttl
        if compact is not None:
            if compact and cfg.members:
                raise HomeError(f"the cluster at {self.root} has {len(cfg.members)} control planes, each in processes "
                                "of its own: --compact runs a cluster with one control plane")
            cfg.compact = compact
        if not cfg.vxlan_vni:
            cfg.vxlan_vni = 1 if default_home else private_vni(hashlib.sha256(str(self.root).encode()).digest())
        if not self.tokens_file.exists():
            write_private(self.tokens_file, f"{secrets.token_hex(32)},admin,admin,system:masters\n")
        # imported here: cryptography and netlink are heavy, and only `up` needs them, not the supervisor
        from pkctl.cluster import pki
        from pklib.hostnet import host_ip
        cfg.node_ip = host_ip()
        # the node's own address too: where `pkctl cluster token create` sends joining machines without workers
        # (and the cluster network's gateway, the one nodes are added on later, as `cluster node add` adds them
        # without restarting the apiserver)
        reached_at = [str(ipaddress.ip_network(cfg.node_subnet or node_network(self.root)[0])[1])]
        if cfg.node_ip and not ipaddress.ip_address(cfg.node_ip).is_loopback:
            reached_at.append(cfg.node_ip)
        pki.ensure(self.pki.dir, ips=reached_at or None,
                   service_ip=str(ipaddress.ip_network(cfg.service_cidr)[1]),
                   etcd_ips=[cfg.etcd_host] if cfg.workers else None)
        pki.ensure_kubelet(self.pki.dir, cfg.node_name, [cfg.node_ip])
        for w in cfg.workers:
            pki.ensure_kubelet(self.pki.dir, w.name, [w.ip], name=f"kubelet-{w.name}")
        write_json(self.config_file, asdict(cfg))
        self._write_kubeconfig(self.kubeconfig, cfg.api_url, tls)
        self._ensure_identities(cfg)
        return cfg

    def write_kubeconfigs(self, cfg: ClusterConfig) -> None:
        """The admin kubeconfig and every component identity's (a joined control-plane member's, at its own
        apiserver)."""
        self._write_kubeconfig(self.kubeconfig, cfg.api_url, cfg.tls)
        self._ensure_identities(cfg)

    def _write_kubeconfig(self, path: Path, server: str, tls: bool, token: str | None = None,
                          client_cert: str = "") -> None:
        """`client_cert`: authenticate with this certificate of the home's pki (pki.cert/key) instead of a token."""
        doc = kubeconfig.build(server, None if client_cert else token or self.token())
        if client_cert:
            doc["users"][0]["user"] = {"client-certificate": str(self.pki.cert(client_cert)),
                                       "client-key": str(self.pki.key(client_cert))}
        if tls:
            doc["clusters"][0]["cluster"]["certificate-authority-data"] = \
                base64.b64encode(self.pki.ca_cert.read_bytes()).decode()
        kubeconfig.write(path, doc, as_json=True)


    @property
    def node_kubeconfig(self) -> Path:
        """A joined node's kubeconfig: the cluster's CA and the node's bootstrapped client certificate."""
        return self.root / "kubelet.kubeconfig"

    def prepare_joined(self, server: str, node_name: str, node_ip: str, service_cidr: str, cluster_cidr: str,
                       default_home: bool, network_backend: str = "auto", vxlan_vni: int = 0) -> ClusterConfig:
        """The layout of a home that runs one node of another machine's cluster (`pkctl cluster join`): its
        kubelet's and proxy's state and names (their own on a shared host, as any non-default home's), and
        the ports they serve on. The credentials are written by pkctl/cluster/join.py."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        for d in (self.images, self.logs, self.run, self.pki.dir):
            d.mkdir(parents=True, exist_ok=True)
        taken: set[int] = set()

        def choose(default: int) -> int:
            port = pick_port(default if default_home else None, taken)
            taken.add(port)
            return port
        kubelet_port, metrics_port = choose(DEFAULT_PORTS["kubelet_port"]), choose(DEFAULT_PORTS["proxy_metrics_port"])
        cfg = ClusterConfig(etcd_client_port=0, etcd_peer_port=0, api_port=0, service_cidr=service_cidr,
                            cluster_cidr=cluster_cidr, node_name=node_name, tls=True, kubelet_port=kubelet_port,
                            proxy_metrics_port=metrics_port, node_ip=node_ip, joined=server,
                            network_backend=network_backend, vxlan_vni=vxlan_vni)
        if not default_home:
            private_node_names(cfg, self.root)
        write_json(self.config_file, asdict(cfg))
        return cfg


# The users pkube's components authenticate as; the apiserver's default RBAC roles bind each to what it uses
# (apiserver/authz/policy.py), and the Node authorizer limits a kubelet to its own node's objects.
CONTROLLER_MANAGER, SCHEDULER, KUBE_PROXY, KUBE_DNS = ("system:kube-controller-manager", "system:kube-scheduler",
                                                       "system:kube-proxy", "system:kube-dns")
INGRESS_CONTROLLER = INGRESS_CONTROLLER_USER


def node_user(node: str) -> str:
    return f"system:node:{node}"


def component_identities(cfg: ClusterConfig) -> dict[str, tuple[str, ...]]:
    """user -> groups, for every component of this cluster."""
    out: dict[str, tuple[str, ...]] = {CONTROLLER_MANAGER: (), SCHEDULER: (), KUBE_PROXY: (), KUBE_DNS: (),
                                       INGRESS_CONTROLLER: ()}
    # an extra node of a TLS cluster authenticates with a client certificate instead (Worker.client_cert): the
    # apiserver reads its token file only at start, and `cluster node add` adds nodes without restarting it
    for node in (cfg.node_name, *(w.name for w in cfg.workers if not cfg.tls)):
        out[node_user(node)] = ("system:nodes",)
    return out


def node_name_prefix(root: Path) -> str:
    """The home's name as a DNS label, for its nodes' names (kind's <cluster>-worker)."""
    label = re.sub(r"[^a-z0-9-]+", "-", root.name.lower()).strip("-")[:40].strip("-")
    return label or "pkube"


def add_workers(cfg: ClusterConfig, root: Path, nodes: int) -> None:
    """Name and address the extra nodes of a new home."""
    cfg.workers = []
    append_workers(cfg, root, nodes - 1)


def append_workers(cfg: ClusterConfig, root: Path, count: int) -> list[Worker]:
    """`count` more extra nodes, each with the next index (its name, IP and names on the host follow from it).
    The cluster network's subnet is a /24 picked by the home's digest among 4096 in 10.128.0.0-10.143.255.0,
    clear of the Service and pod ranges above; a home made with one node gets it with its first added node."""
    if not cfg.node_subnet:
        cfg.node_subnet, cfg.node_bridge = node_network(root)
    subnet, tag = ipaddress.ip_network(cfg.node_subnet), _network_tag(root)
    prefix = node_name_prefix(root)
    first = max([w.index for w in cfg.workers], default=1) + 1
    added = [Worker(name=f"{prefix}-worker{'' if i == 2 else i}", index=i, ip=str(subnet[i]),
                    netns=f"pkn{tag}-w{i}", veth=f"pkn{tag}w{i}") for i in range(first, first + count)]
    cfg.workers += added
    return added


def node_network(root: Path) -> tuple[str, str]:
    """(subnet, bridge) of the home's cluster network, made when it gets its first extra node."""
    digest = hashlib.sha256(str(root).encode()).digest()
    n = int.from_bytes(digest[4:6], "big") % (16 * 256)
    return f"10.{128 + n // 256}.{n % 256}.0/24", f"pkn{_network_tag(root)}"


def _network_tag(root: Path) -> str:
    return hashlib.sha256(str(root).encode()).digest().hex()[6:12]


def make_room_for_nodes(cfg: ClusterConfig, nodes: int) -> None:
    """Before nodes are added to a cluster whose nodes already hold their pod ranges: keep the size of a node's
    range (recorded from now on) and widen the cluster's pod range, in place, when it has no room for `nodes`."""
    mask = cfg.node_cidr_mask
    cfg.node_cidr_mask_size = mask
    net = ipaddress.ip_network(cfg.cluster_cidr)
    wanted = mask - (nodes - 1).bit_length()
    if wanted < net.prefixlen:
        cfg.cluster_cidr = str(net.supernet(new_prefix=wanted))


def private_node_names(cfg: ClusterConfig, root: Path) -> None:
    """How a non-default home's kubelet and proxy name what they put on the host (bridge, NAT and proxy tables,
    netns, veths, cgroup parent), so that two homes on one host never share one."""
    digest = hashlib.sha256(str(root).encode()).digest()
    cfg.proxy_table = f"{DEFAULT_PROXY_TABLE}-{digest.hex()[:8]}"
    tag = digest.hex()[:6]
    # interface names have at most 15 characters: veths are <prefix><sandbox id>, cut there
    cfg.bridge, cfg.nat_table, cfg.netns_prefix = f"pkbr{tag}", f"pkube-nat-{tag}", f"pk{tag}-"
    cfg.veth_prefix, cfg.cgroup_parent = f"pv{tag}", f"pkube-{tag}"


def private_vni(digest: bytes) -> int:
    """The VXLAN network identifier of a non-default home: one of 2^24 - 4096 above 4095 (the default home has 1)."""
    return 4096 + int.from_bytes(digest[6:9], "big") % (2**24 - 4096)


def private_service_range(digest: bytes) -> str:
    """A /24 for the Services of a non-default home, picked by digest among 3840 in 10.97.0.0-10.111.255.0:
    inside Kubernetes' conventional 10.96.0.0/12, next to the default home's 10.96.0.0/16, and away
    from ranges real networks tend to use (a DNS address on `lo` would shadow a real host)."""
    n = int.from_bytes(digest[:2], "big") % (15 * 256)
    return f"10.{97 + n // 256}.{n % 256}.0/24"


def private_pod_range(digest: bytes) -> str:
    """The pod range of a non-default home: one node, so one /24, picked by digest among 4096 in
    10.112.0.0-10.127.255.0 (clear of the Service ranges above and of the default home's 10.244.0.0/16)."""
    n = int.from_bytes(digest[2:4], "big") % (16 * 256)
    return f"10.{112 + n // 256}.{n % 256}.0/24"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


PRIVATE_PORTS = range(20000, 30000)


def pick_port(preferred: int | None, taken: set[int]) -> int:
    if preferred is not None and preferred not in taken and port_free(preferred):
        return preferred
    # A random port below both the NodePort range (30000-32767) and the kernel's ephemeral range, not
    # bind(0): the kernel hands a just-closed port out again, so two homes prepared one after the other
    # (neither running yet) could both record it.
    for _ in range(200):
        port = PRIVATE_PORTS.start + secrets.randbelow(len(PRIVATE_PORTS))
        if port not in taken and port_free(port):
            return port
    raise HomeError(f"could not find a free loopback port in {PRIVATE_PORTS.start}-{PRIVATE_PORTS.stop - 1}")


def config_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Atomic replace, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def write_private(path: Path, text: str) -> None:
    """Create path mode 0600 from the start (it holds a token), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
