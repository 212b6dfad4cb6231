"""The kubelet's flags for a real node, and their checks (a bad flag is a one-line error before anything runs)."""
from __future__ import annotations

import argparse
import ipaddress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from kubelet.eviction import DEFAULT_EVICTION_HARD, Threshold, parse_thresholds
from kubelet.imagegc import ImageGCPolicy
from pklib.api.timefmt import parse_duration
from pklib.flagtypes import int_in_range
from pklib.kubeconfig import pkube_home
from pklib.quantity import QuantityError, parse_quantity

if TYPE_CHECKING:
    from kubelet.runtime.runc import RuntimeConfig


def add_real_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("node agent (the default mode)")
    g.add_argument("--node-name", default=None, help="the Node to register (default: the hostname)")
    g.add_argument("--root-dir", default=None, help="kubelet state: pod volumes, local-path PVs "
                                                    "(default <pkube home>/kubelet); with --hollow, where the "
                                                    "process makes its pod-volume directory (default: $TMPDIR)")
    g.add_argument("--image-root", default=None, help="image store (default <pkube home>/images)")
    g.add_argument("--runtime-state-dir", default=None, help="runtime state (default <pkube home>/runtime)")
    g.add_argument("--bridge", default="pkube0", help="the pods' Linux bridge")
    g.add_argument("--nat-table", default="pkube-nat", help="nftables table for pod NAT")
    g.add_argument("--netns-prefix", default="pkube-")
    g.add_argument("--veth-prefix", default="pkv")
    g.add_argument("--cgroup-parent", default="pkube", help="cgroup under which pods run")
    g.add_argument("--seccomp-default", action=argparse.BooleanOptionalAction, default=True,
                   help="seccomp RuntimeDefault for containers whose pod asks for no profile (Kubernetes' "
                        "--seccomp-default; on by default here); --no-seccomp-default leaves them Unconfined")
    g.add_argument("--pod-pids-limit", type=int, default=4096,
                   help="most processes (threads) of one pod, set on its cgroup (Kubernetes' podPidsLimit); "
                        "-1: unlimited")
    g.add_argument("--no-forwarding", action="store_true", help="do not enable IPv4 forwarding")
    g.add_argument("--cluster-cidr", default="",
                   help="the pod range of every node: pod traffic into it is not masqueraded (default: this "
                        "node's pod CIDR only)")
    g.add_argument("--pod-routes", action="store_true",
                   help="route every other node's pod CIDR, by --network-backend")
    g.add_argument("--network-backend", choices=("host-gw", "vxlan", "auto"), default="host-gw",
                   help="with --pod-routes: host-gw (a route via each node's InternalIP, nodes on one L2 network), "
                        "vxlan (a VXLAN device pkube.<VNI>, as flannel's vxlan backend), or auto (host-gw to the "
                        "nodes on a directly connected subnet, VXLAN to the others)")
    g.add_argument("--vxlan-vni", type=int_in_range(1, 2**24 - 1, "VXLAN network identifier", show_range=True),
                   default=1, help="the VNI of the VXLAN device pkube.<VNI> (the same on every node; default 1)")
    g.add_argument("--vxlan-port", type=int_in_range(1, 65535, "port number", show_range=True), default=8472,
                   help="UDP port of the VXLAN tunnel (default 8472, Linux's and flannel's)")
    g.add_argument("--node-ip", default="", help="InternalIP of the node (default: address of the default route)")
    g.add_argument("--node-labels", default="", help="extra labels k=v,k2=v2")
    g.add_argument("--system-reserved-cpu", default="0", help="cpu kept from allocatable")
    g.add_argument("--system-reserved-memory", default="0", help="memory kept from allocatable")
    g.add_argument("--crashloop-backoff-base", type=float, default=10.0, help="first restart delay in seconds")
    g.add_argument("--crashloop-backoff-max", type=float, default=300.0, help="restart delay cap in seconds")
    g.add_argument("--relist-period", type=float, default=10.0,
                   help="seconds between two runtime relists when nothing asks for one sooner (a container exit "
                        "or a pod leaving the node does, at once)")
    g.add_argument("--node-status-update-frequency", type=float, default=10.0,
                   help="seconds between two computations of the node status (written only when it changed)")
    g.add_argument("--node-status-report-frequency", type=float, default=300.0,
                   help="seconds after which an unchanged node status is written anyway")
    g.add_argument("--sync-frequency", type=float, default=60.0,
                   help="seconds between two full syncs of every pod (configMap/secret volume updates)")
    g.add_argument("--pod-workers", type=int, default=16)
    g.add_argument("--cluster-dns", default="", help="comma-separated DNS server IPs for dnsPolicy ClusterFirst "
                                                     "(empty: pods use the host's resolv.conf)")
    g.add_argument("--cluster-domain", default="cluster.local", help="the cluster's DNS domain")
    g.add_argument("--cleanup", action="store_true",
                   help="remove every pod this node runs (containers, netns, volumes) and the node's bridge, NAT "
                        "table and cgroup parent, then exit (after an unclean stop; needs no API server)")
    g.add_argument("--container-log-max-size", default="10Mi",
                   help="a container log bigger than this quantity is rotated (Kubernetes' containerLogMaxSize)")
    g.add_argument("--container-log-max-files", type=int, default=5,
                   help="log files kept per container, the current one included (at least 2)")
    g.add_argument("--image-gc-high-threshold", type=int, default=85,
                   help="percent of the image filesystem's space in use above which image garbage collection runs")
    g.add_argument("--image-gc-low-threshold", type=int, default=80,
                   help="percent of the image filesystem's space in use that image garbage collection frees down to")
    g.add_argument("--image-minimum-gc-age", default="2m",
                   help="minimum age of an unused image before it may be garbage collected (a duration)")
    g.add_argument("--image-gc-period", type=float, default=300.0,
                   help="seconds between two checks of the image filesystem's usage")
    g.add_argument("--eviction-hard", default=DEFAULT_EVICTION_HARD,
                   help="hard eviction thresholds, e.g. memory.available<1Gi,nodefs.available<10%%: when one is "
                        "met the node reports the pressure condition and evicts pods (replaces the defaults: "
                        "%(default)s)")
    g.add_argument("--eviction-pressure-transition-period", default="5m",
                   help="how long a pressure condition stays after its threshold stopped being met (a duration)")
    g.add_argument("--eviction-monitoring-period", type=float, default=10.0,
                   help="seconds between two checks of the eviction thresholds (at most one pod is evicted each)")
    g.add_argument("--address", default="", help="address of the kubelet API (logs, exec; default: the node IP)")
    g.add_argument("--port", type=int, default=10250, help="port of the kubelet API; 0 disables it")
    g.add_argument("--tls-cert-file", default="", help="the kubelet API's serving certificate (PEM)")
    g.add_argument("--tls-private-key-file", default="", help="its private key (PEM)")
    g.add_argument("--client-ca-file", default="",
                   help="CA whose client certificates the kubelet API accepts (the API server's)")
    g.add_argument("--rotate-server-certificates", action="store_true",
                   help="once registered, ask the cluster for the API's serving certificate (a CSR of signer "
                        "kubernetes.io/kubelet-serving), write it over --tls-cert-file/--tls-private-key-file, "
                        "and renew it at 70-90 %% of its lifetime")
    g.add_argument("--rotate-certificates", action="store_true",
                   help="renew the client certificate the --kubeconfig names at 70-90 %% of its lifetime (a CSR "
                        "of signer kubernetes.io/kube-apiserver-client-kubelet) and use it for new connections")


