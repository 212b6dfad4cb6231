"""Pod networking with real netns, veth, bridge and busybox containers under runc."""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from kubelet.network.bridge import gateway_mac, keep_address
from kubelet.network.netns import netns_path
from images.store import ImageStore
from kubelet.runtime.interface import (ContainerConfig, ContainerState, DNSConfig, HostAlias, LogOptions,
                                       RuntimeError_, SandboxConfig, SandboxState)
from kubelet.runtime.runc import RuncRuntime
from kubelet.runtime.sandbox import hold_uts_ipc, unmount
from pklib.hostnet import delete_link
from tests.util import unique, wait_for

pytestmark = pytest.mark.root

HTTPD = ["sh", "-c",
         "mkdir -p /tmp/www && echo hello-from-a > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"]
IDLE = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]


async def run(rt: RuncRuntime, sandbox: str, name: str, image: str, command: list[str]) -> str:
    cid = await rt.create_container(sandbox, ContainerConfig(name=name, image=image, command=command))
    await rt.start_container(cid)
    return cid


async def fetch(rt: RuncRuntime, cid: str, url: str) -> str:
    """wget from inside the container, retried until the server answers (it may still be starting)."""
    async def get() -> str:
        # (busybox wget crashes with -T here; the exec timeout bounds it instead)
        r = await rt.exec(cid, ["wget", "-O", "-", url], timeout=10)
        return r.stdout.decode() if r.exit_code == 0 else ""
    return await wait_for(get, timeout=10, interval=0.1, message=f"{url} answering")


async def test_held_uts_and_ipc_namespaces_are_new_and_leave_the_kubelets_own_alone(tmp_path: Path) -> None:
    own_uts, own_ipc, own_name = os.stat("/proc/self/ns/uts").st_ino, os.stat("/proc/self/ns/ipc").st_ino, \
        socket.gethostname()
    uts, ipc = await hold_uts_ipc(tmp_path / "ns", "held-pod")
    assert ipc is not None
    try:
        assert {os.stat(uts).st_ino, os.stat(ipc).st_ino}.isdisjoint({own_uts, own_ipc})  # nsfs inodes: new ones
        held = subprocess.run(["nsenter", f"--uts={uts}", "hostname"], capture_output=True, text=True, check=True)
        assert held.stdout.strip() == "held-pod"
        # the thread that made them is gone: the kubelet (every thread of this process) kept its own
        assert socket.gethostname() == own_name and os.stat("/proc/self/ns/uts").st_ino == own_uts
        assert all(os.stat(f"/proc/self/task/{t}/ns/uts").st_ino == own_uts for t in os.listdir("/proc/self/task"))
    finally:
        unmount(uts)
        unmount(ipc)


async def test_containers_of_a_pod_share_localhost_and_hostname(runtime: RuncRuntime, busybox: str) -> None:
    sid = await runtime.run_sandbox(SandboxConfig(
        name="web-0", namespace="default", uid="uid-web", fqdn="web-0.web.default.svc.cluster.local",
        dns=DNSConfig(nameservers=["10.96.0.10"], searches=["default.svc.cluster.local"], options=["ndots:5"]),
        host_aliases=[HostAlias("10.1.2.3", ["db.local"])]))
    a = await run(runtime, sid, "a", busybox, HTTPD)
    b = await run(runtime, sid, "b", busybox, IDLE)

    assert await fetch(runtime, b, "http://127.0.0.1:8080/index.html") == "hello-from-a\n"
    names = [(await runtime.exec(c, ["hostname"])).stdout.decode().strip() for c in (a, b)]
    assert names == ["web-0", "web-0"]
    ip = (await runtime.sandbox_status(sid)).ip
    hosts = (await runtime.exec(b, ["cat", "/etc/hosts"])).stdout.decode()
    assert f"{ip}\tweb-0.web.default.svc.cluster.local\tweb-0" in hosts and "10.1.2.3\tdb.local" in hosts
    resolv = (await runtime.exec(a, ["cat", "/etc/resolv.conf"])).stdout.decode()
    assert resolv == "search default.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    addr = (await runtime.exec(b, ["ip", "-4", "-o", "addr", "show", "eth0"])).stdout.decode()
    assert f"inet {ip}/24" in addr


