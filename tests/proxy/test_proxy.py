"""`pkube proxy` against a real API server, real nftables and "pods" in network namespaces running httpd.

Every request goes to loopback, to the test bridge's address, or to a ClusterIP of the test's own API
server -- and only after the proxy's rules for it are in the kernel, so nothing leaves the machine.
"""
from __future__ import annotations

import collections
import http.client
import re
import socket
import subprocess
import sys
from typing import Any

import pytest

from pklib.client import Client
from proxy import localnet, nft
from pklib.resources import must_lookup
from tests.support.proxy import ProxyProcess, PodNet, cleanup_proxy, connect_error, fetch
from tests.util import unique, wait_for, wait_for_sync

pytestmark = pytest.mark.root

SERVICES = must_lookup("services")
SLICES = must_lookup("endpointslices")


async def make_service(c: Client, ns: str, name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("ports", [{"port": 80, "protocol": "TCP", "targetPort": 8080}])
    return await c.create(SERVICES, {"apiVersion": "v1", "kind": "Service",
                                     "metadata": {"name": name, "namespace": ns}, "spec": spec})


def endpoint_slice(ns: str, service: str, endpoints: list[dict[str, Any]], port: int = 8080, protocol: str = "TCP",
                   port_name: str | None = None, suffix: str = "a") -> dict[str, Any]:
    """An EndpointSlice of `service` (what the endpoint slice controller writes for its pods)."""
    p: dict[str, Any] = {"port": port, "protocol": protocol}
    if port_name:
        p["name"] = port_name
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{service}-{suffix}", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service}},
            "endpoints": endpoints, "ports": [p]}


def ready(*pods: Any, node: str | None = None) -> list[dict[str, Any]]:
    return [{"addresses": [pod.ip], "conditions": {"ready": True}, **({"nodeName": node} if node else {})}
            for pod in pods]


def has_rule(text: str, needle: str) -> bool:
    """`needle` in the ruleset as whole words: 10.96.0.12 is not in a rule of 10.96.0.120 (another test's Service)."""
    return re.search(rf"(?<![\w.]){re.escape(needle)}(?!\w)", text) is not None


def wait_rules(proxy: ProxyProcess, *needles: str, absent: bool = False) -> str:
    def ok() -> str | None:
        text = proxy.ruleset()
        present = [has_rule(text, n) for n in needles]
        return text if (not any(present) if absent else all(present)) else None
    return wait_for_sync(ok, timeout=10, message=f"ruleset {'without' if absent else 'with'} {needles}")


def spread(url: str, n: int) -> collections.Counter[str | None]:
    return collections.Counter(fetch(url) for _ in range(n))


async def test_clusterip_and_nodeport_reach_every_endpoint(pclient: Client, pns: str, testnet: PodNet,
                                                           proxy: ProxyProcess) -> None:
    pods = [testnet.add_pod(f"web-{i}") for i in range(3)]
    svc = await make_service(pclient, pns, "web", type="NodePort")
    ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    await pclient.create(SLICES, endpoint_slice(pns, "web", ready(*pods)))
    wait_rules(proxy, f"{ip} . tcp . 80", f"tcp . {node_port}", *(f"{p.ip}:8080" for p in pods))

    names = {p.name for p in pods}
    for url in (f"http://{ip}/", f"http://127.0.0.1:{node_port}/", f"http://{testnet.gateway}:{node_port}/"):
        seen = spread(url, 30)
        # Equal weight: 30 requests over 3 endpoints miss one with probability ~1e-5.
        assert set(seen) == names, f"{url}: {seen}"

    # Scaling down: a removed endpoint gets no more traffic once the proxy saw the change.
    current = await pclient.get(SLICES, "web-a", pns)
    current["endpoints"] = ready(*pods[:2])
    await pclient.update(SLICES, current)
    wait_rules(proxy, f"{pods[2].ip}:8080", absent=True)
    assert set(spread(f"http://{ip}/", 20)) == {"web-0", "web-1"}

    # The metrics report how long syncs and endpoint changes took.
    metrics = proxy.metrics()
    assert re.search(r"^pkube_proxy_sync_proxy_rules_duration_seconds_count [1-9]", metrics, re.M)
    # The start was a full sync; the endpoint changes since were partial ones.
    assert re.search(r"^pkube_proxy_sync_full_proxy_rules_duration_seconds_count [1-9]", metrics, re.M)
    assert re.search(r"^pkube_proxy_sync_partial_proxy_rules_duration_seconds_count [1-9]", metrics, re.M)
    assert re.search(r"^pkube_proxy_network_programming_duration_seconds_count [1-9]", metrics, re.M)