def node_labels(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, text.split(",")):
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ValueError(f"--node-labels: {item!r} is not key=value")
        out[k.strip()] = v.strip()
    return out


def check_real_config(config: argparse.Namespace) -> None:
    """Reject bad flags before anything is touched (ValueError → one-line error, exit 2)."""
    node_labels(config.node_labels)
    for flag, value in (("--system-reserved-cpu", config.system_reserved_cpu),
                        ("--system-reserved-memory", config.system_reserved_memory)):
        try:
            parse_quantity(value)
        except QuantityError as e:
            raise ValueError(f"{flag} {value!r}: {e}") from None
    log_max_size(config)
    if config.container_log_max_files < 2:
        raise ValueError("--container-log-max-files must be at least 2")
    if config.max_pods < 1:
        raise ValueError("--max-pods must be at least 1")
    if config.crashloop_backoff_base <= 0 or config.crashloop_backoff_max < config.crashloop_backoff_base:
        raise ValueError("--crashloop-backoff-base must be positive and at most --crashloop-backoff-max")
    for ip in filter(None, config.cluster_dns.split(",")):
        try:
            ipaddress.ip_address(ip.strip())
        except ValueError:
            raise ValueError(f"--cluster-dns: {ip!r} is not an IP address") from None
    if config.cluster_cidr:
        try:
            ipaddress.IPv4Network(config.cluster_cidr)
        except ValueError as e:
            raise ValueError(f"--cluster-cidr {config.cluster_cidr!r}: {e}") from None
    if config.pod_pids_limit == 0 or config.pod_pids_limit < -1:
        raise ValueError("--pod-pids-limit must be positive, or -1 for unlimited")
    if not 0 <= config.port <= 65535:
        raise ValueError("--port must be between 0 and 65535")
    if min(config.relist_period, config.sync_frequency, config.node_lease_renew_interval,
           config.node_status_update_frequency, config.node_status_report_frequency) <= 0:
        raise ValueError("--relist-period, --sync-frequency, --node-lease-renew-interval and "
                         "--node-status-update/report-frequency must be positive")
    image_gc_policy(config)
    eviction_thresholds(config)
    eviction_transition_period(config)
    if config.eviction_monitoring_period <= 0:
        raise ValueError("--eviction-monitoring-period must be positive")
    if config.port:
        from kubelet.server import server_tls_context  # the real node's API server: not loaded by a hollow one
        server_tls_context(config.tls_cert_file, config.tls_private_key_file, config.client_ca_file)


