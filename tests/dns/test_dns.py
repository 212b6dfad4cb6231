"""`pkube dns` as a process against the real API server, queried over UDP and TCP on loopback."""
from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from pklib.client import Client
from proxy import dns_notrack
from pklib.resources import must_lookup
from tests.support.controlplane import ROOT, ApiServer, _stop
from tests.util import free_port, unique, wait_for, wait_for_sync

SERVICES = must_lookup("services")
SLICES = must_lookup("endpointslices")


def query(port: int, name: str, qtype: str = "A", tcp: bool = False, host: str = "127.0.0.1",
          timeout: float = 3.0) -> DNSRecord:
    return DNSRecord.parse(DNSRecord.question(name, qtype).send(host, port, tcp=tcp, timeout=timeout))


def addresses(reply: DNSRecord, qtype: str = "A") -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if QTYPE[rr.rtype] == qtype)


class FakeUpstream:
    """A resolver on loopback that knows one name: stands in for the host's resolvers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                continue
            request = DNSRecord.parse(data)
            reply = request.reply()
            if str(request.q.qname) == "upstream.example.":
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("192.0.2.77"), ttl=60))
            else:
                reply.header.rcode = RCODE.NXDOMAIN
            self.sock.sendto(reply.pack(), addr)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


class DnsProcess:
    def __init__(self, api: ApiServer, tmp: str, listen: list[str], upstream: list[str], extra: tuple[str, ...] = ()):
        self.log = os.path.join(tmp, f"{unique('dns')}.log")
        args = [sys.executable, "-m", "launcher", "dns", "--kubeconfig", api.kubeconfig, "--forward-timeout", "1s"]
        for item in listen:
            args += ["--listen", item]
        for item in upstream:
            args += ["--upstream", item]
        self.proc = subprocess.Popen([*args, *extra], cwd=ROOT, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)

    def wait_serving(self, host: str, port: int) -> None:
        def ok() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"dns exited {self.proc.returncode}: {Path(self.log).read_text()[-3000:]}")
            try:
                return query(port, "kubernetes-probe.default.svc.cluster.local", host=host, timeout=0.5) is not None
            except OSError:
                return False
        wait_for_sync(ok, timeout=30, message="dns serving")

    def stop(self) -> None:
        _stop(self.proc)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    u = FakeUpstream()
    yield u
    u.close()


@pytest.fixture(scope="module")
def dns_port(apiserver: ApiServer, session_tmp: str, upstream: FakeUpstream) -> Iterator[int]:
    port = free_port()
    p = DnsProcess(apiserver, session_tmp, [f"127.0.0.1:{port}"], [f"127.0.0.1:{upstream.port}"])
    try:
        p.wait_serving("127.0.0.1", port)
        yield port
    finally:
        p.stop()


async def make_service(c: Client, ns: str, name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("ports", [{"name": "http", "port": 80, "protocol": "TCP"}])
    return await c.create(SERVICES, {"apiVersion": "v1", "kind": "Service",
                                     "metadata": {"name": name, "namespace": ns}, "spec": spec})


async def test_service_a_srv_ptr_over_udp_and_tcp(client: Client, namespace: str, dns_port: int) -> None:
    svc = await make_service(client, namespace, "web")
    ip = svc["spec"]["clusterIP"]
    name = f"web.{namespace}.svc.cluster.local"
    await wait_for(lambda: _async(lambda: addresses(query(dns_port, name)) == [ip]), message="A record")
    assert addresses(query(dns_port, name, tcp=True)) == [ip]
    srv = query(dns_port, f"_http._tcp.{name}", "SRV")
    assert addresses(srv, "SRV") == [f"0 100 80 {name}."]
    ptr = query(dns_port, ".".join(reversed(ip.split("."))) + ".in-addr.arpa", "PTR")
    assert addresses(ptr, "PTR") == [f"{name}."]

    await client.delete(SERVICES, "web", namespace)
    await wait_for(lambda: _async(lambda: query(dns_port, name).header.rcode == RCODE.NXDOMAIN),
                   message="NXDOMAIN after delete")


async def test_headless_and_statefulset_pod_names(client: Client, namespace: str, dns_port: int) -> None:
    await make_service(client, namespace, "db", clusterIP="None",
                       ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])
    await client.create(SLICES, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "db-a", "namespace": namespace, "labels": {"kubernetes.io/service-name": "db"}},
        "endpoints": [{"addresses": [ip], "hostname": host, "conditions": {"ready": ready}}
                      for ip, host, ready in (("10.250.0.2", "db-0", True), ("10.250.0.3", "db-1", True),
                                              ("10.250.0.4", "db-2", False))],
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]})
    base = f"db.{namespace}.svc.cluster.local"
    await wait_for(lambda: _async(lambda: addresses(query(dns_port, base)) == ["10.250.0.2", "10.250.0.3"]),
                   message="headless A records")
    assert addresses(query(dns_port, f"db-1.{base}")) == ["10.250.0.3"]
    assert query(dns_port, f"db-2.{base}").header.rcode == RCODE.NXDOMAIN  # not ready
    srv = query(dns_port, f"_pg._tcp.{base}", "SRV")
    assert addresses(srv, "SRV") == [f"0 100 5432 db-0.{base}.", f"0 100 5432 db-1.{base}."]
    assert addresses(query(dns_port, "2.0.250.10.in-addr.arpa", "PTR"), "PTR") == [f"db-0.{base}."]


async def test_unknown_names_nxdomain_and_others_forwarded(dns_port: int, namespace: str) -> None:
    assert query(dns_port, f"missing.{namespace}.svc.cluster.local").header.rcode == RCODE.NXDOMAIN
    forwarded = query(dns_port, "upstream.example")
    assert addresses(forwarded) == ["192.0.2.77"]
    assert query(dns_port, "nothing.example").header.rcode == RCODE.NXDOMAIN  # the upstream's answer


def test_servfail_fast_when_upstreams_do_not_answer(apiserver: ApiServer, session_tmp: str) -> None:
    # A bound socket that never reads: queries to it go unanswered (nothing leaves loopback).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = free_port()
        p = DnsProcess(apiserver, session_tmp, [f"127.0.0.1:{port}"], [f"127.0.0.1:{silent.getsockname()[1]}"])
        try:
            p.wait_serving("127.0.0.1", port)
            started = time.monotonic()
            reply = query(port, "offline.example", timeout=5)
            took = time.monotonic() - started
            assert reply.header.rcode == RCODE.SERVFAIL and took < 2.5, (reply.header.rcode, took)
        finally:
            p.stop()


def test_bad_flags_give_one_line_errors(apiserver: ApiServer) -> None:
    for args, needle in ((["--listen", "nowhere"], "expected IPv4[:PORT]"),
                         (["--forward-timeout", "x"], "invalid duration")):
        out = subprocess.run([sys.executable, "-m", "launcher", "dns", *args], capture_output=True, text=True,
                             timeout=60, cwd=ROOT)
        assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr, out.stderr


def on_lo(address: str) -> bool:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True)
    return f" {address}/32 " in out.stdout


@pytest.mark.root
def test_cluster_ip_is_made_local_while_serving_and_released_after(apiserver: ApiServer, session_tmp: str,
                                                                  upstream: FakeUpstream) -> None:
    address = f"10.216.{random.randint(0, 255)}.{random.randint(1, 254)}"
    assert not on_lo(address)
    p = DnsProcess(apiserver, session_tmp, [f"{address}:53"], [f"127.0.0.1:{upstream.port}"])
    try:
        # Only query once the address is local: a packet to it must never leave the machine.
        wait_for_sync(lambda: on_lo(address) or p.proc.poll() is not None, timeout=30, message="address on lo")
        assert on_lo(address), Path(p.log).read_text()[-2000:]
        p.wait_serving(address, 53)
        assert addresses(query(53, "upstream.example", host=address)) == ["192.0.2.77"]
        # queries to it and the replies bypass conntrack (the A/AAAA insert race): its own NOTRACK table
        assert f"ip daddr {address} udp dport 53 notrack" in nft_table(notrack_table(address))
        assert tracked_dns_flows(address) == []
    finally:
        p.stop()
    assert not on_lo(address)
    assert nft_table(notrack_table(address)) == ""
    # a killed server leaves its table; `--cleanup` (what `cluster down` runs) removes it
    dns_notrack.ensure([(address, 53)])
    assert nft_table(notrack_table(address))
    subprocess.run([sys.executable, "-m", "launcher", "dns", "--cleanup", "--listen", f"{address}:53"], cwd=ROOT,
                   check=True, timeout=60)
    assert nft_table(notrack_table(address)) == ""


def notrack_table(address: str) -> str:
    return f"pkube-dns-{address.replace('.', '-')}-53"


def nft_table(name: str) -> str:
    return subprocess.run(["nft", "list", "table", "ip", name], capture_output=True, text=True).stdout


def tracked_dns_flows(address: str) -> list[str]:
    out = subprocess.run(["conntrack", "-L", "-p", "udp", "-d", address, "--dport", "53"],
                         capture_output=True, text=True).stdout
    return out.splitlines()


async def _async(fn: Any) -> Any:
    return fn()
