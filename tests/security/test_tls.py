"""Issue 13, defects 3, 5 and the kubeconfig item of 8: every hop is authenticated, secrets are private from birth.

- etcd serves TLS and requires a client certificate of the cluster CA: a local user cannot write a Pod straight
  into it (plain HTTP, HTTPS without a certificate, gRPC without one: all refused), the apiserver still can.
- the kubelet API is TLS only and lets in only the API server's client certificate: no exec without it.
- the API server never sends a user's token to the address a Node's status names.
- tokens.csv, kubeconfigs and private keys are created 0600 (never readable by others, not even for an instant).
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import aetcd
import aiohttp
import pytest
import yaml

from pkctl.cluster import home as cluster_home
from pkctl.cluster import kubemerge, pki
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.controlplane import ApiServer, _stop, make_test_pki, start_apiserver
from tests.support.node import Node, ctr, exec_in, pod, running, wait_pod
from tests.util import free_port, unique

PODS, NODES, CONFIGMAPS = lookup("pods"), lookup("nodes"), lookup("configmaps")
assert PODS and NODES and CONFIGMAPS


# -- etcd ----------------------------------------------------------------------------------------------------------

class TlsEtcd:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.pki = make_test_pki(str(tmp))
        self.port, peer = free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        p, peer_url = self.pki, f"https://127.0.0.1:{peer}"
        self.log = tmp / "etcd.log"
        self.proc = subprocess.Popen(
            ["etcd", "--name", "pkt-tls", "--data-dir", str(tmp / "etcd"),
             "--cert-file", str(p.cert("etcd-server")), "--key-file", str(p.key("etcd-server")),
             "--client-cert-auth", "--trusted-ca-file", str(p.ca_cert),
             "--peer-cert-file", str(p.cert("etcd-peer")), "--peer-key-file", str(p.key("etcd-peer")),
             "--peer-client-cert-auth", "--peer-trusted-ca-file", str(p.ca_cert),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"pkt-tls={peer_url}", "--log-level", "warn"],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)

    def context(self, cert: str | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        if cert:
            ctx.load_cert_chain(self.pki.cert(cert), self.pki.key(cert))
        return ctx

    def get(self, url: str, ctx: ssl.SSLContext | None, data: bytes | None = None) -> bytes:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5, context=ctx) as r:
            body: bytes = r.read()
            return body

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if b'"true"' in self.get(self.url + "/health", self.context("etcd-healthcheck-client")):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"TLS etcd not healthy:\n{self.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def tls_etcd() -> Iterator[TlsEtcd]:
    if not shutil.which("etcd"):
        pytest.fail("etcd is not installed: run ./scripts/install-deps.sh")
    tmp = Path(tempfile.mkdtemp(prefix="pkt-tls-etcd-"))
    e = TlsEtcd(tmp)
    try:
        e.wait_healthy()
        yield e
    finally:
        _stop(e.proc)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_apiserver(tls_etcd: TlsEtcd) -> Iterator[tuple[ApiServer, str]]:
    prefix = "/" + unique("tlsreg")
    p = tls_etcd.pki
    api = start_apiserver(str(tls_etcd.tmp), tls_etcd.url, [
        "--etcd-prefix", prefix, "--etcd-cafile", str(p.ca_cert),
        "--etcd-certfile", str(p.cert("apiserver-etcd-client")), "--etcd-keyfile", str(p.key("apiserver-etcd-client"))])
    yield api, prefix
    _stop(api.proc)


async def test_apiserver_works_against_etcd_with_client_certificates(tls_apiserver: tuple[ApiServer, str]) -> None:
    api, _ = tls_apiserver
    async with Client(api.url, api.token) as c:
        name = unique("cm")
        await c.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                                    "data": {"k": "v1"}}, "default")
        got = await c.get(CONFIGMAPS, name, "default")
        got["data"]["k"] = "v2"
        await c.update(CONFIGMAPS, got)
        assert (await c.get(CONFIGMAPS, name, "default"))["data"] == {"k": "v2"}
        assert name in [i["metadata"]["name"] for i in (await c.list(CONFIGMAPS, "default"))["items"]]
        await c.delete(CONFIGMAPS, name, "default")
        with pytest.raises(ApiError) as e:
            await c.get(CONFIGMAPS, name, "default")
        assert e.value.code == 404


def _root_pod(name: str) -> bytes:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default",
                       "uid": unique("uid")}, "spec": {"nodeName": "any", "hostPID": True, "containers": [
                           {"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]}}).encode()


async def test_a_client_without_a_certificate_cannot_write_a_pod_into_etcd(
        tls_etcd: TlsEtcd, tls_apiserver: tuple[ApiServer, str]) -> None:
    api, prefix = tls_apiserver
    name = unique("injected")
    key = f"{prefix}/core/pods/default/{name}".encode()
    put = json.dumps({"key": base64.b64encode(key).decode(), "value": base64.b64encode(_root_pod(name)).decode()})
    # etcd's JSON gateway, as curl would use it: plain HTTP, then HTTPS without a client certificate
    for url, ctx in ((f"http://127.0.0.1:{tls_etcd.port}/v3/kv/put", None),
                     (f"{tls_etcd.url}/v3/kv/put", tls_etcd.context(None))):
        with pytest.raises(OSError):  # refused (HTTPError is an OSError too: no status may count as success)
            tls_etcd.get(url, ctx, put.encode())
    # gRPC without TLS, as an etcd client library would
    plain = aetcd.Client(host="127.0.0.1", port=tls_etcd.port, timeout=5)
    try:
        with pytest.raises(Exception):
            await plain.put(key, _root_pod(name))
    finally:
        await plain.close()
    # nothing arrived: neither in etcd (asked with the apiserver's own certificate) nor as a Pod
    got = json.loads(tls_etcd.get(f"{tls_etcd.url}/v3/kv/range", tls_etcd.context("apiserver-etcd-client"),
                                  json.dumps({"key": base64.b64encode(key).decode()}).encode()))
    assert "kvs" not in got and int(got["count"] if "count" in got else 0) == 0
    async with Client(api.url, api.token) as c:
        with pytest.raises(ApiError) as e:
            await c.get(PODS, name, "default")
        assert e.value.code == 404
    # the same put with the apiserver's certificate works: the refusals above were about the certificate
    probe = f"{prefix}/pkt-probe/{name}".encode()
    ok = json.dumps({"key": base64.b64encode(probe).decode(), "value": base64.b64encode(b"x").decode()})
    assert b"header" in tls_etcd.get(f"{tls_etcd.url}/v3/kv/put", tls_etcd.context("apiserver-etcd-client"),
                                     ok.encode())


# -- kubelet -------------------------------------------------------------------------------------------------------

async def _exec(url: str, ctx: ssl.SSLContext | bool) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws:
            async for _ in ws:
                pass


@pytest.mark.root
async def test_kubelet_api_refuses_plain_http_and_callers_without_the_apiservers_certificate(
        node: Node, kc: Client, ns: str, tmp_path: Path) -> None:
    await kc.create(PODS, pod("target", ctr("c", "exec sleep 3600")), ns)
    p = await wait_pod(kc, ns, "target", running, what="target Running")
    path = f"127.0.0.1:{node.port}/exec/{ns}/target/c?command=touch&command=/tmp/pwned"
    # plain HTTP: the kubelet speaks TLS only
    with pytest.raises(aiohttp.ClientError):
        await _exec(f"http://{path}", False)
    # HTTPS without a client certificate, with a bearer token: 401
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=node.kubelet_tls(client_cert=None))) as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await s.ws_connect(f"https://{path}", protocols=("v4.channel.k8s.io",),
                               headers={"Authorization": f"Bearer {node.api.token}"})
        assert e.value.status == 401
    # a client certificate of another CA: the handshake fails
    other = pki.ensure(tmp_path / "other-pki", hostnames=[])
    foreign = node.kubelet_tls(client_cert=None)
    foreign.load_cert_chain(other.cert("apiserver-kubelet-client"), other.key("apiserver-kubelet-client"))
    with pytest.raises(aiohttp.ClientError) as failed:
        await _exec(f"https://{path}", foreign)
    assert not isinstance(failed.value, aiohttp.WSServerHandshakeError)  # refused before any HTTP
    # nothing ran: the file is not there; the API server's certificate does get in (so the test can fail)
    assert (await exec_in(node, p, "c", ["test", "-e", "/tmp/pwned"])).exit_code == 1
    await _exec(f"https://127.0.0.1:{node.port}/exec/{ns}/target/c?command=true&stdout=true", node.kubelet_tls())


class Listener:
    """A fake 'kubelet' on loopback that records every byte a caller sends it, and never answers."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65536), 2.0)
                if not data:
                    break
                self.received += data
        except (asyncio.TimeoutError, ConnectionError):
            pass
        writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    fake = Listener()
    fake.server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    yield fake
    fake.server.close()
    await fake.server.wait_closed()


