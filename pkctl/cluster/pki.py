"""The cluster's certificates: a CA of its own and every certificate issued from it.

kubectl (client-go) never sends a bearer token over plain HTTP (kubernetes/kubectl#744),
so a kubeconfig that kubectl can use needs the API served over TLS; the kubeconfig carries
the CA so clients verify the server without `insecure-skip-tls-verify`.

Like kubeadm's layout (one CA here instead of three): etcd serves its clients and peers over
TLS and requires client certificates; only the apiserver (apiserver-etcd-client) and the
supervisor's health probe (etcd-healthcheck-client) hold one. The kubelet serves its API with
a certificate for the node's IP and name, and accepts only the apiserver's client certificate
(apiserver-kubelet-client, group system:masters). Private keys are created mode 0600.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pkctl.cluster.home import Pki

CA_DAYS, SERVING_DAYS = 3650, 365  # like kubeadm
RENEW_BEFORE = dt.timedelta(days=30)
LOOPBACK = ("127.0.0.1", "::1")
SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
# The subjects kubeadm gives these client certificates.
ETCD_CLIENT_CN = "kube-apiserver-etcd-client"
HEALTHCHECK_CN = "kube-etcd-healthcheck-client"
KUBELET_CLIENT_CN, KUBELET_CLIENT_ORG = "kube-apiserver-kubelet-client", "system:masters"
# What pods call the API by (the `kubernetes` Service), as kubeadm puts them in the apiserver's certificate.
IN_CLUSTER_NAMES = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_private(path: Path, data: bytes) -> None:
    """Write through a temp file created 0600 (never readable by others, whatever the umask), then rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _load(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None


def _needs_renewal(path: Path, now: dt.datetime) -> bool:
    cert = _load(path)
    return cert is None or cert.not_valid_after_utc - now < RENEW_BEFORE


def _sans(dns: list[str], ips: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(dns)]
    return names + [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(ips)]


def _covers(cert: x509.Certificate, sans: list[x509.GeneralName]) -> bool:
    try:
        have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return not sans
    return set(sans) <= have


def _issue(pki: Pki, name: str, subject: x509.Name, usages: list[x509.ObjectIdentifier],
           sans: list[x509.GeneralName], now: dt.datetime) -> None:
    """<name>.crt/.key signed by the CA, unless a valid one with these names exists."""
    crt, key_path = pki.dir / f"{name}.crt", pki.dir / f"{name}.key"
    current = _load(crt)
    if (current is not None and key_path.exists() and not _needs_renewal(crt, now) and _covers(current, sans)
            and current.subject == subject):
        return
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = _key()
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=SERVING_DAYS))
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    _write_key(key_path, key)
    _write_cert(crt, builder.sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]


def _ensure_ca(pki: Pki, now: dt.datetime) -> None:
    if pki.ca_key.exists() and not _needs_renewal(pki.ca_cert, now):
        return
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
    for old in pki.dir.glob("*.crt"):  # signed by the old CA
        if old != pki.ca_cert:
            old.unlink()


def _ensure_service_account_key(pki: Pki) -> None:
    """kubeadm's sa.key / sa.pub: the RSA key pair that signs and verifies service-account tokens (made once;
    replacing it would invalidate every token handed out)."""
    if pki.sa_key.exists() and pki.sa_pub.exists():
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_private(pki.sa_key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    pki.sa_pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))


def ensure(dir: Path, hostnames: list[str] | None = None, ips: list[str] | None = None,
           service_ip: str | None = None, etcd_ips: list[str] | None = None) -> Pki:
    """Create the CA once, and the control plane's certificates (apiserver serving, etcd server and peer,
    the etcd and kubelet client certificates) and the service-account key pair unless valid ones exist: a
    home made before one of them existed gets it at its next `up`. `ips`: more addresses the apiserver is
    reached at (the cluster network's gateway, which the other nodes use); `service_ip`: the `kubernetes`
    Service's, which pods use (the certificate also names kubernetes.default.svc and the like); `etcd_ips`: more
    addresses etcd's server and peer certificates name (where other machines reach the members)."""
    pki = Pki(dir)
    dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    _ensure_ca(pki, now)
    names = ["localhost", *(hostnames if hostnames is not None else [socket.gethostname()]), *IN_CLUSTER_NAMES]
    extra_ips = [*(ips or []), *([service_ip] if service_ip else [])]
    _issue(pki, "apiserver", _name("pkube-apiserver"), [SERVER], _sans(names, [*LOOPBACK, *extra_ips]), now)
    _ensure_service_account_key(pki)
    etcd_sans = _sans(["localhost"], [*LOOPBACK, *(etcd_ips or [])])
    _issue(pki, "etcd-server", _name("kube-etcd"), [SERVER, CLIENT], etcd_sans, now)
    _issue(pki, "etcd-peer", _name("kube-etcd-peer"), [SERVER, CLIENT], etcd_sans, now)
    _issue(pki, "apiserver-etcd-client", _name(ETCD_CLIENT_CN), [CLIENT], [], now)
    _issue(pki, "etcd-healthcheck-client", _name(HEALTHCHECK_CN), [CLIENT], [], now)
    _issue(pki, "apiserver-kubelet-client", _name(KUBELET_CLIENT_CN, KUBELET_CLIENT_ORG), [CLIENT], [], now)
    return pki


def ensure_kubelet(dir: Path, node_name: str, node_ips: list[str], name: str = "kubelet") -> Pki:
    """The kubelet's serving certificate for its node name, its IPs and loopback (reissued when the IP changed);
    `name`: the file name, one per node of a multi-node cluster."""
    pki = Pki(dir)
    dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    _ensure_ca(pki, now)
    _issue(pki, name, _name(f"system:node:{node_name}", "system:nodes"), [SERVER],
           _sans([node_name, "localhost"], [*node_ips, *LOOPBACK]), now)
    return pki


def ensure_node_client(dir: Path, node_name: str, name: str) -> Pki:
    """A node's client certificate for the API (CN system:node:<node>, O system:nodes, as a kubelet's), in
    <name>.crt/.key: an extra node of a local cluster authenticates with it."""
    pki = Pki(dir)
    now = dt.datetime.now(dt.timezone.utc)
    _ensure_ca(pki, now)
    _issue(pki, name, _name(f"system:node:{node_name}", "system:nodes"), [CLIENT], [], now)
    return pki
