"""Pod network namespaces on a test bridge, the real `pkube proxy` as a process, and probes of what it programs."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


from proxy import nft
from proxy.localnet import ROUTE_LOCALNET
from tests.support.controlplane import ROOT, _stop
from tests.util import wait_for_sync


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@dataclass
class Pod:
    name: str
    ip: str
    port: int
    netns: str
    httpd: subprocess.Popen[bytes]


@dataclass
class PodNet:
    bridge: str
    gateway: str  # the bridge's address: a local address of this host we created, used as the "node IP"
    prefix: str
    tmp: str
    pods: list[Pod] = field(default_factory=list)
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add_pod(self, name: str, port: int = 8080) -> Pod:
        index = len(self.pods) + 2
        ns = f"{self.bridge}-{index}"
        veth = f"{self.bridge}v{index}"
        ip = f"{self.prefix}.{index}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", veth, "master", self.bridge, "up")
        # As the kubelet does: a pod's traffic may come back out of its own bridge port (hairpin via a Service).
        sh("ip", "link", "set", veth, "type", "bridge_slave", "hairpin", "on")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", self.gateway)
        docroot = Path(self.tmp, name)
        docroot.mkdir()
        (docroot / "index.html").write_text(name)
        httpd = subprocess.Popen(["ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", str(port),
                                  "-h", str(docroot)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pod = Pod(name, ip, port, ns, httpd)
        self.pods.append(pod)
        wait_for_sync(lambda: fetch(f"http://{ip}:{port}/") == name, message=f"httpd in {ns}")
        return pod

    def _in_pod(self, pod: Pod, *args: str) -> list[str]:
        return ["ip", "netns", "exec", pod.netns, sys.executable, "-m", "tests.proxy.servers", *args]

    def who_am_i_server(self, pod: Pod, port: int) -> None:
        """An HTTP server in the pod answering "<pod name> <client address>": shows whether we masqueraded."""
        self.extra.append(subprocess.Popen(self._in_pod(pod, "who-am-i", str(port), pod.name), cwd=ROOT))
        wait_for_sync(lambda: (fetch(f"http://{pod.ip}:{port}/") or "").startswith(pod.name),
                      message=f"who-am-i server in {pod.netns}")

    def udp_echo(self, pod: Pod, port: int) -> None:
        """A UDP server in the pod that answers every datagram with the pod's name."""
        self.extra.append(subprocess.Popen(self._in_pod(pod, "udp-echo", str(port), pod.name), cwd=ROOT))

    def fetch_from(self, pod: Pod, url: str) -> str | None:
        """The body of a GET from inside the pod's network namespace, or None when it fails."""
        out = subprocess.run(self._in_pod(pod, "fetch", url), cwd=ROOT, capture_output=True, text=True, timeout=30)
        return out.stdout if out.returncode == 0 else None

    def close(self) -> None:
        for proc in self.extra:
            _stop(proc)  # type: ignore[arg-type]
        for pod in self.pods:
            _stop(pod.httpd)  # type: ignore[arg-type]
            subprocess.run(["ip", "netns", "del", pod.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def fetch(url: str, timeout: float = 2.0) -> str | None:
    """The body of a GET, or None when the connection fails."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return None


def fetch_text(url: str) -> str | None:
    """The body of a GET without its surrounding whitespace, or None when the connection fails."""
    body = fetch(url)
    return body.strip() if body is not None else None


def connect_error(host: str, port: int, timeout: float = 5.0) -> tuple[type[BaseException] | None, float]:
    """(exception class or None, seconds) of a plain TCP connect."""
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None, time.monotonic() - started
    except OSError as e:
        return type(e), time.monotonic() - started


@dataclass
class ProxyProcess:
    table: str
    node_name: str
    node_ip: str
    metrics_port: int
    kubeconfig: str
    log: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "launcher", "proxy", "--kubeconfig", self.kubeconfig, "--table", self.table,
             "--node-name", self.node_name, "--node-ip", self.node_ip,
             "--metrics-bind-address", f"127.0.0.1:{self.metrics_port}"],
            cwd=ROOT, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        wait_for_sync(self._healthy, timeout=30, message="proxy healthy")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"proxy exited {self.proc.returncode}: {Path(self.log).read_text()[-3000:]}")
        return fetch(f"http://127.0.0.1:{self.metrics_port}/healthz", 1) == "ok"

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def ruleset(self) -> str:
        return nft.list_table(self.table)

    def metrics(self) -> str:
        return fetch(f"http://127.0.0.1:{self.metrics_port}/metrics") or ""


def cleanup_proxy(table: str) -> None:
    """`pkube proxy --cleanup` (what `cluster down` runs): the table goes, and route_localnet is given back."""
    out = subprocess.run([sys.executable, "-m", "launcher", "proxy", "--cleanup", "--table", table],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert nft.list_table(table) == ""


def assert_route_localnet_restored(before: str) -> None:
    # Another pkube proxy table on this machine (a local cluster, another test) still needs the setting.
    if not nft.proxy_tables():
        assert ROUTE_LOCALNET.read_text() == before, "route_localnet not restored"
