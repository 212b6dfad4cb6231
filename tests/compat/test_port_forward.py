"""`kubectl port-forward` (v1.32: SPDY/3.1 tunnelled in a WebSocket) and the official Python client's port
forwarding (v4 channels), through a TLS apiserver to a real kubelet and a busybox httpd in a runc pod."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
from typing import AsyncIterator, Iterator

import pytest
from kubernetes import client as k8s
from kubernetes import config
from kubernetes.stream import portforward

from pklib.client import Client
from tests.support.controlplane import Etcd
from tests.support.kubectl import Stream
from tests.support.node import Node, pod_namespace, private_node, res
from tests.support.portforward import BIG, FORWARDING, http_get, refused, start_site, start_web
from tests.util import wait_for_sync

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def tls_node(etcd: Etcd) -> Iterator[Node]:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: the compatibility suite needs the real kubectl v1.32 on PATH")
    with private_node(etcd, tls=True) as n:
        yield n


@pytest.fixture
async def kc(tls_node: Node) -> AsyncIterator[Client]:
    c = Client.from_kubeconfig(tls_node.api.kubeconfig)
    yield c
    await c.close()


@pytest.fixture
async def pns(kc: Client) -> AsyncIterator[str]:
    async with pod_namespace(kc, "kpf") as name:
        yield name


@pytest.fixture
def kpf(tls_node: Node, pns: str) -> Iterator[object]:
    """Start `kubectl port-forward` processes; all are stopped afterwards."""
    started: list[Stream] = []

    def start(*args: str) -> Stream:
        proc = subprocess.Popen(["kubectl", "--kubeconfig", tls_node.api.kubeconfig, "-n", pns, "port-forward", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(Stream(proc))
        return started[-1]
    yield start
    for s in started:
        s.close()


def local_ports(stream: Stream, count: int) -> dict[int, int]:
    """remote -> local port from kubectl's "Forwarding from 127.0.0.1:L -> R" lines."""
    ports: dict[int, int] = {}
    while len(ports) < count:
        m = FORWARDING.match(stream.wait_line(lambda line: bool(FORWARDING.match(line)), timeout=30))
        assert m is not None
        if m.group(1) == "127.0.0.1":
            ports[int(m.group(3))] = int(m.group(2))
    return ports


def half_closed_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


async def test_kubectl_forwards_several_ports_and_concurrent_connections(kc: Client, pns: str, kpf: object) -> None:
    await start_web(kc, pns, "web")
    pf = kpf("pod/web", ":80", ":8081")  # type: ignore[operator]
    ports = local_ports(pf, 2)
    assert (await http_get(ports[80])).strip() == "hello-from-web"
    # the server bound to the pod's 127.0.0.1 only
    assert (await http_get(ports[8081])).strip() == "loopback-only"
    # many connections at once share kubectl's one SPDY connection; every body arrives whole
    bodies = await asyncio.gather(*(http_get(ports[80], "/big" if i % 2 else "/") for i in range(10)))
    assert bodies == [BIG if i % 2 else "hello-from-web\n" for i in range(10)]
    # a client that half-closes after its request still gets the whole answer (SPDY FIN → shutdown in the pod)
    answer = await asyncio.to_thread(half_closed_get, ports[80])
    assert answer.startswith(b"HTTP/1.") and answer.endswith(b"\r\n\r\nhello-from-web\n")
    # Ctrl-C: kubectl ends with 0 and its listeners are gone
    pf.proc.send_signal(signal.SIGINT)
    assert pf.proc.wait(15) == 0
    assert refused(ports[80]) and refused(ports[8081])


