"""Fixtures for the service proxy tests: a private API server with its own service range, a test bridge with
"pods" (network namespaces running busybox httpd), and a `pkube proxy` process on a unique nftables table.

iproute2 builds the test network (tests only; the product uses pyroute2). Everything is removed afterwards.
"""
from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from pklib.client import Client
from proxy.localnet import ROUTE_LOCALNET
from pklib.resources import NAMESPACES
from tests.support.controlplane import ApiServer, Etcd, start_apiserver, _stop
from tests.support.proxy import assert_route_localnet_restored, cleanup_proxy, PodNet, ProxyProcess, sh
from tests.util import free_port, unique


@pytest.fixture(scope="module")
def proxy_apiserver(session_tmp: str, etcd: Etcd) -> Iterator[ApiServer]:
    """A private API server whose service range no other proxy on this machine programs."""
    cidr = f"172.30.{random.randint(0, 255)}.0/24"
    a = start_apiserver(session_tmp, etcd.url, ["--service-cluster-ip-range", cidr])
    yield a
    _stop(a.proc)


@pytest.fixture
async def pclient(proxy_apiserver: ApiServer) -> AsyncIterator[Client]:
    c = Client(proxy_apiserver.url, proxy_apiserver.token)
    yield c
    await c.close()


@pytest.fixture
async def pns(pclient: Client) -> str:
    name = unique("ns")
    await pclient.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
def testnet() -> Iterator[PodNet]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tag = unique("pkp").split("-")[1][:6]
    prefix = f"10.{random.randint(208, 215)}.{random.randint(0, 255)}"
    bridge = f"pkp{tag}"
    tmp = tempfile.mkdtemp(prefix="pkt-proxy-")
    net = PodNet(bridge, f"{prefix}.1", prefix, tmp)
    try:
        sh("ip", "link", "add", bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{prefix}.1/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        # Pods reach Services through the node: let packets that arrive on this bridge (only) be routed.
        Path(f"/proc/sys/net/ipv4/conf/{bridge}/forwarding").write_text("1\n")
        yield net
    finally:
        net.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def proxy(proxy_apiserver: ApiServer, testnet: PodNet, session_tmp: str) -> Iterator[ProxyProcess]:
    table = unique("pkube-t")
    p = ProxyProcess(table, unique("node"), testnet.gateway, free_port(), proxy_apiserver.kubeconfig,
                     os.path.join(session_tmp, f"{table}.log"))
    before = ROUTE_LOCALNET.read_text()
    try:
        p.start()
        yield p
    finally:
        p.stop()
        cleanup_proxy(table)
        assert_route_localnet_restored(before)
