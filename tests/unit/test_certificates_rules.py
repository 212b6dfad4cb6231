"""The csrapproving rules, signing and bootstrap-token helpers (pklib.api.certificates, controllers.certificates)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controllers.certificates import sign
from pklib.api import certificates as c

NODE_USAGES = ["digital signature", "client auth"]


def _csr(cn: str = "system:node:n1", orgs: tuple[str, ...] = ("system:nodes",), usages: list[str] | None = None,
         username: str = "system:bootstrap:abcdef", groups: tuple[str, ...] = ("system:bootstrappers",),
         signer: str = c.KUBELET_CLIENT_SIGNER, **status: Any) -> dict[str, Any]:
    _, request = c.new_request(cn, orgs)
    obj = c.csr_object("x", request, signer, usages or NODE_USAGES)
    obj["spec"].update(username=username, groups=[*groups, "system:authenticated"])
    if status:
        obj["status"] = status
    return obj


def test_bootstrapper_new_node_is_approved() -> None:
    assert c.auto_approval(_csr()) == ("AutoApproved",
                                       "Auto approving kubelet client certificate after SubjectAccessReview.")


def test_node_renewing_its_own_is_approved() -> None:
    decision = c.auto_approval(_csr(username="system:node:n1", groups=("system:nodes",)))
    assert decision is not None and "self kubelet client" in decision[1]


@pytest.mark.parametrize("change", [
    dict(username="system:node:other", groups=("system:nodes",)),  # another node's subject
    dict(username="jane", groups=("devs",)),  # not a bootstrapper
    dict(orgs=("system:nodes", "system:masters")),  # extra organization
    dict(orgs=()),
    dict(cn="jane"),
    dict(cn="system:node:"),
    dict(usages=["digital signature", "client auth", "server auth"]),
    dict(usages=["digital signature"]),
    dict(signer=c.CLIENT_SIGNER),
    dict(conditions=[{"type": "Denied", "status": "True"}]),
    dict(conditions=[{"type": "Approved", "status": "True"}]),  # already approved
])
def test_not_approved(change: dict[str, Any]) -> None:
    assert c.auto_approval(_csr(**change)) is None


def test_sans_are_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "system:node:n1")])
    req = (x509.CertificateSigningRequestBuilder().subject_name(name)
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("n1")]), critical=False).sign(key, hashes.SHA256()))
    problem = c.node_client_problem(req, NODE_USAGES)
    assert problem is not None and "subjectAltNames" in problem


def _ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.timezone.utc)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    return ca, key


def test_sign_honours_expiration_and_caps_at_the_ca() -> None:
    ca, key = _ca()
    now = dt.datetime.now(dt.timezone.utc)
    obj = _csr()
    obj["spec"]["expirationSeconds"] = 3600
    cert = x509.load_pem_x509_certificate(sign(obj, ca, key, c.DEFAULT_DURATION_SECONDS, now))
    assert cert.not_valid_after_utc - now <= dt.timedelta(seconds=3601)
    assert c.subject_of(cert) == ("system:node:n1", ["system:nodes"])
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
    cert = x509.load_pem_x509_certificate(sign(_csr(), ca, key, c.DEFAULT_DURATION_SECONDS, now))
    assert cert.not_valid_after_utc == ca.not_valid_after_utc  # a year asked, the CA lasts 30 days


def test_bootstrap_token_expiry_and_ca_hash() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert c.bootstrap_token_expired({"expiration": "2025-12-31T23:59:59Z"}, now)
    assert not c.bootstrap_token_expired({"expiration": "2026-01-01T00:00:01Z"}, now)
    assert not c.bootstrap_token_expired({}, now)
    assert c.bootstrap_token_expired({"expiration": "soon"}, now)
    secret = c.bootstrap_token_secret("abcdef", "0123456789abcdef", None)
    assert c.decode_secret_data(secret)["token-secret"] == "0123456789abcdef"
    assert c.BOOTSTRAP_TOKEN_RE.match("abcdef.0123456789abcdef") and not c.BOOTSTRAP_TOKEN_RE.match("abc.def")
    ca, _ = _ca()
    from cryptography.hazmat.primitives import serialization
    h = c.ca_hash(ca.public_bytes(serialization.Encoding.PEM))
    assert h.startswith("sha256:") and len(h) == 7 + 64


NODE_N1 = {"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.9.0.3"},
                                                                 {"type": "Hostname", "address": "host-a"}]}}


def _serving(cn: str = "system:node:n1", dns: tuple[str, ...] = ("host-a",), ips: tuple[str, ...] = ("10.9.0.3",),
             usages: list[str] | None = None, username: str = "system:node:n1",
             groups: tuple[str, ...] = ("system:nodes",)) -> dict[str, Any]:
    _, request = c.new_request(cn, ("system:nodes",), dns, ips)
    obj = c.csr_object("x", request, c.KUBELET_SERVING_SIGNER, usages or list(c.NODE_SERVING_USAGES))
    obj["spec"].update(username=username, groups=[*groups, "system:authenticated"])
    return obj


def _nodes(name: str) -> dict[str, Any] | None:
    return NODE_N1 if name == "n1" else None


def test_a_nodes_serving_request_for_its_own_addresses_is_approved() -> None:
    decision = c.auto_approval(_serving(), _nodes)
    assert decision is not None and decision[0] == "AutoApproved" and "serving" in decision[1]
    assert c.auto_approval(_serving(dns=()), _nodes) is not None  # a subset of its addresses is fine
    assert c.serving_names(NODE_N1) == (["host-a"], ["10.9.0.3"])


@pytest.mark.parametrize("change", [
    dict(ips=("10.9.0.3", "10.9.0.99")),  # a foreign IP
    dict(dns=("host-a", "kubernetes.default")),  # a foreign name
    dict(dns=(), ips=()),  # no SAN at all
    dict(username="system:node:n2"),  # another node asks for n1's certificate
    dict(username="system:bootstrap:abcdef", groups=("system:bootstrappers",)),  # bootstrappers get no serving
    dict(usages=["digital signature", "key encipherment", "server auth", "client auth"]),
    dict(usages=["digital signature", "key encipherment"]),
    dict(cn="system:node:n2", username="system:node:n2"),  # no such Node
])
def test_serving_requests_left_for_an_admin(change: dict[str, Any]) -> None:
    assert c.auto_approval(_serving(**change), _nodes) is None


def test_serving_request_signed_with_its_sans() -> None:
    ca, key = _ca()
    cert = x509.load_pem_x509_certificate(sign(_serving(), ca, key, c.DEFAULT_DURATION_SECONDS,
                                               dt.datetime.now(dt.timezone.utc)))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["host-a"]
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["10.9.0.3"]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])


def test_the_serving_signer_refuses_what_is_not_a_kubelet_serving_request() -> None:
    ca, key = _ca()
    _, request = c.new_request("jane", ("devs",), ("example.com",))
    obj = c.csr_object("x", request, c.KUBELET_SERVING_SIGNER, list(c.NODE_SERVING_USAGES))
    with pytest.raises(ValueError, match="not a kubelet serving request: subject organization"):
        sign(obj, ca, key, c.DEFAULT_DURATION_SECONDS, dt.datetime.now(dt.timezone.utc))