async def test_kubectl_plain_spdy_upgrade(tls_node: Node, kc: Client, pns: str) -> None:
    """Without the WebSocket tunnel, client-go upgrades the HTTP connection to SPDY/3.1 itself."""
    await start_web(kc, pns, "web")
    proc = subprocess.Popen(["kubectl", "--kubeconfig", tls_node.api.kubeconfig, "-n", pns, "port-forward", "pod/web",
                             ":80", "-v=6"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"})
    pf = Stream(proc)
    try:
        port = local_ports(pf, 1)[80]
        assert any("portforward 101 Switching Protocols" in line and "POST" in line for line in pf.seen), pf.seen
        bodies = await asyncio.gather(*(http_get(port, "/big" if i % 2 else "/") for i in range(6)))
        assert bodies == [BIG if i % 2 else "hello-from-web\n" for i in range(6)]
        answer = await asyncio.to_thread(half_closed_get, port)
        assert answer.endswith(b"\r\n\r\nhello-from-web\n")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        pf.close()


async def test_kubectl_service_and_deployment_with_address(kc: Client, pns: str, kpf: object) -> None:
    await start_web(kc, pns, "web-a", labels={"app": "web"})
    await kc.create(res("services"), {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                      "spec": {"selector": {"app": "web"},
                                               "ports": [{"name": "www", "port": 8000, "targetPort": "http"}]}}, pns)
    # kubectl translates service port 8000 to the pod's named port http (80)
    pf = kpf("svc/web", "0:8000", "--address", "127.0.0.1")  # type: ignore[operator]
    assert (await http_get(local_ports(pf, 1)[80])).strip() == "hello-from-web-a"
    await start_site(kc, pns)
    pf = kpf("deploy/site", ":80", "--pod-running-timeout", "60s")  # type: ignore[operator]
    assert (await http_get(local_ports(pf, 1)[80], timeout=60)).startswith("hello-from-site-")


async def test_kubectl_closed_remote_port(kc: Client, pns: str, kpf: object) -> None:
    await start_web(kc, pns, "web")
    pf = kpf("pod/web", ":9")  # type: ignore[operator]
    port = local_ports(pf, 1)[9]
    with pytest.raises(AssertionError):
        await http_get(port, timeout=2)
    # as against Kubernetes, kubectl reports the kubelet's error and gives up the forwarding
    assert pf.proc.wait(20) == 1
    assert pf.proc.stderr is not None
    err = pf.proc.stderr.read()
    assert re.search(rf"error forwarding port 9 to pod {pns}/web: failed to connect to localhost:9 inside the "
                     r"pod's network namespace: connection refused", err), err
    assert "error: lost connection to pod" in err


async def test_kubectl_errors_before_forwarding(tls_node: Node, kc: Client, pns: str) -> None:
    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", "--kubeconfig", tls_node.api.kubeconfig, "-n", pns, "port-forward", *args],
                              capture_output=True, text=True, timeout=30)
    r = kubectl("pod/ghost", "8080:80")
    assert r.returncode == 1 and r.stderr.strip() == f'Error from server (NotFound): pods "ghost" not found'
    from tests.support.node import PODS, ctr, pod
    await kc.create(PODS, pod("never", ctr("c", "sleep 1", image="pkube.local/nope:1")), pns)
    r = kubectl("pod/never", "8080:80")
    assert r.returncode == 1 and "unable to forward port because pod is not running" in r.stderr


def test_python_client_port_forward(tls_node: Node, kc: Client, pns: str) -> None:
    asyncio.run(_start(tls_node, pns))
    api = config.new_client_from_config(config_file=tls_node.api.kubeconfig)
    try:
        core = k8s.CoreV1Api(api)

        def fetch() -> dict[int, bytes]:
            """One port forward of two ports (channels 0/1 and 2/3 of one WebSocket), a request on each. The v4
            channels cannot say that one port's connection ended (only the socket's close does, once all ended),
            so each answer is read until its body is complete."""
            pf = portforward(core.connect_get_namespaced_pod_portforward, "web", pns, ports="80,8081")
            answers = {}
            try:
                for port, body in ((80, b"hello-from-web\n"), (8081, b"loopback-only\n")):
                    sock = pf.socket(port)
                    sock.settimeout(5)
                    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    data = b""
                    while not data.endswith(b"\r\n\r\n" + body) and (chunk := sock.recv(65536)):
                        data += chunk
                    answers[port] = data
            except OSError:
                return {}  # the pod's httpd is not listening yet: try again
            finally:
                pf.close()
            return answers
        answers = wait_for_sync(lambda: (a := fetch()) and all(b"200 OK" in v for v in a.values()) and a, 30, 0.2,
                                message="answers through the Python client's port forward")
        assert answers[80].startswith(b"HTTP/1.") and answers[80].endswith(b"\r\n\r\nhello-from-web\n")
        assert answers[8081].endswith(b"\r\n\r\nloopback-only\n")
    finally:
        api.close()


async def _start(node: Node, ns: str) -> None:
    c = Client.from_kubeconfig(node.api.kubeconfig)
    try:
        await start_web(c, ns, "web")
    finally:
        await c.close()
