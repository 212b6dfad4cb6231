"""`pkctl port-forward` end to end: pkctl → apiserver pods/portforward → the real kubelet → a busybox httpd in a
runc pod, reached inside the pod's network namespace (also a server bound only to the pod's 127.0.0.1)."""
from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from typing import Any, AsyncIterator, Iterator

import aiohttp
import pytest

from pklib.client import Client
from tests.support.controlplane import ROOT, Etcd
from tests.support.kubectl import Stream
from tests.support.node import Node, pod_namespace, private_node, res
from tests.support.pkctl import run_pkctl
from tests.support.portforward import BIG, FORWARDING, http_get, refused, start_site, start_web

pytestmark = pytest.mark.root


def forwarded(stream: Stream, count: int = 1) -> dict[int, int]:
    """remote port -> local port from the first `count` 127.0.0.1 "Forwarding from" lines."""
    ports: dict[int, int] = {}
    while len(ports) < count:
        m = FORWARDING.match(stream.wait_line(lambda line: bool(FORWARDING.match(line)), timeout=30))
        assert m is not None
        if m.group(1) == "127.0.0.1":
            ports[int(m.group(3))] = int(m.group(2))
    return ports


@pytest.fixture(scope="module")
def pf_node(etcd: Etcd) -> Iterator[Node]:
    with private_node(etcd) as n:
        yield n


@pytest.fixture
async def kc(pf_node: Node) -> AsyncIterator[Client]:
    c = pf_node.client()
    yield c
    await c.close()


@pytest.fixture
async def pns(kc: Client) -> AsyncIterator[str]:
    async with pod_namespace(kc, "pf") as name:
        yield name


