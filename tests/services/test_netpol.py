"""NetworkPolicies enforced on a real node: busybox pods of the real kubelet, `pkube proxy` programming its
`<table>-netpol` nftables table, connections made from inside the pods (busybox wget through the runtime's exec).

One private control plane + kubelet + proxy for the module, and pods that all serve HTTP on 8080 (so each can be a
client and a server): in namespace A `web` (app=web), `frontend` (role=frontend) and `other` (role=other); in
namespace B `outsider`. Each test creates its policies and deletes them. A blocked connection is dropped, so a
check that expects it waits for its timeout (3 s). All traffic goes to pods this module created.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from kubelet.runtime.interface import ExecTimeout
from pklib.client import Client
from pklib.resources import NAMESPACES, NETWORKPOLICIES, SERVICES
from proxy import nft
from proxy.localnet import ROUTE_LOCALNET
from proxy.netpol import table_for
from tests.support.controlplane import ROOT, Etcd, _stop
from tests.support.node import PODS, Node, clean_namespace, ctr, exec_in, pod, private_node, running, wait_pod
from tests.support.proxy import assert_route_localnet_restored, cleanup_proxy, fetch
from tests.util import free_port, unique, wait_for, wait_for_sync

pytestmark = pytest.mark.root

HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"


@dataclass
class Cluster:
    node: Node
    table: str  # the proxy's; the policies' is table_for(table)
    a: str  # namespaces
    b: str
    pods: dict[str, dict[str, Any]]  # name -> running pod
    metrics_port: int


def _server(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return pod(name, ctr("httpd", HTTPD, ports=[{"name": "http", "containerPort": 8080}]), labels=labels,
               terminationGracePeriodSeconds=1)


async def _start_pods(c: Client, a: str, b: str) -> dict[str, dict[str, Any]]:
    wanted = {"web": (a, {"app": "web"}), "frontend": (a, {"role": "frontend"}), "other": (a, {"role": "other"}),
              "outsider": (b, {"role": "frontend"})}
    for name, (ns, labels) in wanted.items():
        await c.create(PODS, _server(name, labels), ns)
    return {name: await wait_pod(c, ns, name, lambda p: running(p) and bool(p["status"].get("podIP")), 90,
                                 f"pod {name} running")
            for name, (ns, _) in wanted.items()}


@pytest.fixture(scope="module")
def cluster(etcd: Etcd) -> Iterator[Cluster]:
    import asyncio
    with private_node(etcd) as node:
        table = f"pkube-t-{unique('np').split('-')[1][:8]}"
        # pods reach ClusterIPs through their gateway; the DNAT'ed packet is then routed back out of the bridge
        forwarding = Path(f"/proc/sys/net/ipv4/conf/{node.runtime_config().bridge}/forwarding")
        wait_for_sync(forwarding.exists, timeout=30, interval=0.1, message="the kubelet's bridge")
        forwarding.write_text("1\n")
        metrics = free_port()
        route_localnet = ROUTE_LOCALNET.read_text()
        proxy = subprocess.Popen(
            [sys.executable, "-m", "launcher", "proxy", "--kubeconfig", node.api.kubeconfig, "--table", table,
             "--node-name", node.name, "--node-ip", "127.0.0.1", "--metrics-bind-address", f"127.0.0.1:{metrics}"],
            cwd=ROOT, stdout=open(node.tmp / "proxy.log", "wb"), stderr=subprocess.STDOUT,
            env={**os.environ, **(node.env or {})})
        a, b = unique("np-a"), unique("np-b")

        async def setup() -> dict[str, dict[str, Any]]:
            async with node.client() as c:
                for ns in (a, b):
                    await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                return await _start_pods(c, a, b)

        async def teardown() -> None:
            async with node.client() as c:
                for ns in (a, b):
                    await clean_namespace(c, ns)
        try:
            def up() -> bool:
                if proxy.poll() is not None:
                    raise AssertionError(f"proxy exited: {(node.tmp / 'proxy.log').read_text()[-3000:]}")
                return nft.list_table(table_for(table)) != ""
            wait_for_sync(up, timeout=30, message="the proxy's network policy table")
            yield Cluster(node, table, a, b, asyncio.run(setup()), metrics)
            asyncio.run(teardown())
        finally:
            _stop(proxy)
            # Stopping the proxy takes its policies away (it would no longer keep them up to date).
            policy_table_left = nft.list_table(table_for(table))
            cleanup_proxy(table)
            assert nft.list_table(table_for(table)) == ""
            assert_route_localnet_restored(route_localnet)
            assert policy_table_left == "", "the proxy left its network policy table on stop"


@pytest.fixture
async def kc(cluster: Cluster) -> AsyncIterator[Client]:
    c = cluster.node.client()
    yield c
    for ns in (cluster.a, cluster.b):
        for p in (await c.list(NETWORKPOLICIES, ns)).get("items") or []:
            await c.delete(NETWORKPOLICIES, p["metadata"]["name"], ns)
    await c.close()


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": spec}


async def reaches(cluster: Cluster, client: str, server: str, through: str = "") -> bool:
    """Whether pod `client` gets pod `server`'s page (its hostname) over HTTP on 8080, or at `through`
    (ADDRESS:PORT, e.g. a Service's)."""
    src, dst = cluster.pods[client], cluster.pods[server]
    url = f"http://{through or dst['status']['podIP'] + ':8080'}/"
    try:
        # busybox's `wget -T` segfaults (see tests/services/test_in_pod.py): `timeout` bounds it instead.
        r = await exec_in(cluster.node, src, "httpd", ["timeout", "3", "wget", "-q", "-O-", url], timeout=8)
    except ExecTimeout:
        return False
    return r.exit_code == 0 and r.stdout.decode().strip() == server


async def eventually(cluster: Cluster, client: str, server: str, allowed: bool) -> None:
    """Rules follow the API within moments: poll until the connection is allowed (or blocked) as expected."""
    async def check() -> bool:
        return await reaches(cluster, client, server) == allowed
    await wait_for(check, 30, 0.2, message=f"{client} -> {server} {'allowed' if allowed else 'blocked'}")


async def test_default_deny_then_allow_from_frontend(cluster: Cluster, kc: Client) -> None:
    a = cluster.a
    for client in ("frontend", "other"):
        assert await reaches(cluster, client, "web"), "no policy yet: every pod reaches web"
    await kc.create(NETWORKPOLICIES, policy("default-deny", podSelector={}), a)
    await eventually(cluster, "frontend", "web", False)
    await eventually(cluster, "other", "web", False)
    assert f"pod-in-{a}/web" in nft.list_table(table_for(cluster.table))

    await kc.create(NETWORKPOLICIES, policy(
        "web-from-frontend", podSelector={"matchLabels": {"app": "web"}},
        ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}], "ports": [{"port": 8080}]}]), a)
    await eventually(cluster, "frontend", "web", True)  # policies add up: one allowing is enough
    assert not await reaches(cluster, "other", "web")
    assert not await reaches(cluster, "outsider", "web"), "role=frontend of another namespace does not count"
    # Ingress policies do not isolate egress: web still opens connections (to a pod no policy selects).
    assert await reaches(cluster, "web", "outsider")
    # Through a Service: the policy judges the DNAT'ed connection, with the client's own address.
    svc = await kc.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}, a)
    cluster_ip = f"{svc['spec']['clusterIP']}:80"
    await wait_for(lambda: reaches(cluster, "frontend", "web", cluster_ip), 30, 0.2, message="frontend -> Service web")
    assert not await reaches(cluster, "other", "web", cluster_ip)
    await kc.delete(SERVICES, "web", a)

    # A pod relabelled into the allowed set gets in (the informers follow labels).
    await kc.patch(PODS, "other", {"metadata": {"labels": {"role": "frontend"}}}, a)
    try:
        await eventually(cluster, "other", "web", True)
    finally:
        await kc.patch(PODS, "other", {"metadata": {"labels": {"role": "other"}}}, a)
    await eventually(cluster, "other", "web", False)

    # A port the rule does not name stays closed: allow only 9090 from frontend.
    await kc.delete(NETWORKPOLICIES, "web-from-frontend", a)
    await kc.create(NETWORKPOLICIES, policy(
        "web-9090", podSelector={"matchLabels": {"app": "web"}},
        ingress=[{"from": [{"podSelector": {}}], "ports": [{"port": 9090}]}]), a)
    await eventually(cluster, "frontend", "web", False)
    # ... and a named port opens the container port of that name.
    await kc.create(NETWORKPOLICIES, policy(
        "web-http", podSelector={"matchLabels": {"app": "web"}},
        ingress=[{"from": [{"podSelector": {}}], "ports": [{"port": "http"}]}]), a)
    await eventually(cluster, "frontend", "web", True)
    await kc.delete(NETWORKPOLICIES, "web-http", a)

    await kc.delete(NETWORKPOLICIES, "default-deny", a)
    await kc.delete(NETWORKPOLICIES, "web-9090", a)
    await eventually(cluster, "other", "web", True)  # no policy left: open again
    assert f"pod-in-{a}/web" not in nft.list_table(table_for(cluster.table))
    metrics = fetch(f"http://127.0.0.1:{cluster.metrics_port}/metrics") or ""
    synced = re.search(r"^pkube_proxy_sync_network_policy_rules_duration_seconds_count (\S+)$", metrics, re.M)
    assert synced and float(synced.group(1)) >= 5, "a sync per policy change, at least"


