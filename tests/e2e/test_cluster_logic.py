"""Pure parts of the local cluster: prerequisite checks, the home layout, process records, formatting."""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from launcher.main import COMPONENTS as LAUNCHER_COMPONENTS
from pkctl.cluster import kubemerge, pki, prereqs, procs
from pkctl.cluster.balancer import Balancer
from pkctl.cluster.components import BY_NAME, COMPONENTS, GROUP, components
from pkctl.commands.cluster import MemberLines
from pkctl.cluster.home import ClusterConfig, Home, HomeError, private_pod_range, private_service_range
from pkctl.cluster.report import human_bytes, human_duration
from pkctl.cluster.supervisor import restart_delay
from pklib import kubeconfig

ALL_BINARIES = {b: f"/usr/bin/{b}" for b in prereqs.BINARIES}
FILESYSTEMS = "nodev\tproc\nnodev\toverlay\n\text4\n"
MOUNTS = "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n/dev/sda1 / ext4 rw 0 0\n"


def test_component_modules_match_the_launcher() -> None:
    # pkctl may not import the launcher, so the table repeats its module names; this keeps them in step.
    ours = {c.name: c.module for c in (*COMPONENTS, *GROUP.members) if c.module is not None and not c.members}
    assert {**ours, "group": GROUP.module} == LAUNCHER_COMPONENTS


def test_components_start_after_their_dependencies() -> None:
    seen: set[str] = set()
    for c in COMPONENTS:
        assert set(c.after) <= seen, f"{c.name} is listed before {set(c.after) - seen}"
        seen.add(c.name)


def test_complete_machine_has_no_problems() -> None:
    assert prereqs.check(ALL_BINARIES.get, euid=0, filesystems=FILESYSTEMS, mounts=MOUNTS) == []


def test_each_missing_prerequisite_is_named_with_its_fix() -> None:
    which = {b: p for b, p in ALL_BINARIES.items() if b not in ("conmon", "etcd")}.get
    problems = prereqs.check(which, euid=1000, filesystems="nodev\tproc\n", mounts="/dev/sda1 / ext4 rw 0 0\n")
    text = "\n".join(f"{p.what} | {p.fix}" for p in problems)
    assert "not running as root" in text
    assert "`conmon` not found" in text and "apt-get install conmon" in text
    assert "`etcd` not found" in text and "apt-get install etcd-server" in text
    assert "overlay" in text and "modprobe overlay" in text
    assert "cgroup" in text
    assert sorted(p.package for p in problems if p.package) == ["conmon", "etcd-server"]


def test_cgroup_v1_mounts_count() -> None:
    v1 = "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
    assert prereqs.check(ALL_BINARIES.get, euid=0, filesystems=FILESYSTEMS, mounts=v1) == []


def test_busy_ports_are_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        problems = prereqs.busy_ports({"apiserver": port})
    assert len(problems) == 1 and f"port {port} (apiserver)" in problems[0].what


