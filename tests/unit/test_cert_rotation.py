"""Certificate rotation (the kubelet's certificate manager): the jittered renewal deadline, the signer's
backdating of short-lived certificates, and a renewed client certificate reaching the SSL contexts made from its
files (a real TLS handshake on loopback)."""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controllers.certificates import _duration, sign
from pkctl.commands.cluster import _signing_duration
from pklib import kubeconfig
from pklib.api import certificates as c

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    return cert, key


def _node_cert(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, seconds: int,
               now: dt.datetime = NOW) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) of a node client certificate signed as csrsigning signs it."""
    key_pem, request = c.new_request("system:node:n1", (c.NODES_GROUP,))
    obj = c.csr_object("x", request, c.KUBELET_CLIENT_SIGNER, ["digital signature", "client auth"])
    return key_pem, sign(obj, ca, ca_key, seconds, now)


def test_a_short_lived_certificate_is_due_after_its_issue_and_before_its_expiry() -> None:
    ca, key = _ca()
    cert = x509.load_pem_x509_certificate(_node_cert(ca, key, 60)[1])
    assert cert.not_valid_before_utc == NOW - dt.timedelta(seconds=6)  # backdated a tenth of its lifetime
    assert cert.not_valid_after_utc == NOW + dt.timedelta(seconds=60)
    assert c.rotation_deadline(cert, 0.7) == NOW + dt.timedelta(seconds=66 * 0.7 - 6)
    assert c.rotation_deadline(cert, 0.9) == NOW + dt.timedelta(seconds=66 * 0.9 - 6)
    for _ in range(50):
        assert NOW + dt.timedelta(seconds=40) < c.rotation_deadline(cert) < NOW + dt.timedelta(seconds=54)
    # a year-long one keeps Kubernetes' five minutes
    year = x509.load_pem_x509_certificate(_node_cert(ca, key, c.DEFAULT_DURATION_SECONDS)[1])
    assert year.not_valid_before_utc == NOW - dt.timedelta(minutes=5)


def test_seconds_to_rotation() -> None:
    ca, key = _ca()
    pem = _node_cert(ca, key, 100)[1]
    assert 100 * 0.7 - 10 <= c.seconds_to_rotation(pem, NOW) <= 110 * 0.9 - 10
    assert c.seconds_to_rotation(pem, NOW + dt.timedelta(seconds=100)) < 0


def test_signing_duration_flags() -> None:
    assert _duration("8760h") == 8760 * 3600 and _duration("60") == 60 and _duration("1m30s") == 90
    assert _signing_duration("60s") == 60
    for bad in ("5s", "soon", "-1h"):
        with pytest.raises(argparse.ArgumentTypeError):
            _signing_duration(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        _duration("0s")


def test_a_renewed_client_certificate_reaches_every_context_made_from_its_files(tmp_path: Path) -> None:
    ca, ca_key = _ca()
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    key_file, cert_file = tmp_path / "client.key", tmp_path / "client.crt"
    first_key, first = _node_cert(ca, ca_key, 3600, dt.datetime.now(dt.timezone.utc))
    key_file.write_bytes(first_key)
    cert_file.write_bytes(first)
    access = kubeconfig.ClusterAccess(server="https://127.0.0.1", ca_file=str(tmp_path / "ca.crt"),
                                      client_cert=str(cert_file), client_key=str(key_file))
    kubelet_ctx, proxy_ctx = access.ssl_context(), access.ssl_context()
    assert isinstance(kubelet_ctx, ssl.SSLContext) and isinstance(proxy_ctx, ssl.SSLContext)
    # the server: a certificate of the same CA for 127.0.0.1, requiring a client certificate of it
    server_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    server_cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s")]))
                   .issuer_name(ca.subject).public_key(server_key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
                   .not_valid_after(now + dt.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False).sign(ca_key, hashes.SHA256()))
    (tmp_path / "s.crt").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "s.key").write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.crt"))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_cert_chain(str(tmp_path / "s.crt"), str(tmp_path / "s.key"))

    async def presented(ctx: ssl.SSLContext) -> int:
        """The serial number of the client certificate the server saw on a new connection made with ctx."""
        seen: list[int] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            seen.append(x509.load_der_x509_certificate(der).serial_number)
            writer.close()
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
            await reader.read()
            writer.close()
        return seen[0]

    serial = x509.load_pem_x509_certificate(first).serial_number
    assert asyncio.run(presented(kubelet_ctx)) == serial
    new_key, renewed = _node_cert(ca, ca_key, 3600, dt.datetime.now(dt.timezone.utc))
    key_file.write_bytes(new_key)
    cert_file.write_bytes(renewed)
    assert kubeconfig.reload_client_certificate(str(cert_file), str(key_file)) == 2
    new_serial = x509.load_pem_x509_certificate(renewed).serial_number
    assert asyncio.run(presented(kubelet_ctx)) == new_serial and asyncio.run(presented(proxy_ctx)) == new_serial
    assert kubeconfig.reload_client_certificate(str(tmp_path / "other.crt"), None) == 0
