"""Issue 7 from inside pods: the real kubelet runs busybox pods, `pkube proxy` and `pkube dns` serve them.

One private control plane + real kubelet (tests/support/node.py `private_node`) for the module, plus a proxy on
a unique nftables table and the DNS server on the ClusterIP the kubelet writes into pods' resolv.conf
(10.96.0.10; `pkube dns` puts it on `lo` and removes it on exit). Commands run in the pods through the runtime's
exec (what the kubelet's exec endpoint calls). All traffic goes to pods and Services this module created.

Lookups by name run once, not in a retry loop: the test first waits until the DNS server (asked from the host)
and the proxy know the new Service, then a single lookup from the pod must succeed, and quickly. A lost query
(the node bridge's MAC moving with pod churn, kubelet/network/bridge.py; the A/AAAA conntrack race,
proxy/dns_notrack.py) shows as a failure instead of being retried away.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
from dnslib import QTYPE, DNSRecord

from kubelet.runtime.interface import ExecTimeout
from pklib.client import Client
from proxy.localnet import ROUTE_LOCALNET
from tests.support.controlplane import ROOT, Etcd, _stop
from tests.support.node import (PODS, Node, pod_namespace, cond, ctr, exec_in, pod,
                                    private_node, res, running, wait_pod)
from tests.support.proxy import assert_route_localnet_restored, cleanup_proxy
from tests.util import free_port, unique, wait_for, wait_for_sync

pytestmark = pytest.mark.root

DNS_IP = "10.96.0.10"  # the --cluster-dns of private_node's kubelet
SERVICES, DEPLOYMENTS, STATEFULSETS = res("services"), res("deployments"), res("statefulsets")

# busybox httpd serving the pod's hostname (= pod name), ready while /www/ready exists
HTTPD = "mkdir -p /www && hostname > /www/index.html && touch /www/ready && exec httpd -f -p 8080 -h /www"
READINESS = {"exec": {"command": ["test", "-f", "/www/ready"]}, "periodSeconds": 1, "failureThreshold": 1}


@dataclass
class Services:
    node: Node
    table: str
    dns_port: int  # the DNS server also listens on 127.0.0.1:dns_port, for the host's own queries


@pytest.fixture(scope="module")
def services(etcd: Etcd) -> Iterator[Services]:
    with private_node(etcd) as node:
        table = f"pkube-t-{unique('svc').split('-')[1][:8]}"
        env = {**os.environ, **(node.env or {})}
        # pods reach ClusterIPs through their gateway; the DNAT'ed packet is then routed back out of the bridge
        # (the kubelet creates its bridge at startup, possibly just after the Node turned Ready)
        forwarding = Path(f"/proc/sys/net/ipv4/conf/{node.runtime_config().bridge}/forwarding")
        wait_for_sync(forwarding.exists, timeout=30, interval=0.1, message="the kubelet's bridge")
        forwarding.write_text("1\n")
        metrics, dns_port = free_port(), free_port()
        route_localnet = ROUTE_LOCALNET.read_text()
        proxy = subprocess.Popen(
            [sys.executable, "-m", "launcher", "proxy", "--kubeconfig", node.api.kubeconfig, "--table", table,
             "--node-name", node.name, "--node-ip", "127.0.0.1", "--metrics-bind-address", f"127.0.0.1:{metrics}"],
            cwd=ROOT, stdout=open(node.tmp / "proxy.log", "wb"), stderr=subprocess.STDOUT, env=env)
        # upstream: a loopback port nobody serves, so no query ever leaves the machine
        dns = subprocess.Popen(
            [sys.executable, "-m", "launcher", "dns", "--kubeconfig", node.api.kubeconfig, "--listen", f"{DNS_IP}:53",
             "--listen", f"127.0.0.1:{dns_port}", "--upstream", f"127.0.0.1:{free_port()}",
             "--forward-timeout", "0.5s"],
            cwd=ROOT, stdout=open(node.tmp / "dns.log", "wb"), stderr=subprocess.STDOUT, env=env)
        try:
            def up() -> bool:
                for name, p in (("proxy", proxy), ("dns", dns)):
                    if p.poll() is not None:
                        raise AssertionError(f"{name} exited: {(node.tmp / f'{name}.log').read_text()[-3000:]}")
                # NXDOMAIN has no answers either; a reply at all means the server is serving
                try:
                    DNSRecord.question("x.default.svc.cluster.local").send("127.0.0.1", dns_port, timeout=0.5)
                except OSError:
                    return False
                return subprocess.run(["nft", "list", "table", "ip", table], capture_output=True).returncode == 0
            wait_for_sync(up, timeout=30, message="proxy table and DNS server up")
            yield Services(node, table, dns_port)
        finally:
            _stop(dns)
            _stop(proxy)
            cleanup_proxy(table)
            assert_route_localnet_restored(route_localnet)


@pytest.fixture
async def kc(services: Services) -> AsyncIterator[Client]:
    c = services.node.client()
    yield c
    await c.close()


@pytest.fixture
async def ns(kc: Client) -> AsyncIterator[str]:
    async with pod_namespace(kc, "ns") as name:
        yield name
    for svc in (await kc.list(SERVICES, name)).get("items") or []:
        await kc.delete(SERVICES, svc["metadata"]["name"], name)


def service(name: str, selector: dict[str, str], headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def httpd_pod_template(labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [ctr("httpd", HTTPD, readinessProbe=READINESS)]}}


def httpd_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    template = httpd_pod_template(labels)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **template["metadata"]},
            "spec": template["spec"]}


async def ready_pods(c: Client, ns: str, label: str, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        items = (await c.list(PODS, ns, label_selector=label)).get("items") or []
        ok = [p for p in items if running(p) and cond(p, "Ready") == "True"]
        return ok if len(ok) == count else None
    found: list[dict[str, Any]] = await wait_for(check, 60, 0.2, message=f"{count} ready pods {label}")
    return found


async def client_pod(c: Client, ns: str) -> dict[str, Any]:
    await c.create(PODS, pod("client", ctr("sh", "exec sleep 3600"), terminationGracePeriodSeconds=1), ns)
    return await wait_pod(c, ns, "client", running, 60, "client pod running")


async def get(node: Node, p: dict[str, Any], container: str, url: str) -> str | None:
    """The body of an HTTP GET run inside the pod (busybox wget), or None when it fails. No `wget -T`: busybox
    1.35 (Debian's busybox-static) segfaults with it on any URL, on the host as well; the exec timeout bounds it."""
    try:
        r = await exec_in(node, p, container, ["wget", "-q", "-O-", url], timeout=8)
    except ExecTimeout:  # e.g. a connection to an endpoint that just went away: poll again
        return None
    return r.stdout.decode().strip() if r.exit_code == 0 else None


# Runs "$@" in the pod and prints how long it took in centiseconds (busybox's date has no %N; /proc/uptime does).
TIMED = ('read s _ </proc/uptime; "$@"; rc=$?; read e _ </proc/uptime; '
         'echo "took=$(( ${e%.*}${e#*.} - ${s%.*}${s#*.} ))"; exit $rc')
# Slower than this, a query was lost and resent: busybox nslookup resends after 2.5 s, glibc (wget) after 5 s.
NSLOOKUP_RESEND, GLIBC_RESEND = 2.5, 5.0


async def timed(node: Node, p: dict[str, Any], container: str, cmd: list[str]) -> tuple[int, str, float]:
    """(exit code, output, seconds) of `cmd` in the pod, timed inside the pod (exec's own latency left out)."""
    r = await exec_in(node, p, container, ["sh", "-c", TIMED, "timed", *cmd], timeout=30)
    out, _, took = r.stdout.decode().rpartition("took=")
    return r.exit_code, out + r.stderr.decode(), int(took) / 100


async def dns_answers(services: Services, name: str, ip: str) -> None:
    """Wait until the DNS server, asked from the host, resolves `name` to `ip` (its informers saw the objects)."""
    def answered() -> bool:
        try:
            reply = DNSRecord.parse(DNSRecord.question(name).send("127.0.0.1", services.dns_port, timeout=0.5))
        except OSError:
            return False
        return any(str(rr.rdata) == ip for rr in reply.rr if rr.rtype == QTYPE.A)

    async def check() -> bool:
        return await asyncio.to_thread(answered)
    await wait_for(check, 20, 0.1, message=f"the DNS server resolves {name} to {ip}")


async def test_wget_service_by_short_and_full_name(services: Services, kc: Client, ns: str) -> None:
    node = services.node
    await kc.create(DEPLOYMENTS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": httpd_pod_template({"app": "web"})}}, ns)
    await kc.create(SERVICES, service("web", {"app": "web"}), ns)
    names = {p["metadata"]["name"] for p in await ready_pods(kc, ns, "app=web", 2)}
    client = await client_pod(kc, ns)
    cluster_ip = (await kc.get(SERVICES, "web", ns))["spec"]["clusterIP"]

    async def body(url: str) -> str | None:
        got = await get(node, client, "sh", url)
        return got if got in names else None
    # the new Service reaches the proxy's rules and the DNS server's zone on their own time: wait for both
    # (by address, and by asking the server from the host), then each lookup by name from the pod must work at once
    await wait_for(lambda: body(f"http://{cluster_ip}"), 30, 0.2, message="the proxy serves the new Service")
    await dns_answers(services, f"web.{ns}.svc.cluster.local", cluster_ip)
    for url in ("http://web", f"http://web.{ns}.svc.cluster.local"):
        code, out, took = await timed(node, client, "sh", ["wget", "-q", "-O-", url])
        assert code == 0 and out.strip() in names, f"wget {url} from a pod: {out}"
        assert took < GLIBC_RESEND, f"wget {url} took {took:.2f}s: a DNS query was lost and resent"
    # both replicas answer through the ClusterIP
    seen = set()
    for _ in range(40):
        seen.add(await body("http://web"))
        if seen >= names:
            break
    assert seen >= names, f"replies came from {seen}, pods are {names}"


async def test_nslookup_statefulset_pod_stable_name(services: Services, kc: Client, ns: str) -> None:
    node = services.node
    await kc.create(SERVICES, service("db", {"app": "db"}, headless=True), ns)
    await kc.create(STATEFULSETS, {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": httpd_pod_template({"app": "db"})}}, ns)
    [db] = await ready_pods(kc, ns, "app=db", 1)
    assert db["metadata"]["name"] == "db-0"
    ip = db["status"]["podIP"]
    client = await client_pod(kc, ns)
    stable = f"db-0.db.{ns}.svc.cluster.local"
    await dns_answers(services, stable, ip)
    code, out, took = await timed(node, client, "sh", ["nslookup", stable])
    assert code == 0 and ip in out and stable in out, out
    assert took < NSLOOKUP_RESEND, f"nslookup {stable} took {took:.2f}s: a query was lost and resent"


async def test_pod_reaches_itself_through_its_service(services: Services, kc: Client, ns: str) -> None:
    node = services.node
    await kc.create(PODS, httpd_pod("solo", {"app": "solo"}), ns)
    # not named like the pod: its own hostname resolves to its pod IP through /etc/hosts, bypassing the Service
    await kc.create(SERVICES, service("loop", {"app": "solo"}), ns)
    [solo] = await ready_pods(kc, ns, "app=solo", 1)
    # by address: this checks the proxy's hairpin path, not DNS (the name is covered by the test above)
    url = f"http://{(await kc.get(SERVICES, 'loop', ns))['spec']['clusterIP']}"

    async def hairpin() -> str | None:
        got = await get(node, solo, "httpd", url)
        return got if got == "solo" else None
    await wait_for(hairpin, 30, 0.2, message="a pod reaches itself via its own Service (hairpin)")


async def test_pod_failing_readiness_gets_no_traffic(services: Services, kc: Client, ns: str) -> None:
    node = services.node
    for name in ("a", "b"):
        await kc.create(PODS, httpd_pod(name, {"app": "rw"}), ns)
    await kc.create(SERVICES, service("rw", {"app": "rw"}), ns)
    pods = {p["metadata"]["name"]: p for p in await ready_pods(kc, ns, "app=rw", 2)}
    client = await client_pod(kc, ns)
    url = f"http://{(await kc.get(SERVICES, 'rw', ns))['spec']['clusterIP']}"  # the proxy's part, without DNS

    async def answered_by(who: str) -> bool:
        return await get(node, client, "sh", url) == who
    await wait_for(lambda: answered_by("a"), 30, 0.1, message="pod a serves the Service")

    assert (await exec_in(node, pods["a"], "httpd", ["rm", "/www/ready"])).exit_code == 0
    await wait_pod(kc, ns, "a", lambda p: cond(p, "Ready") == "False", 20, "pod a not ready")
    # within a few seconds the proxy drops a; from then on every request lands on b
    await wait_for(lambda: answered_by("b"), 30, 0.1, message="pod b serves the Service")

    async def only_b() -> bool:
        replies = [await get(node, client, "sh", url) for _ in range(10)]
        return set(replies) - {None} == {"b"}  # a failed request (None) is no traffic to a either
    await wait_for(only_b, 30, 0.2, message="no request reaches the unready pod a")
    # and it is still serving: only the Service stopped sending it traffic
    async def a_serves() -> bool:
        return await get(node, client, "sh", f"http://{pods['a']['status']['podIP']}:8080") == "a"
    await wait_for(a_serves, 30, 0.2, message="the unready pod a still answers on its own IP")


# LOOPS shells in the pod run busybox nslookups (A and AAAA written back to back from one socket, the pattern of
# the conntrack insert race) until /tmp/stop exists (at most 120 s), printing each one's time in centiseconds or "fail".
LOOPS = 4
STORM = ('one() { read end _ </proc/uptime; end=$(( ${end%.*} + 120 )); while [ ! -e /tmp/stop ]; do '
         'read s _ </proc/uptime; [ ${s%.*} -lt $end ] || break; out=$(nslookup "$1" 2>&1); read e _ </proc/uptime; '
         'case "$out" in *"$2"*) echo "$(( ${e%.*}${e#*.} - ${s%.*}${s#*.} ))";; *) echo fail;; esac; done; }; '
         f'rm -f /tmp/stop; for j in {" ".join(map(str, range(LOOPS)))}; do one "$1" "$2" & done; wait')
CHURN_ROUNDS, CHURN_PODS = 3, 4


def conntrack_stat(name: str) -> int:
    """A `conntrack -S` counter summed over CPUs (of the host's network namespace, where the DNS server is)."""
    out = subprocess.run(["conntrack", "-S"], capture_output=True, text=True, check=True).stdout
    return sum(int(field.split("=")[1]) for field in out.split() if field.startswith(f"{name}="))


def dns_flows(pod_ip: str) -> list[str]:
    """The host's conntrack entries for DNS queries from this pod to the cluster DNS address."""
    p = subprocess.run(["conntrack", "-L", "-p", "udp", "-s", pod_ip, "-d", DNS_IP, "--dport", "53"],
                       capture_output=True, text=True)
    return [line for line in p.stdout.splitlines() if line.strip()]


@contextmanager
def cpu_load(workers: int, seconds: float) -> Iterator[None]:
    """Busy processes on the host for at most `seconds` (they stop themselves; stopped by PID on exit anyway)."""
    burn = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(workers)]
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


async def churn_pods(kc: Client, ns: str, bridge: str) -> set[str]:
    """CHURN_ROUNDS times: CHURN_PODS pods started, then deleted until gone; the bridge's MACs seen meanwhile."""
    macs = {Path(f"/sys/class/net/{bridge}/address").read_text().strip()}
    for r in range(CHURN_ROUNDS):
        names = [f"churn-{r}-{i}" for i in range(CHURN_PODS)]
        for name in names:
            await kc.create(PODS, pod(name, ctr("sh", "exec sleep 3600"), terminationGracePeriodSeconds=0), ns)
        for name in names:
            await wait_pod(kc, ns, name, running, 60, f"{name} running")
        macs.add(Path(f"/sys/class/net/{bridge}/address").read_text().strip())
        for name in names:
            await kc.delete(PODS, name, ns)

        async def gone() -> bool:
            items = (await kc.list(PODS, ns)).get("items") or []
            return not any(p["metadata"]["name"] in names for p in items)
        await wait_for(gone, 60, 0.2, message=f"churn round {r}'s pods gone")
        macs.add(Path(f"/sys/class/net/{bridge}/address").read_text().strip())
    return macs


async def test_dns_lookups_from_a_pod_lose_nothing_under_load_and_pod_churn(
        services: Services, kc: Client, ns: str) -> None:
    """Lookups from a pod while the host is busy and other pods come and go. Two causes of lost queries are ruled
    out: the parallel A/AAAA conntrack race (the DNS server's NOTRACK rules: pod queries make no conntrack entry),
    and the node bridge's MAC moving to another pod's veth when the one holding it goes (the kubelet gives the
    bridge a fixed MAC: pods' ARP entries for their gateway stay right)."""
    node = services.node
    await kc.create(SERVICES, service("dnsload", {"app": "dnsload"}), ns)
    cluster_ip = (await kc.get(SERVICES, "dnsload", ns))["spec"]["clusterIP"]
    name = f"dnsload.{ns}.svc.cluster.local"
    await dns_answers(services, name, cluster_ip)
    client = await client_pod(kc, ns)
    failed_before = conntrack_stat("insert_failed")
    with cpu_load(2, 120):
        storm = asyncio.ensure_future(
            exec_in(node, client, "sh", ["sh", "-c", STORM, "storm", name, cluster_ip], timeout=150))
        try:
            macs = await churn_pods(kc, ns, node.runtime_config().bridge)
        finally:
            await exec_in(node, client, "sh", ["touch", "/tmp/stop"])
        r = await storm
        flows = dns_flows(client["status"]["podIP"])  # UDP entries live 30 s: the storm's would all be here
    results = r.stdout.decode().split()
    times = sorted(int(t) / 100 for t in results if t != "fail")
    resent = [t for t in times if t >= NSLOOKUP_RESEND]
    print(f"{len(results)} lookups under load and pod churn: {results.count('fail')} failed, {len(resent)} resent, "
          f"slowest {times[-3:]} s; bridge MACs {sorted(macs)}; "
          f"conntrack insert_failed +{conntrack_stat('insert_failed') - failed_before} (whole host)")
    assert len(results) >= 100, r.stdout.decode() + r.stderr.decode()
    assert flows == [], f"pod DNS queries are tracked by conntrack: {flows[:3]}"
    assert len(macs) == 1, f"the node bridge's MAC changed while pods came and went: {sorted(macs)}"
    assert results.count("fail") == 0 and not resent, \
        f"{results.count('fail')} lookups failed, {len(resent)} lost a query and waited for the resend: {resent}"