async def test_pod_reaches_another_pod_by_ip_through_the_bridge(runtime: RuncRuntime, busybox: str) -> None:
    s1 = await runtime.run_sandbox(SandboxConfig(name="server", namespace="default", uid="uid-server"))
    s2 = await runtime.run_sandbox(SandboxConfig(name="client", namespace="default", uid="uid-client"))
    await run(runtime, s1, "httpd", busybox, HTTPD)
    client = await run(runtime, s2, "client", busybox, IDLE)
    ip1, ip2 = (await runtime.sandbox_status(s1)).ip, (await runtime.sandbox_status(s2)).ip
    assert ip1 != ip2

    assert await fetch(runtime, client, f"http://{ip1}:8080/index.html") == "hello-from-a\n"
    route = (await runtime.exec(client, ["ip", "route"])).stdout.decode()
    assert f"default via {runtime.network.gateway.ip}" in route
    mtu = (await runtime.exec(client, ["cat", "/sys/class/net/eth0/mtu"])).stdout.decode().strip()
    default = json.loads(subprocess.run(["ip", "-j", "route", "show", "default"], capture_output=True,
                                        text=True, check=True).stdout)
    uplink_mtu = Path(f"/sys/class/net/{default[0]['dev']}/mtu").read_text().strip() if default else "1500"
    assert mtu == uplink_mtu
    # the host ends are bridge ports in hairpin mode (a pod reaching itself through a Service gets replies)
    for sid in (s1, s2):
        veth = runtime.network.names(sid)[1]
        assert Path(f"/sys/class/net/{veth}/brport/hairpin_mode").read_text().strip() == "1"
        assert Path(f"/sys/class/net/{veth}/master").resolve().name == runtime.config.bridge
    # the bridge's MAC is its own (set, not taken from a port: it would move when that pod goes), made of the gateway
    bridge = Path(f"/sys/class/net/{runtime.config.bridge}")
    assert (bridge / "addr_assign_type").read_text().strip() == "3"  # NET_ADDR_SET
    assert (bridge / "address").read_text().strip() == gateway_mac(runtime.network.gateway)


async def test_a_pod_made_after_the_bridge_was_deleted_gets_a_new_bridge(runtime: RuncRuntime) -> None:
    first = await runtime.run_sandbox(SandboxConfig(name="first", namespace="default", uid="uid-first"))
    await asyncio.to_thread(delete_link, runtime.config.bridge)  # (the first pod's host veth leaves it)
    second = await runtime.run_sandbox(SandboxConfig(name="second", namespace="default", uid="uid-second"))
    await runtime.sandboxes.network_ready(second)  # wired beside the first container's creation
    veth = runtime.network.names(second)[1]
    assert Path(f"/sys/class/net/{veth}/master").resolve().name == runtime.config.bridge
    bridge = Path(f"/sys/class/net/{runtime.config.bridge}")
    assert (bridge / "operstate").exists() and (bridge / "address").read_text().strip() == gateway_mac(
        runtime.network.gateway)
    addrs = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", runtime.config.bridge],
                                      capture_output=True, text=True, check=True).stdout)
    assert str(runtime.network.gateway.ip) in [a["local"] for a in addrs[0]["addr_info"]]
    assert (await runtime.sandbox_status(first)).ip != (await runtime.sandbox_status(second)).ip


def nft_rules(table: str) -> list[dict]:
    out = subprocess.run(["nft", "-j", "list", "table", "ip", table], capture_output=True, text=True, check=True)
    return [item["rule"] for item in json.loads(out.stdout)["nftables"] if "rule" in item]


