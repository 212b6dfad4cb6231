"""The cluster's certificates: a CA of its own and the apiserver's serving certificate.

kubectl (client-go) never sends a bearer token over plain HTTP (kubernetes/kubectl#744),
so a kubeconfig that kubectl can use needs the API served over TLS; the kubeconfig carries
the CA so clients verify the server without `insecure-skip-tls-verify`.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pkctl.cluster.home import Pki

CA_DAYS, SERVING_DAYS = 3650, 365  # like kubeadm
RENEW_BEFORE = dt.timedelta(days=30)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(path.name + ".tmp")
    tmp.touch(mode=0o600)
    tmp.write_bytes(pem)
    tmp.replace(path)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _needs_renewal(path: Path, now: dt.datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return True
    return cert.not_valid_after_utc - now < RENEW_BEFORE


def ensure(dir: Path, hostnames: list[str] | None = None) -> Pki:
    """Create the CA once, and a serving certificate for loopback and this host unless a valid one exists."""
    pki = Pki(dir)
    dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    if not pki.ca_key.exists() or _needs_renewal(pki.ca_cert, now):
        ca_key = _key()
        ca = (x509.CertificateBuilder().subject_name(_name("pkube-ca")).issuer_name(_name("pkube-ca"))
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        _write_key(pki.ca_key, ca_key)
        _write_cert(pki.ca_cert, ca)
        pki.serving_cert.unlink(missing_ok=True)  # signed by the old CA
    if _needs_renewal(pki.serving_cert, now) or not pki.serving_key.exists():
        issuer_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
        ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
        key = _key()
        names = ["localhost", *(hostnames if hostnames is not None else [socket.gethostname()])]
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names)]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
        cert = (x509.CertificateBuilder().subject_name(_name("pkube-apiserver")).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=SERVING_DAYS))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(issuer_key, hashes.SHA256()))  # type: ignore[arg-type]
        _write_key(pki.serving_key, key)
        _write_cert(pki.serving_cert, cert)
    return pki