async def test_namespace_selector_separates_namespaces(cluster: Cluster, kc: Client) -> None:
    a, b = cluster.a, cluster.b
    team = unique("team")
    await kc.patch(NAMESPACES, a, {"metadata": {"labels": {"team": team}}})
    # The tutorial case: pods of namespace A accept only from namespaces of their team.
    await kc.create(NETWORKPOLICIES, policy(
        "same-team", podSelector={}, ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": team}}}]}]), a)
    await eventually(cluster, "outsider", "web", False)
    assert await reaches(cluster, "other", "web")
    assert await reaches(cluster, "frontend", "other")
    # Namespace B joins the team: its pods get in (namespace labels are followed too).
    await kc.patch(NAMESPACES, b, {"metadata": {"labels": {"team": team}}})
    await eventually(cluster, "outsider", "web", True)
    await kc.patch(NAMESPACES, b, {"metadata": {"labels": {"team": None}}})
    await eventually(cluster, "outsider", "web", False)

    # namespaceSelector and podSelector in one peer: both must match (B's role=frontend pods only).
    await kc.patch(NAMESPACES, b, {"metadata": {"labels": {"team": team}}})
    await kc.delete(NETWORKPOLICIES, "same-team", a)
    await kc.create(NETWORKPOLICIES, policy(
        "team-frontends", podSelector={"matchLabels": {"app": "web"}}, ingress=[{"from": [
            {"namespaceSelector": {"matchLabels": {"team": team}}, "podSelector": {"matchLabels": {"role": "frontend"}}}
        ]}]), a)
    await eventually(cluster, "other", "web", False)
    assert await reaches(cluster, "outsider", "web")
    assert await reaches(cluster, "frontend", "web")
    await kc.patch(NAMESPACES, b, {"metadata": {"labels": {"team": None}}})


async def test_egress_policy_blocks_outgoing_connections(cluster: Cluster, kc: Client) -> None:
    a = cluster.a
    assert await reaches(cluster, "other", "frontend")
    # `other` may only open connections to port 8080 of the pod network, except to frontend's address.
    frontend_ip = cluster.pods["frontend"]["status"]["podIP"]
    await kc.create(NETWORKPOLICIES, policy(
        "other-egress", podSelector={"matchLabels": {"role": "other"}}, policyTypes=["Egress"],
        egress=[{"to": [{"ipBlock": {"cidr": cluster.node.cidr, "except": [f"{frontend_ip}/32"]}}],
                 "ports": [{"protocol": "TCP", "port": 8080}]}]), a)
    await eventually(cluster, "other", "frontend", False)
    assert await reaches(cluster, "other", "web")
    assert await reaches(cluster, "frontend", "other"), "an egress policy does not isolate ingress"
    await kc.delete(NETWORKPOLICIES, "other-egress", a)
    await eventually(cluster, "other", "frontend", True)