async def test_nat_table_masquerades_pod_egress_and_is_idempotent(runtime: RuncRuntime) -> None:
    table, cidr = runtime.config.nat_table, runtime.config.pod_cidr
    await runtime.ensure_node()  # a second time: still exactly one rule
    rules = nft_rules(table)
    assert len(rules) == 1
    text = json.dumps(rules[0])
    assert "masquerade" in text and cidr.split("/")[0] in text
    assert rules[0]["chain"] == "postrouting"


async def test_concurrent_sandboxes_get_distinct_addresses(runtime: RuncRuntime) -> None:
    configs = [SandboxConfig(name=f"p{i}", namespace="default", uid=f"uid-p{i}") for i in range(4)]
    ids = await asyncio.gather(*(runtime.run_sandbox(c) for c in configs))
    ips = [(await runtime.sandbox_status(s)).ip for s in ids]
    assert len(set(ips)) == 4
    assert sorted(runtime.network.ipam.allocations()) == sorted(ips)
    assert all(Path(netns_path(runtime.network.names(s)[0])).exists() for s in ids)


def test_a_bridge_made_without_its_own_mac_keeps_the_one_it_has_at_node_setup() -> None:
    """A bridge an older kubelet made follows its ports' MACs; node setup pins the current one (no change for the
    running pods' ARP entries), so deleting the port that lent it no longer moves it."""
    bridge, port = unique("pkbrk")[:15], unique("pkvk")[:15]
    gateway = ipaddress.IPv4Interface("10.250.81.1/24")
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=bridge, kind="bridge")
            index = ipr.link_lookup(ifname=bridge)[0]
            ipr.link("add", ifname=port, kind="veth", address="02:00:00:00:00:01", peer={"ifname": port + "p"})
            ipr.link("set", index=ipr.link_lookup(ifname=port)[0], master=index)
            mac = Path(f"/sys/class/net/{bridge}/address").read_text().strip()
            assert mac == "02:00:00:00:00:01"  # lent by the port
            keep_address(ipr, index, gateway)
            assert Path(f"/sys/class/net/{bridge}/addr_assign_type").read_text().strip() == "3"  # NET_ADDR_SET
            ipr.link("del", index=ipr.link_lookup(ifname=port)[0])
        assert Path(f"/sys/class/net/{bridge}/address").read_text().strip() == mac
    finally:
        delete_link(port)
        delete_link(bridge)


# What a container's first instruction sees of its network: eth0's address and the default route.
FIRST_LOOK = ["sh", "-c", "ip -4 -o addr show eth0; ip route; trap 'exit 0' TERM; while :; do sleep 1; done"]