def _duration(flag: str, text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise ValueError(f"{flag} {text!r}: {e}") from None
    if seconds < 0:
        raise ValueError(f"{flag} must not be negative")
    return seconds


def image_gc_policy(config: argparse.Namespace) -> ImageGCPolicy:
    policy = ImageGCPolicy(high_threshold=config.image_gc_high_threshold, low_threshold=config.image_gc_low_threshold,
                           min_age=_duration("--image-minimum-gc-age", config.image_minimum_gc_age),
                           period=config.image_gc_period)
    policy.check()
    return policy


def eviction_thresholds(config: argparse.Namespace) -> list[Threshold]:
    return parse_thresholds(config.eviction_hard)


def eviction_transition_period(config: argparse.Namespace) -> float:
    return _duration("--eviction-pressure-transition-period", config.eviction_pressure_transition_period)


def log_max_size(config: argparse.Namespace) -> int:
    try:
        size = parse_quantity(config.container_log_max_size).int_value()
    except QuantityError as e:
        raise ValueError(f"--container-log-max-size {config.container_log_max_size!r}: {e}") from None
    if size < 1024:
        raise ValueError("--container-log-max-size must be at least 1Ki")
    return size


def runtime_config(config: argparse.Namespace, pod_cidr: str) -> RuntimeConfig:
    from kubelet.runtime.runc import RuntimeConfig  # runc and pod networking: not loaded by a hollow node
    runtime_cfg = RuntimeConfig(pod_cidr=pod_cidr, cluster_cidr=config.cluster_cidr, bridge=config.bridge, nat_table=config.nat_table,
                                netns_prefix=config.netns_prefix, veth_prefix=config.veth_prefix,
                                cgroup_parent=config.cgroup_parent, enable_forwarding=not config.no_forwarding,
                                container_log_max_size=log_max_size(config),
                                container_log_max_files=config.container_log_max_files,
                                pod_pids_limit=config.pod_pids_limit if config.pod_pids_limit > 0 else None)
    if config.runtime_state_dir:
        runtime_cfg = replace(runtime_cfg, state_dir=Path(config.runtime_state_dir))
    return runtime_cfg


def root_dir(config: argparse.Namespace) -> Path:
    return Path(config.root_dir or pkube_home() / "kubelet")