class PortForward:
    """A running `pkctl port-forward` whose output lines are read as they come."""

    def __init__(self, node: Node, ns: str, *args: str) -> None:
        proc = subprocess.Popen([sys.executable, "-m", "pkctl.main", "--kubeconfig", node.api.kubeconfig, "-n", ns,
                                 "port-forward", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        self.stream = Stream(proc)

    def stderr(self) -> str:
        assert self.stream.proc.stderr is not None
        return self.stream.proc.stderr.read()

    def close(self) -> None:
        self.stream.close()


@pytest.fixture
def forward(pf_node: Node, pns: str) -> Iterator[Any]:
    started: list[PortForward] = []

    def start(*args: str) -> PortForward:
        started.append(PortForward(pf_node, pns, *args))
        return started[-1]
    yield start
    for pf in started:
        pf.close()


async def test_forwards_pod_ports_including_loopback_only_server(kc: Client, pns: str, forward: Any) -> None:
    await start_web(kc, pns, "web")
    pf = forward("pod/web", ":80", "0:8081")
    ports = forwarded(pf.stream, 2)
    assert (await http_get(ports[80])).strip() == "hello-from-web"
    # 8081 listens on the pod's 127.0.0.1 only: reachable because the kubelet connects inside the pod netns
    assert (await http_get(ports[8081])).strip() == "loopback-only"
    # a larger body arrives whole and in order
    assert await http_get(ports[80], "/big") == BIG
    assert pf.stream.wait_line(lambda line: line.startswith("Handling connection"), timeout=5) == \
        f"Handling connection for {ports[80]}"


async def test_concurrent_connections(kc: Client, pns: str, forward: Any) -> None:
    await start_web(kc, pns, "web")
    pf = forward("web", ":80")
    port = forwarded(pf.stream)[80]
    await http_get(port)  # the httpd is up
    bodies = await asyncio.gather(*(http_get(port, "/big" if i % 2 else "/") for i in range(12)))
    assert bodies == [BIG if i % 2 else "hello-from-web\n" for i in range(12)]


async def test_closed_remote_port_is_a_clear_error_and_forwarding_goes_on(kc: Client, pns: str,
                                                                           forward: Any) -> None:
    await start_web(kc, pns, "web")
    pf = forward("pod/web", ":9", ":80")
    ports = forwarded(pf.stream, 2)
    await http_get(ports[80])
    with pytest.raises((aiohttp.ClientError, asyncio.TimeoutError)):
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{ports[9]}/", timeout=aiohttp.ClientTimeout(total=10)) as r:
                await r.read()
    # the other port still works, then pkctl ends on Ctrl-C and says why the first one failed
    assert (await http_get(ports[80])).strip() == "hello-from-web"
    pf.stream.proc.send_signal(signal.SIGINT)
    assert pf.stream.proc.wait(15) == 0
    err = pf.stderr()
    assert f"error: an error occurred forwarding {ports[9]} -> 9: error forwarding port 9 to pod {pns}/web: " \
           "failed to connect to localhost:9 inside the pod's network namespace: connection refused" in err, err


async def test_ctrl_c_exits_0_and_closes_the_listener(kc: Client, pns: str, forward: Any) -> None:
    await start_web(kc, pns, "web")
    pf = forward("pod/web", ":80", "--address", "127.0.0.1")
    port = forwarded(pf.stream)[80]
    await http_get(port)
    pf.stream.proc.send_signal(signal.SIGINT)
    assert pf.stream.proc.wait(15) == 0
    assert "Traceback" not in pf.stderr()
    assert refused(port)


async def test_service_and_deployment_targets(kc: Client, pns: str, forward: Any) -> None:
    await start_web(kc, pns, "web-a", labels={"app": "web"})
    await kc.create(res("services"), {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                      "spec": {"selector": {"app": "web"},
                                               "ports": [{"name": "www", "port": 8000, "targetPort": "http"}]}}, pns)
    # service port 8000 (by name) → the pod's named port http (80)
    pf = forward("svc/web", ":www")
    assert (await http_get(forwarded(pf.stream)[80])).strip() == "hello-from-web-a"
    await start_site(kc, pns)
    pf = forward("deploy/site", ":http")
    assert (await http_get(forwarded(pf.stream)[80], timeout=60)).startswith("hello-from-site-")


async def test_bad_input_is_one_line(pf_node: Node, kc: Client, pns: str) -> None:
    def pkctl(*args: str) -> subprocess.CompletedProcess[str]:
        return run_pkctl("--kubeconfig", pf_node.api.kubeconfig, "-n", pns, "port-forward", *args, timeout=30)
    r = pkctl("pod/ghost", "8080:80")
    assert r.returncode == 1 and r.stderr.strip() == 'Error from server (NotFound): pods "ghost" not found'
    for spec, message in [("80:abc:1", "error: invalid port format '80:abc:1'"),
                          ("x:80", "error: error parsing local port 'x': must be a number from 0 to 65535"),
                          ("8080:0", "error: remote port must be > 0")]:
        r = pkctl("pod/ghost", spec)
        assert (r.returncode, r.stderr.strip()) == (1, message)
    r = pkctl("pod/ghost")
    assert (r.returncode, r.stderr.strip()) == (1, "error: at least 1 PORT is required for port-forward")
    r = pkctl("pod/ghost", "80", "--address", "nope")
    assert (r.returncode, r.stderr.strip()) == (1, "error: nope is not a valid IP")
    await start_web(kc, pns, "web")
    r = pkctl("pod/web", ":ftp")
    assert (r.returncode, r.stderr.strip()) == (1, "error: Pod 'web' does not have a named port 'ftp'")
    r = pkctl("configmap/x", "80")
    assert r.returncode == 1 and "NotFound" in r.stderr
    with socket.socket() as busy:  # the local port is taken: nothing to forward from
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        r = pkctl("pod/web", f"{taken}:80", "--address", "127.0.0.1")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"Unable to listen on port {taken}: 127.0.0.1:{taken}: address already in use",
                                     f"error: unable to listen on any of the requested ports: {taken}:80"], r.stderr