async def test_a_container_started_at_once_runs_only_once_its_network_is_wired(
        runtime: RuncRuntime, busybox: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the wiring (veth, address, route) runs beside the container's creation; here it is made slow, so a start
    # that did not wait for it would run the command in a bare namespace
    wire = runtime.network.wire

    def slow_wire(sandbox_id: str, info: Any) -> None:
        time.sleep(0.5)
        wire(sandbox_id, info)
    monkeypatch.setattr(runtime.network, "wire", slow_wire)
    sid = await runtime.run_sandbox(SandboxConfig(name="eager", namespace="default", uid="uid-eager"))
    ip = (await runtime.sandbox_status(sid)).ip
    assert ip  # the IP is known at once (the pod's status can show it)
    cid = await run(runtime, sid, "first", busybox, FIRST_LOOK)

    async def first_lines() -> str:
        text = "\n".join([line.text async for line in runtime.logs(cid, LogOptions())])
        return text if "default via" in text else ""
    seen = await wait_for(first_lines, timeout=10, interval=0.05, message="the container's first output")
    assert f"inet {ip}/24" in seen and f"default via {runtime.network.gateway.ip}" in seen


async def test_a_sandbox_whose_network_cannot_be_wired_is_not_ready_and_its_container_never_starts(
        runtime: RuncRuntime, busybox: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wire = runtime.network.wire
    created = threading.Event()

    def taken_name(sandbox_id: str, info: Any) -> None:
        created.wait(10)  # fails once the container exists (the other order: the test below)
        # a link already holds the host veth's name: the kernel refuses the pair (EEXIST)
        with IPRoute() as ipr:
            ipr.link("add", ifname=info.host_veth, kind="bridge")
        wire(sandbox_id, info)
    monkeypatch.setattr(runtime.network, "wire", taken_name)
    sid = await runtime.run_sandbox(SandboxConfig(name="unwired", namespace="default", uid="uid-unwired"))
    netns = (await runtime.sandbox_status(sid)).netns
    cid = await runtime.create_container(sid, ContainerConfig(name="c", image=busybox, command=IDLE))
    created.set()
    with pytest.raises(RuntimeError_, match=f"setting up the network of sandbox {sid} failed"):
        await runtime.start_container(cid)
    assert (await runtime.container_status(cid)).state == ContainerState.CREATED
    assert (await runtime.sandbox_status(sid)).state == SandboxState.NOT_READY  # the pod worker makes a new one
    # what the wiring made is gone already: the netns, the IP and the link that was in the way
    assert not Path(netns).exists()
    assert sid not in runtime.network.ipam.allocations().values()
    assert not Path(f"/sys/class/net/{runtime.network.names(sid)[1]}").exists()
    await runtime.remove_sandbox(sid)


async def test_a_container_whose_sandbox_wiring_fails_while_it_is_created_reports_the_network(
        runtime: RuncRuntime, busybox: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring fails (and removes the netns) while the container is being made: runc's own error would only say
    "can't get final child's PID from pipe"; the caller learns that the sandbox's network failed, and why."""
    wire, write_bundle = runtime.network.wire, runtime.containers._write_bundle
    failed = threading.Event()

    def taken_name(sandbox_id: str, info: Any) -> None:
        try:
            with IPRoute() as ipr:
                ipr.link("add", ifname=info.host_veth, kind="bridge")
            wire(sandbox_id, info)
        finally:
            failed.set()

    def bundle_after_the_failure(*args: Any, **kwargs: Any) -> None:
        failed.wait(10)
        write_bundle(*args, **kwargs)
    monkeypatch.setattr(runtime.network, "wire", taken_name)
    monkeypatch.setattr(runtime.containers, "_write_bundle", bundle_after_the_failure)
    sid = await runtime.run_sandbox(SandboxConfig(name="unwired", namespace="default", uid="uid-unwired2"))
    with pytest.raises(RuntimeError_, match=f"setting up the network of sandbox {sid} failed: .*"):
        await runtime.create_container(sid, ContainerConfig(name="c", image=busybox, command=IDLE))
    assert await runtime.list_containers(sid) == []  # nothing half made
    assert (await runtime.sandbox_status(sid)).state == SandboxState.NOT_READY
    await runtime.remove_sandbox(sid)


async def test_a_sandbox_whose_wiring_a_kubelet_stop_cut_short_is_not_ready(
        runtime: RuncRuntime, image_store: ImageStore) -> None:
    release = threading.Event()
    wire = runtime.network.wire

    def held(sandbox_id: str, info: Any) -> None:
        release.wait(10)
        wire(sandbox_id, info)
    runtime.network.wire = held  # type: ignore[method-assign]
    try:
        sid = await runtime.run_sandbox(SandboxConfig(name="cut", namespace="default", uid="uid-cut"))
        assert (await runtime.sandbox_status(sid)).state == SandboxState.READY  # being wired by this process
        restarted = RuncRuntime(runtime.config, image_store)  # a new kubelet reads the state files
        assert (await restarted.sandbox_status(sid)).state == SandboxState.NOT_READY
    finally:
        release.set()
        runtime.network.wire = wire  # type: ignore[method-assign]
    await runtime.remove_sandbox(sid)