@pytest.mark.root
async def test_a_user_token_never_goes_to_the_address_a_node_lists(node: Node, kc: Client, ns: str,
                                                                   listener: Listener) -> None:
    evil = unique("evil-node")
    await kc.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": evil},
                            "spec": {"unschedulable": True}})
    try:
        n = await kc.get(NODES, evil)
        n["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": listener.port}}}
        await kc.update_status(NODES, n)
        await kc.create(PODS, pod("bait", ctr("c", "sleep 1"), nodeName=evil), ns)
        url = f"{node.api.url}/api/v1/namespaces/{ns}/pods/bait/log"
        async with aiohttp.ClientSession() as s:
            async with s.get(url, headers={"Authorization": f"Bearer {node.api.token}"}) as r:
                body = await r.text()
                assert r.status >= 500 and "kubelet" in body, body  # the user sees why, as a Status
    finally:
        await kc.delete(NODES, evil)
    assert listener.connections >= 1  # the API server did call the listed address...
    received = bytes(listener.received)
    # ...and sent neither the user's token nor any Authorization header (a TLS ClientHello, nothing readable)
    assert node.api.token.encode() not in received and b"authorization" not in received.lower(), received[:300]


# -- private files (defect 8) --------------------------------------------------------------------------------------

def test_secret_files_are_created_private_whatever_the_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A later chmod would leave a window in which others could read the token: no chmod may be needed."""
    chmod = os.chmod

    def no_chmod(path: Any, mode: int, **kwargs: Any) -> None:
        if not os.path.isdir(path):
            raise AssertionError(f"chmod of {path} after it was written")
        chmod(path, mode, **kwargs)
    monkeypatch.setattr(os, "chmod", no_chmod)
    old = os.umask(0)
    try:
        home = cluster_home.Home(tmp_path / "h")
        home.prepare(None, default_home=False, tls=True)
        merged = tmp_path / "user" / ".kube" / "config"
        kubemerge.merge(merged, yaml.safe_load(home.kubeconfig.read_text()))
    finally:
        os.umask(old)
    private = [home.tokens_file, home.kubeconfig, merged, *sorted(home.pki.dir.glob("*.key"))]
    assert len(private) >= 9
    for f in private:
        assert oct(f.stat().st_mode & 0o777) == "0o600", f
    assert oct(home.root.stat().st_mode & 0o777) == "0o700"
