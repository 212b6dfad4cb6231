"""Helpers for tests and benchmarks of the ingress controller: requests to it by Host (and SNI) on loopback, a
test CA with a server certificate as a kubernetes.io/tls Secret, and starting `pkube ingress`."""
from __future__ import annotations

import base64
import datetime
import http.client
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.controlplane import ROOT
from tests.util import free_port


@dataclass
class Answer:
    status: int
    body: str
    headers: dict[str, str]
    peer_cert: dict[str, Any] | None = None


def fetch(port: int, host: str, path: str = "/", tls: ssl.SSLContext | None = None, timeout: float = 5) -> Answer:
    """GET http(s)://host:port/path sent to 127.0.0.1 (curl --resolve): Host header and SNI are `host`."""
    if tls is not None:
        conn: http.client.HTTPConnection = _Resolved(host, port, context=tls, timeout=timeout)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host if port in (80, 443) else f"{host}:{port}"})
        r = conn.getresponse()
        cert = conn.sock.getpeercert() if tls is not None and conn.sock is not None else None  # type: ignore[union-attr]
        return Answer(r.status, r.read().decode(errors="replace"), {k.lower(): v for k, v in r.getheaders()}, cert)
    finally:
        conn.close()


class _Resolved(http.client.HTTPSConnection):
    """HTTPS to `host` (SNI, certificate check) over a connection to 127.0.0.1."""

    def connect(self) -> None:
        import socket
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


@dataclass
class CertAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.cert.public_bytes(serialization.Encoding.PEM).decode())
        return ctx

    def tls_secret(self, name: str, *hosts: str) -> dict[str, Any]:
        """A kubernetes.io/tls Secret with a certificate of this CA for `hosts`."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
                .sign(self.key, hashes.SHA256()))
        pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "kubernetes.io/tls",
                "data": {"tls.crt": base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode(),
                         "tls.key": base64.b64encode(pem_key).decode()}}


def make_ca() -> CertAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pkube ingress test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return CertAuthority(cert, key)


@dataclass
class IngressController:
    proc: subprocess.Popen[bytes]
    http_port: int
    https_port: int
    state_dir: Path
    log: Path


def start_ingress(server: str, token: str, state_dir: Path, controller: str,
                  env: dict[str, str] | None = None) -> IngressController:
    """`pkube ingress` on free loopback ports, implementing IngressClasses of `controller`."""
    http_port, https_port = free_port(), free_port()
    log = state_dir.with_name(state_dir.name + ".log")
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher", "ingress", "--server", server, "--token", token,
         "--http-port", str(http_port), "--https-port", str(https_port), "--bind-address", "127.0.0.1",
         "--state-dir", str(state_dir), "--controller-name", controller, "--node-ip", "127.0.0.1"],
        cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)
    return IngressController(proc, http_port, https_port, state_dir, log)