def test_home_prepare_picks_distinct_ports_and_keeps_them(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    cfg = home.prepare(None, default_home=False, tls=False)
    ports = {cfg.etcd_client_port, cfg.etcd_peer_port, cfg.api_port}
    assert len(ports) == 3
    token = home.token()
    assert len(token) == 64
    access = kubeconfig.load(home.kubeconfig)
    assert access.server == f"http://127.0.0.1:{cfg.api_port}" and access.token == token
    assert oct(os.stat(home.tokens_file).st_mode & 0o777) == "0o600"
    # a second `up` reuses everything the first one chose
    again = home.prepare(None, default_home=False, tls=False)
    assert again == cfg and home.token() == token
    assert json.loads(home.config_file.read_text())["api_port"] == cfg.api_port


def test_home_refuses_to_change_the_api_port(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    cfg = home.prepare(None, default_home=False, tls=False)
    with pytest.raises(HomeError, match=f"uses API port {cfg.api_port}"):
        home.prepare(cfg.api_port + 1, default_home=False, tls=False)


def test_tls_kubeconfig_trusts_the_clusters_own_ca(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    cfg = home.prepare(None, default_home=False, tls=True)
    access = kubeconfig.load(home.kubeconfig)
    assert access.server == f"https://127.0.0.1:{cfg.api_port}"
    assert access.ca_data == home.pki.ca_cert.read_bytes() and not access.insecure
    assert oct(os.stat(home.pki.serving_key).st_mode & 0o777) == "0o600"
    # the next `up` keeps the certificates (clients keep trusting them)
    before = home.pki.serving_cert.read_bytes()
    home.prepare(None, default_home=False, tls=True)
    assert home.pki.serving_cert.read_bytes() == before


def test_a_home_made_before_etcd_and_kubelet_tls_gets_their_certificates_at_up(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    cfg = home.prepare(None, default_home=False, tls=True)
    ca, serving = home.pki.ca_cert.read_bytes(), home.pki.serving_cert.read_bytes()
    new = ("etcd-server", "etcd-peer", "apiserver-etcd-client", "etcd-healthcheck-client", "apiserver-kubelet-client",
           "kubelet")
    for name in new:  # what an older home does not have
        home.pki.cert(name).unlink()
        home.pki.key(name).unlink()
    assert home.prepare(None, default_home=False, tls=True) == cfg
    assert all(home.pki.cert(n).exists() and home.pki.key(n).exists() for n in new)
    assert home.pki.ca_cert.read_bytes() == ca and home.pki.serving_cert.read_bytes() == serving  # kept
    kubelet = x509.load_pem_x509_certificate(home.pki.cert("kubelet").read_bytes())
    sans = kubelet.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address(cfg.node_ip) in sans.get_values_for_type(x509.IPAddress)
    assert cfg.node_name in sans.get_values_for_type(x509.DNSName)


def test_serving_certificate_verifies_for_loopback_names(tmp_path: Path) -> None:
    ca = pki.ensure(tmp_path / "pki", hostnames=["node-a"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(ca.serving_cert, ca.serving_key)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]

        def serve(n: int) -> None:
            for _ in range(n):
                conn, _addr = listener.accept()
                with conn:
                    try:
                        with server_ctx.wrap_socket(conn, server_side=True) as tls:
                            tls.sendall(b"ok")
                    except ssl.SSLError:
                        pass  # the client refused us: that is what the last case checks

        names = ["127.0.0.1", "localhost", "node-a", "elsewhere.example"]
        t = threading.Thread(target=serve, args=(len(names),), daemon=True)
        t.start()
        client_ctx = ssl.create_default_context(cafile=str(ca.ca_cert))
        results = {}
        for name in names:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                try:
                    with client_ctx.wrap_socket(raw, server_hostname=name) as tls:
                        results[name] = tls.recv(2) == b"ok"
                except ssl.SSLCertVerificationError:
                    results[name] = False
        t.join(5)
    assert results == {"127.0.0.1": True, "localhost": True, "node-a": True, "elsewhere.example": False}


def test_damaged_config_is_a_clear_error(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.config_file.write_text("{not json")
    with pytest.raises(HomeError, match="damaged"):
        home.load_config()


def test_proc_record_survives_pid_reuse() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        rec = procs.ProcRecord.of(child.pid)
        assert rec is not None and rec.alive()
        assert (rec.rss_bytes() or 0) > 0
        impostor = procs.ProcRecord(child.pid, rec.ticks + 1)  # same PID, another process
        assert not impostor.alive() and not impostor.signal(9)
        assert child.poll() is None
        assert procs.terminate([rec], grace=5) == []
        child.wait(5)
        assert not rec.alive()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.parametrize("seconds,text", [(None, "-"), (5, "5s"), (62, "1m2s"), (120, "2m"), (3 * 3600 + 60, "3h1m"),
                                          (2 * 86400 + 3600, "2d1h")])
def test_human_duration(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


def test_human_bytes() -> None:
    assert (human_bytes(None), human_bytes(512), human_bytes(3 * 1024 * 1024)) == ("-", "512B", "3.0MiB")


def test_restart_backoff_doubles_to_30s_and_resets_after_a_good_run() -> None:
    delays, delay = [], None
    for _ in range(7):
        delay = restart_delay(delay, ran=0.5)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert restart_delay(30, ran=120) == 0, "one that had run a while comes back at once"
    # one that had passed its health check was not crash-looping: it comes back at once
    assert restart_delay(30, ran=5, was_healthy=True) == 0
    # ... but not again and again: healthy, then dead within seconds of an immediate restart, it waits 1 s
    assert restart_delay(0, ran=5, was_healthy=True) == 1
    assert restart_delay(1, ran=5, was_healthy=True) == 0


def test_merge_keeps_the_users_other_clusters_and_unmerge_removes_only_ours(tmp_path: Path) -> None:
    target = tmp_path / ".kube" / "config"
    theirs = kubeconfig.build("https://prod.example:6443", "t0", name="prod")
    kubeconfig.write(target, theirs)
    ours = kubeconfig.build("http://127.0.0.1:7000", "t1")
    kubemerge.merge(target, ours)
    kubemerge.merge(target, ours)  # idempotent: no duplicates
    assert kubeconfig.load(target).server == "http://127.0.0.1:7000"
    assert kubeconfig.load(target, context="prod").server == "https://prod.example:6443"
    assert sorted(c["name"] for c in yaml.safe_load(target.read_text())["contexts"]) == ["pkube", "prod"]
    # another cluster took the name since: not ours to remove
    assert not kubemerge.unmerge(target, kubeconfig.build("http://127.0.0.1:7001", "t2"))
    assert kubemerge.unmerge(target, ours)
    doc = yaml.safe_load(target.read_text())
    assert [c["name"] for c in doc["contexts"]] == ["prod"] and doc["current-context"] == ""


def test_merge_refuses_a_broken_user_kubeconfig(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_text("clusters: [unclosed\n")
    with pytest.raises(kubemerge.MergeError, match="not valid YAML"):
        kubemerge.merge(target, kubeconfig.build("http://127.0.0.1:7000", "t1"))
    assert target.read_text() == "clusters: [unclosed\n"


def test_each_home_gets_its_own_service_range_dns_address_and_proxy_table(tmp_path: Path) -> None:
    a = Home(tmp_path / "a").prepare(None, default_home=False, tls=False)
    b = Home(tmp_path / "b").prepare(None, default_home=False, tls=False)
    assert a.service_cidr != b.service_cidr and a.proxy_table != b.proxy_table
    assert a.proxy_metrics_port not in (a.api_port, a.etcd_client_port, a.etcd_peer_port)
    assert ClusterConfig(1, 2, 3).dns_ip == "10.96.0.10"  # the default home, as kube-dns in Kubernetes
    default, conventional = ipaddress.IPv4Network("10.96.0.0/16"), ipaddress.IPv4Network("10.96.0.0/12")
    for i in range(0, 65536, 97):
        net = ipaddress.IPv4Network(private_service_range(i.to_bytes(2, "big")))
        assert net.prefixlen == 24 and net.subnet_of(conventional)
        assert not net.overlaps(default)


def test_each_home_gets_its_own_node_names_and_pod_range(tmp_path: Path) -> None:
    a = Home(tmp_path / "a").prepare(None, default_home=False, tls=False)
    b = Home(tmp_path / "b").prepare(None, default_home=False, tls=False)
    for field in ("cluster_cidr", "bridge", "nat_table", "netns_prefix", "veth_prefix", "cgroup_parent",
                  "kubelet_port"):
        assert getattr(a, field) != getattr(b, field), field
    assert len(a.bridge) <= 15 and len(a.veth_prefix) <= 8  # veths are <prefix><sandbox id> cut at 15 chars
    # the default home keeps Kubernetes' usual values, for `make up`
    default = ClusterConfig(1, 2, 3)
    assert (default.cluster_cidr, default.bridge, default.nat_table, default.kubelet_port) == \
        ("10.244.0.0/16", "pkube0", "pkube-nat", 10250)
    services, default_pods = ipaddress.IPv4Network("10.96.0.0/12"), ipaddress.IPv4Network(default.cluster_cidr)
    for i in range(0, 65536, 97):
        net = ipaddress.IPv4Network(private_pod_range(bytes(2) + i.to_bytes(2, "big")))
        assert net.prefixlen == 24 and not net.overlaps(services) and not net.overlaps(default_pods)


def test_kubelet_runs_for_real_with_the_homes_names_and_dns(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    cfg = home.prepare(None, default_home=False, tls=False)
    argv = BY_NAME["kubelet"].argv(home, cfg)
    assert "--hollow" not in argv
    flags = dict(zip(argv[::2], argv[1::2]))
    assert flags["--node-name"] == cfg.node_name and flags["--cluster-dns"] == cfg.dns_ip
    assert (flags["--bridge"], flags["--nat-table"], flags["--cgroup-parent"]) == \
        (cfg.bridge, cfg.nat_table, cfg.cgroup_parent)
    assert flags["--runtime-state-dir"] == str(home.runtime) and flags["--port"] == str(cfg.kubelet_port)
    assert BY_NAME["kubelet"].cleanup is not None
    cm = BY_NAME["controller-manager"].argv(home, cfg)
    assert cm[cm.index("--cluster-cidr") + 1] == cfg.cluster_cidr


def test_node_loss_timings_reach_the_controller_manager_and_the_kubelets_lease(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")

    def flags(name: str, cfg: ClusterConfig) -> dict[str, str]:
        argv = BY_NAME[name].argv(home, cfg)
        return dict(zip(argv, argv[1:]))
    cfg = home.prepare(None, default_home=False, tls=False)
    # Kubernetes' defaults: 40 s of silence, 300 s of toleration, a Lease renewed every 10 s
    assert (flags("controller-manager", cfg)["--node-monitor-grace-period"],
            flags("controller-manager", cfg)["--default-unreachable-toleration-seconds"],
            flags("kubelet", cfg)["--node-lease-renew-interval"]) == ("40", "300", "10")
    # a shortened grace period shortens the renewals too (a live node is never taken for a lost one); a later
    # `up` without the flags keeps them
    home.prepare(None, default_home=False, tls=False, node_monitor_grace_period=6,
                 default_unreachable_toleration_seconds=4.5)
    cfg = home.prepare(None, default_home=False, tls=False)
    assert (flags("controller-manager", cfg)["--node-monitor-grace-period"],
            flags("controller-manager", cfg)["--default-unreachable-toleration-seconds"],
            flags("kubelet", cfg)["--node-lease-renew-interval"]) == ("6", "4.5", "1.5")


def test_event_ttl_reaches_the_apiserver_and_is_kept(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")

    def apiserver_flags(cfg: ClusterConfig) -> list[str]:
        return BY_NAME["apiserver"].argv(home, cfg)
    assert "--event-ttl" not in apiserver_flags(home.prepare(None, default_home=False, tls=False))  # its 1h
    home.prepare(None, default_home=False, tls=False, event_ttl=600)
    argv = apiserver_flags(home.prepare(None, default_home=False, tls=False))  # a later `up` keeps it
    assert argv[argv.index("--event-ttl") + 1] == "600s"


def test_bad_event_ttl_is_a_one_line_error() -> None:
    p = subprocess.run([sys.executable, "-m", "pkctl.main", "cluster", "up", "--home", str(Path("/nonexistent-pkt")),
                        "--event-ttl", "0s"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--event-ttl: '0s': Events must live at least 1s" in p.stderr, p.stderr


def test_bad_node_loss_timing_is_a_one_line_error() -> None:
    p = subprocess.run([sys.executable, "-m", "pkctl.main", "cluster", "up", "--home", str(Path("/nonexistent-pkt")),
                        "--node-monitor-grace-period", "soon"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--node-monitor-grace-period: 'soon' is not a number of seconds" in p.stderr, p.stderr


def test_member_lines_pick_one_members_records_and_their_continuations() -> None:
    log = [b"==== 2026-01-01T00:00:00Z pkube supervisor: starting control-plane\n",
           b"2026-01-01 00:00:01,000 INFO [scheduler] scheduler: scheduling\n",
           b"2026-01-01 00:00:01,100 INFO [dns] proxy.dns_main: serving\n",
           b"2026-01-01 00:00:02,000 ERROR [scheduler] group: scheduler failed: boom\n",
           b"Traceback (most recent call last):\n",
           b"2026-01-01 00:00:03,000 INFO [dns] proxy.dns_main: more\n",
           b"  a dns continuation\n",
           b"error: boom\n"]
    keep = MemberLines("scheduler")
    assert [line for line in log if keep(line)] == [log[0], log[1], log[3], log[4], log[7]]


def test_three_control_planes_get_their_own_ports_and_components(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    cfg = home.prepare(None, default_home=False, tls=True, control_planes=3)
    assert [m.name for m in cfg.members] == ["cp1", "cp2", "cp3"] and cfg.control_planes == 3
    ports = [cfg.api_port, cfg.proxy_metrics_port, cfg.kubelet_port,
             *(p for m in cfg.members for p in (m.etcd_client_port, m.etcd_peer_port, m.api_port, m.control_plane_port))]
    assert len(set(ports)) == len(ports)  # the balancer's API port is none of the apiservers'
    assert Home(tmp_path / "h").load_config() == cfg  # remembered
    comps = {c.name: c for c in components(cfg)}
    assert list(comps) == ["etcd-cp1", "etcd-cp2", "etcd-cp3", "apiserver-cp1", "apiserver-cp2", "apiserver-cp3",
                           "kubelet", "control-plane-cp1", "control-plane-cp2", "control-plane-cp3"]
    etcd2 = comps["etcd-cp2"].argv(home, cfg)
    cluster = etcd2[etcd2.index("--initial-cluster") + 1].split(",")
    assert cluster == [f"{m.name}=https://127.0.0.1:{m.etcd_peer_port}" for m in cfg.members]
    assert etcd2[etcd2.index("--data-dir") + 1] == str(home.etcd_data / "cp2")
    # raft entries since the last snapshot stay in etcd's memory: kubeadm's 10,000, not etcd's 100,000
    for etcd in (etcd2, BY_NAME["etcd"].argv(home, cfg)):
        assert etcd[etcd.index("--snapshot-count") + 1] == "10000"
    api3 = comps["apiserver-cp3"].command(home, cfg)
    assert api3[1:5] == ["-P", "-m", "launcher", "apiserver"]  # -P: never a module from the current directory
    servers = api3[api3.index("--etcd-servers") + 1].split(",")
    assert servers[0] == cfg.members[2].etcd_url and sorted(servers) == sorted(cfg.etcd_urls)
    assert api3[api3.index("--port") + 1] == str(cfg.members[2].api_port)
    # the node's proxy, DNS and ingress run once; every member elects its controller-manager and scheduler
    assert [m.name for m in comps["control-plane-cp1"].members] == ["controller-manager", "scheduler", "proxy", "dns",
                                                                       "ingress"]
    assert [m.name for m in comps["control-plane-cp2"].members] == ["controller-manager", "scheduler"]
    group = comps["control-plane-cp2"].argv(home, cfg)
    assert group.count("--leader-elect") == 2
    assert all(group[i + 1].startswith("control-plane-cp2_") for i, a in enumerate(group) if a == "--leader-elect-identity")
    assert components(Home(tmp_path / "one").prepare(None, default_home=False, tls=True)) == COMPONENTS


def test_control_planes_of_a_home_cannot_change(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    home.prepare(None, default_home=False, tls=False)
    with pytest.raises(HomeError, match="was created with --control-planes 1.*without --control-planes"):
        home.prepare(None, default_home=False, tls=False, control_planes=3)
    assert home.prepare(None, default_home=False, tls=False, control_planes=1).members == []


async def test_balancer_forwards_to_a_live_backend_and_skips_a_dead_one() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"pong:" + await reader.readline())
        await writer.drain()
        writer.close()
    live = await asyncio.start_server(answer, "127.0.0.1", 0)
    live_port = live.sockets[0].getsockname()[1]
    with socket.socket() as s:  # a port nothing listens on: a dead apiserver
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    lb = Balancer("127.0.0.1", 0, [("127.0.0.1", dead_port), ("127.0.0.1", live_port)])
    await lb.start()
    assert lb._server is not None
    port = lb._server.sockets[0].getsockname()[1]
    try:
        for i in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"ping{i}\n".encode())
            assert await asyncio.wait_for(reader.read(), 5) == f"pong:ping{i}\n".encode()
            writer.close()
        # the dead backend, having refused once, is tried last for a while
        assert lb.order(time.monotonic())[0] == ("127.0.0.1", live_port)
    finally:
        await lb.close()
        live.close()
        await live.wait_closed()


def test_compact_hosts_the_apiserver_and_the_kubelet_in_the_control_plane_process(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    cfg = home.prepare(None, default_home=False, tls=True, compact=True)
    assert Home(tmp_path / "h").load_config().compact  # remembered for later `up`s
    etcd, group = components(cfg)
    assert (etcd.name, group.name, group.after) == ("etcd", "control-plane", ("etcd",))
    assert [m.name for m in group.members][:2] == ["apiserver", "kubelet"]
    argv = group.command(home, cfg)
    chunks = " ".join(argv).split(" -- ")[1:]
    assert [c.split()[0] for c in chunks][:4] == ["apiserver", "kubelet", "controller-manager", "scheduler"]
    assert f"--port {cfg.api_port}" in chunks[0]  # the apiserver keeps the home's API port
    assert home.prepare(None, default_home=False, tls=True, compact=False).compact is False
    assert components(home.load_config()) == COMPONENTS
    with pytest.raises(HomeError, match="one control plane"):
        Home(tmp_path / "ha").prepare(None, default_home=False, tls=True, control_planes=3, compact=True)
