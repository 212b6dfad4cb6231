"""A real etcd and a real `pkube apiserver` process (token auth, optionally TLS with a test PKI)."""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

import pytest

from tests.util import free_port, unique

if TYPE_CHECKING:
    from pklib.client import Client

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Etcd:
    url: str
    data_dir: str
    proc: subprocess.Popen[bytes]


@dataclass
class ApiServer:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log_path: str
    kubeconfig: str
    # user name -> bearer token, for the identities given to start_apiserver (the admin's is `token`).
    tokens: dict[str, str] = field(default_factory=dict)


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, log: str, timeout: float = 30.0,
               headers: dict[str, str] | None = None, ca: bytes | None = None) -> None:
    deadline = time.monotonic() + timeout
    tls = ssl.create_default_context(cadata=ca.decode()) if ca else None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{Path(log).read_text()[-4000:]}")
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=1, context=tls) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not healthy after {timeout}s:\n{Path(log).read_text()[-4000:]}")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_etcd(tmp: str, quota_bytes: int = 2 * 1024**3) -> Etcd:
    if not shutil.which("etcd"):
        pytest.fail("etcd is not installed: run ./scripts/install-deps.sh")
    client, peer = free_port(), free_port()
    data = os.path.join(tmp, "etcd")
    log = os.path.join(tmp, "etcd.log")
    url = f"http://127.0.0.1:{client}"
    proc = subprocess.Popen(
        ["etcd", "--name", "pkt", "--data-dir", data,
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"pkt=http://127.0.0.1:{peer}",
         "--quota-backend-bytes", str(quota_bytes), "--log-level", "warn"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    _wait_http(url + "/health", proc, "etcd", log)
    return Etcd(url, data, proc)


def etcd_call(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """etcd's JSON gateway (`/v3/kv/range`, `/v3/maintenance/status`, ...) on a plain-HTTP test etcd:
    what the test sees of etcd without going through the apiserver under test."""
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def etcd_key(prefix: str, key: str) -> str:
    """The base64 etcd key of logical key `/registry/X` for an apiserver started with --etcd-prefix prefix."""
    return base64.b64encode((prefix + key.removeprefix("/registry")).encode()).decode()


def etcd_prefix(server: "ApiServer") -> str:
    args = list(server.proc.args)  # type: ignore[arg-type]
    return str(args[len(args) - 1 - args[::-1].index("--etcd-prefix") + 1])  # the last one wins


def make_test_pki(tmp: str) -> "Pki":  # noqa: F821
    """A CA and its certificates (pkctl/cluster/pki.py) for 127.0.0.1/localhost under tmp/pki (made once, then
    reused): the apiserver's serving and kubelet client certificates, a kubelet serving certificate, etcd's."""
    from pkctl.cluster import pki
    made = pki.ensure(Path(tmp) / "pki", hostnames=[])
    pki.ensure_kubelet(made.dir, "pkube-test-node", ["127.0.0.1"])
    return made


def ca_context(tmp: str) -> ssl.SSLContext:
    """A client context trusting make_test_pki's CA (what a test's HTTPS apiserver serves with)."""
    return ssl.create_default_context(cafile=str(make_test_pki(tmp).ca_cert))


@asynccontextmanager
async def scratch_namespace(c: Client, prefix: str) -> AsyncIterator[str]:
    """A fresh namespace for an API test, deleted after it (tests/support/node.pod_namespace for pods)."""
    from pklib.resources import NAMESPACES
    name = unique(prefix)
    await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        await c.delete(NAMESPACES, name)


def kubelet_client_flags(tmp: str) -> list[str]:
    """How an apiserver reaches kubelets whose certificates come from make_test_pki(tmp)."""
    pki = make_test_pki(tmp)
    return ["--kubelet-certificate-authority", str(pki.ca_cert),
            "--kubelet-client-certificate", str(pki.cert("apiserver-kubelet-client")),
            "--kubelet-client-key", str(pki.key("apiserver-kubelet-client"))]


def kubelet_serving_flags(tmp: str) -> list[str]:
    """A kubelet API served with make_test_pki(tmp)'s kubelet certificate, for its apiserver's client certificate."""
    pki = make_test_pki(tmp)
    return ["--tls-cert-file", str(pki.cert("kubelet")), "--tls-private-key-file", str(pki.key("kubelet")),
            "--client-ca-file", str(pki.ca_cert)]


SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


def service_account_flags(tmp: str) -> list[str]:
    """An apiserver that issues and checks service-account tokens with make_test_pki(tmp)'s key pair."""
    pki = make_test_pki(tmp)
    return ["--service-account-signing-key-file", str(pki.sa_key), "--service-account-key-file", str(pki.sa_pub),
            "--service-account-issuer", SA_ISSUER]


def start_apiserver(tmp: str, etcd_url: str, extra: list[str] | None = None, tls: bool = False,
                    identities: dict[str, tuple[str, ...]] | None = None) -> ApiServer:
    """A real apiserver with token auth; `tls` serves HTTPS with make_test_pki's certificate (what kubectl needs
    to send its token), and its kubeconfig then carries the CA. `identities` (user -> groups) get a token each
    besides the admin's (system:masters): ApiServer.tokens[user]."""
    port = free_port()
    token = unique("token")
    token_file = os.path.join(tmp, f"tokens-{port}.csv")
    tokens = {user: unique("token") for user in identities or {}}
    lines = [f"{token},admin,admin,system:masters"]
    lines += [f'{tokens[user]},{user},{user},"{",".join(groups)}"' for user, groups in (identities or {}).items()]
    Path(token_file).write_text("\n".join(lines) + "\n")
    log = os.path.join(tmp, f"apiserver-{port}.log")
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    tls_flags: list[str] = []
    ca: bytes | None = None
    if tls:
        pki = make_test_pki(tmp)
        tls_flags = ["--tls-cert-file", str(pki.serving_cert), "--tls-private-key-file", str(pki.serving_key)]
        ca = pki.ca_cert.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher", "apiserver", "--etcd-servers", etcd_url,
         "--bind-address", "127.0.0.1", "--port", str(port), "--token-auth-file", token_file,
         "--etcd-prefix", "/" + unique("reg"), *tls_flags, *kubelet_client_flags(tmp), *(extra or [])],
        cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    _wait_http(url + "/readyz", proc, "apiserver", log, headers={"Authorization": f"Bearer {token}"},
               ca=ca)
    from pklib import kubeconfig
    kc = os.path.join(tmp, f"kubeconfig-{port}")
    kubeconfig.write(kc, kubeconfig.build(url, token, ca_data=ca), as_json=True)  # as a cluster home's
    return ApiServer(url, token, proc, log, kc, tokens)