async def test_named_target_port_resolved_per_endpoint(pclient: Client, pns: str, testnet: PodNet,
                                                       proxy: ProxyProcess) -> None:
    old, new = testnet.add_pod("v1", port=8080), testnet.add_pod("v2", port=9090)
    svc = await make_service(pclient, pns, "multi",
                             ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}])
    ip = svc["spec"]["clusterIP"]
    # Two slices of one Service (two pod versions), merged by the proxy.
    await pclient.create(SLICES, endpoint_slice(pns, "multi", ready(old), 8080, port_name="http", suffix="v1"))
    await pclient.create(SLICES, endpoint_slice(pns, "multi", ready(new), 9090, port_name="http", suffix="v2"))
    wait_rules(proxy, f"{old.ip}:8080", f"{new.ip}:9090")
    assert set(spread(f"http://{ip}/", 30)) == {"v1", "v2"}


async def test_no_endpoints_refuses_at_once_and_delete_removes_rules(pclient: Client, pns: str, testnet: PodNet,
                                                                     proxy: ProxyProcess) -> None:
    svc = await make_service(pclient, pns, "empty", type="NodePort")
    ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    wait_rules(proxy, f"{ip} . tcp . 80 : goto reject-no-endpoints", f"tcp . {node_port} : goto reject-no-endpoints")
    for host, port in ((ip, 80), ("127.0.0.1", node_port)):
        error, took = connect_error(host, port)
        assert error is ConnectionRefusedError and took < 1.0, (host, port, error, took)

    await pclient.delete(SERVICES, "empty", pns)
    wait_rules(proxy, ip, f"tcp . {node_port}", absent=True)
    assert not any(line.strip().startswith("chain svc-" + pns) for line in proxy.ruleset().splitlines())


async def test_pods_reach_services_and_themselves_through_them(pclient: Client, pns: str, testnet: PodNet,
                                                              proxy: ProxyProcess) -> None:
    a, b = testnet.add_pod("pod-a"), testnet.add_pod("pod-b")
    svc = await make_service(pclient, pns, "only-a")
    ip = svc["spec"]["clusterIP"]
    await pclient.create(SLICES, endpoint_slice(pns, "only-a", ready(a)))
    wait_rules(proxy, f"{a.ip}:8080")
    assert testnet.fetch_from(b, f"http://{ip}/") == "pod-a"
    # Hairpin: without masquerading, pod-a would answer itself directly and the connection would hang.
    assert testnet.fetch_from(a, f"http://{ip}/") == "pod-a"


async def test_an_endpoint_on_a_host_address_leaves_that_address_s_other_connections_alone(
        pclient: Client, pns: str, testnet: PodNet, proxy: ProxyProcess) -> None:
    """The `kubernetes` Service's endpoint is a host address (the API balancer on the cluster network's gateway).
    Hairpin masquerading is for connections the Service DNAT'ed; other connections between that address and
    itself (etcd's peers on the gateway) must keep their source (they broke when every one was masqueraded)."""
    gw = testnet.gateway
    with socket.create_server((gw, 0)) as service_end, socket.create_server((gw, 0)) as other:
        svc = await make_service(pclient, pns, "on-host")
        host_endpoint = [{"addresses": [gw], "conditions": {"ready": True}}]
        await pclient.create(SLICES, endpoint_slice(pns, "on-host", host_endpoint, service_end.getsockname()[1]))
        wait_rules(proxy, f"{gw}:{service_end.getsockname()[1]}", f"{gw} . {gw}")
        # through the Service: reaches the host endpoint
        with socket.create_connection((svc["spec"]["clusterIP"], 80), timeout=5):
            conn, _ = service_end.accept()
            conn.close()
        # directly, from a chosen source port: the server sees exactly that source
        with socket.socket() as c:
            c.bind((gw, 0))
            source = c.getsockname()
            c.settimeout(5)
            c.connect((gw, other.getsockname()[1]))
            conn, peer = other.accept()
            conn.close()
        assert peer == source, f"the connection was rewritten: sent from {source}, arrived from {peer}"


async def _none(get: Any) -> bool:
    return await get() is None


def udp_ask(sock: socket.socket, host: str, port: int, tries: int = 20) -> str | None:
    """Send from one fixed client socket (the same conntrack entry every time) until an answer comes."""
    for _ in range(tries):
        sock.sendto(b"?", (host, port))
        try:
            return sock.recv(2048).decode()
        except (TimeoutError, ConnectionRefusedError):
            continue
    return None


async def test_udp_flows_move_when_their_endpoint_goes_away(pclient: Client, pns: str, testnet: PodNet,
                                                            proxy: ProxyProcess) -> None:
    a, b = testnet.add_pod("udp-a"), testnet.add_pod("udp-b")
    testnet.udp_echo(a, 5353)
    testnet.udp_echo(b, 5353)
    svc = await make_service(pclient, pns, "udp", ports=[{"port": 53, "protocol": "UDP", "targetPort": 5353}])
    ip = svc["spec"]["clusterIP"]
    await pclient.create(SLICES, endpoint_slice(pns, "udp", ready(a), 5353, "UDP"))
    wait_rules(proxy, f"{ip} . udp . 53", f"{a.ip}:5353")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(0.5)
        assert udp_ask(client, ip, 53) == "udp-a"
        current = await pclient.get(SLICES, "udp-a", pns)
        current["endpoints"] = ready(b)
        await pclient.update(SLICES, current)
        wait_rules(proxy, f"{a.ip}:5353", absent=True)
        # udp-a still answers, so only a deleted conntrack entry sends the same flow to udp-b.
        assert wait_for_sync(lambda: udp_ask(client, ip, 53, tries=2) == "udp-b", timeout=5,
                             message="flow moved to udp-b")


async def test_session_affinity_keeps_a_client_on_one_endpoint(pclient: Client, pns: str, testnet: PodNet,
                                                               proxy: ProxyProcess) -> None:
    pods = [testnet.add_pod(f"sticky-{i}") for i in range(3)]
    svc = await make_service(pclient, pns, "sticky", sessionAffinity="ClientIP")
    ip = svc["spec"]["clusterIP"]
    await pclient.create(SLICES, endpoint_slice(pns, "sticky", ready(*pods)))
    wait_rules(proxy, *(f"dnat to {p.ip}:8080" for p in pods))
    seen = spread(f"http://{ip}/", 15)
    assert len(seen) == 1 and None not in seen, seen


async def test_masquerade_only_where_needed_and_policy_local(
        pclient: Client, pns: str, testnet: PodNet, proxy: ProxyProcess) -> None:
    here, elsewhere, client = testnet.add_pod("here"), testnet.add_pod("elsewhere"), testnet.add_pod("client")
    for pod in (here, elsewhere):
        testnet.who_am_i_server(pod, 9000)
    svc = await make_service(pclient, pns, "local", type="NodePort", externalTrafficPolicy="Local",
                             ports=[{"port": 80, "protocol": "TCP", "targetPort": 9000}])
    node_port = svc["spec"]["ports"][0]["nodePort"]
    await pclient.create(SLICES, endpoint_slice(pns, "local", ready(here, node=proxy.node_name)
                                                + ready(elsewhere, node="other-node"), 9000))
    wait_rules(proxy, f"local-{pns}/local/tcp/80", f"{elsewhere.ip}:9000")
    # An outside client (another host on the node's network: the client namespace) reaches only this node's
    # endpoint, which sees the client's own address.
    answers = {testnet.fetch_from(client, f"http://{testnet.gateway}:{node_port}/") for _ in range(10)}
    assert answers == {f"here {client.ip}"}, answers
    # From the node itself both endpoints serve (traffic starting on the node is treated like Cluster).
    seen = {(fetch(f"http://127.0.0.1:{node_port}/") or "").split(" ")[0] for _ in range(30)}
    assert seen == {"here", "elsewhere"}, seen

    # Policy Cluster masquerades external traffic (the endpoint sees the node); a pod calling the ClusterIP
    # is not masqueraded (the endpoint sees the pod).
    cluster = await make_service(pclient, pns, "cluster", type="NodePort",
                                 ports=[{"port": 80, "protocol": "TCP", "targetPort": 9000}])
    await pclient.create(SLICES, endpoint_slice(pns, "cluster", ready(here), 9000))
    wait_rules(proxy, f"svc-{pns}/cluster/tcp/80")
    cluster_port = cluster["spec"]["ports"][0]["nodePort"]
    assert testnet.fetch_from(client, f"http://{testnet.gateway}:{cluster_port}/") == f"here {testnet.gateway}"
    assert testnet.fetch_from(client, f"http://{cluster['spec']['clusterIP']}/") == f"here {client.ip}"


async def test_loadbalancer_gets_the_node_address_and_is_served_there(pclient: Client, pns: str, testnet: PodNet,
                                                                       proxy: ProxyProcess) -> None:
    pod = testnet.add_pod("lb")
    svc = await make_service(pclient, pns, "lb", type="LoadBalancer",
                             ports=[{"port": 8888, "protocol": "TCP", "targetPort": 8080}])
    await pclient.create(SLICES, endpoint_slice(pns, "lb", ready(pod)))

    async def ingress() -> Any:
        s = await pclient.get(SERVICES, "lb", pns)
        return ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress")
    assert await wait_for(ingress, message="load balancer ingress") == [{"ip": testnet.gateway}]
    wait_rules(proxy, f"{testnet.gateway} . tcp . 8888")
    assert fetch(f"http://{testnet.gateway}:8888/") == "lb"
    assert fetch(f"http://{testnet.gateway}:{svc['spec']['ports'][0]['nodePort']}/") == "lb"

    # Back to ClusterIP: the address is taken back and no longer served.
    current = await pclient.get(SERVICES, "lb", pns)
    current["spec"]["type"] = "ClusterIP"
    for port in current["spec"]["ports"]:
        port.pop("nodePort", None)
    current["spec"].pop("externalTrafficPolicy", None)
    await pclient.update(SERVICES, current)
    assert await wait_for(lambda: _none(ingress), message="ingress cleared")
    wait_rules(proxy, f"{testnet.gateway} . tcp . 8888", absent=True)


async def test_restart_keeps_connections_and_ruleset_cleanup_removes_it(pclient: Client, pns: str, testnet: PodNet,
                                                                       proxy: ProxyProcess) -> None:
    pods = [testnet.add_pod(f"r-{i}") for i in range(2)]
    for pod in pods:
        testnet.who_am_i_server(pod, 9000)
    svc = await make_service(pclient, pns, "keep", type="NodePort",
                             ports=[{"port": 80, "protocol": "TCP", "targetPort": 9000}])
    ip = svc["spec"]["clusterIP"]
    await pclient.create(SLICES, endpoint_slice(pns, "keep", ready(*pods), 9000))
    before = wait_rules(proxy, *(f"{p.ip}:9000" for p in pods))

    conn = http.client.HTTPConnection(ip, 80, timeout=5)
    try:
        conn.request("GET", "/")
        first = conn.getresponse().read().decode()
        sock = conn.sock
        proxy.stop()
        # Rules stay while the proxy is down, so Services keep working across a restart.
        assert proxy.ruleset() == before
        assert (fetch(f"http://{ip}/") or "").split(" ")[0] in {"r-0", "r-1"}
        proxy.start()
        assert proxy.ruleset() == before
        # The connection opened before the restart still works: same socket, same endpoint.
        conn.request("GET", "/")
        assert conn.getresponse().read().decode() == first and conn.sock is sock
    finally:
        conn.close()

    # A stale chain someone left in the table disappears with the next full reconcile (at start).
    proxy.stop()
    subprocess.run(["nft", "add", "chain", "ip", proxy.table, "svc-stale/x/tcp/1"], check=True)
    proxy.start()
    assert proxy.ruleset() == before

    # The proxy recorded route_localnet as it found it, and its table counts as a pkube proxy table
    # (which keeps the setting on) until `--cleanup` removes both.
    record = localnet.setting().record(proxy.table)
    assert record.read_text().strip() in ("0", "1") and proxy.table in nft.proxy_tables()
    proxy.stop()
    cleanup_proxy(proxy.table)
    assert not record.exists() and proxy.table not in nft.proxy_tables()


def test_bad_flags_give_one_line_errors() -> None:
    for args, needle in ((["--table", "bad name"], "invalid nftables table name"),
                         (["--sync-period", "soon"], "invalid duration"),
                         (["--metrics-bind-address", "nowhere"], "expected HOST:PORT")):
        out = subprocess.run([sys.executable, "-m", "launcher", "proxy", *args], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = subprocess.run([sys.executable, "-m", "launcher", "proxy", "--kubeconfig", f"/nonexistent/{unique()}",
                          "--metrics-bind-address", "127.0.0.1:0", "--table", unique("pkube-t")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and out.stderr.startswith("error:") and "Traceback" not in out.stderr, out.stderr


def test_a_failing_transaction_changes_nothing_and_says_why() -> None:
    table = unique("pkube-t")
    try:
        with pytest.raises(nft.NftError, match="syntax error"):
            nft.apply_script(f"add table ip {table}\nadd chain ip {table} c\nadd rule ip {table} c no-such-thing\n")
        assert nft.list_table(table) == ""  # all or nothing: not even the table was created
        nft.apply_script(f"add table ip {table}\nadd chain ip {table} c\nadd rule ip {table} c counter\n")
        assert "counter" in nft.list_table(table)  # the same context works on after a failure
    finally:
        nft.delete_table(table)
