"""Kubernetes' certificate and bootstrap-token semantics, shared by the apiserver (CSR validation, bootstrap-token
authentication), the controller-manager (csrapproving, csrsigning, tokencleaner) and pkctl (`cluster token`,
`cluster join`).

A CertificateSigningRequest (certificates.k8s.io/v1) carries a PEM PKCS#10 request and the signer asked to sign
it; kubelets bootstrap their client credentials through one for kubernetes.io/kube-apiserver-client-kubelet,
which the controller-manager approves when the requester is a bootstrapper (or the node renewing its own) and
the subject is the node's (CN system:node:<name>, O system:nodes), as Kubernetes' csrapproving controller does.

A kubelet with serverTLSBootstrap asks for its serving certificate the same way (signer kubernetes.io/kubelet-
serving, SANs = its Node's addresses). Kubernetes approves none of those by itself; pkube approves one when the
node asks for itself, every SAN is one of its Node's status addresses and the usages are the serving ones (what
kubelet-csr-approver does); any other stays pending for an admin (`kubectl certificate approve`).
"""
from __future__ import annotations

import base64
import hashlib
import random
import re
from datetime import datetime, timedelta, timezone
import ipaddress
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GROUP = "certificates.k8s.io"
KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN_SIGNER = "kubernetes.io/legacy-unknown"
# The signers the controller-manager's csrsigning controller signs for.
SIGNED_BY_CONTROLLER = (KUBELET_CLIENT_SIGNER, CLIENT_SIGNER, KUBELET_SERVING_SIGNER)
# Kubernetes' KeyUsage values (certificates/v1 types.go).
USAGES = ("signing", "digital signature", "content commitment", "key encipherment", "key agreement",
          "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
          "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
          "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc")
NODE_CLIENT_USAGES = frozenset({"digital signature", "key encipherment", "client auth"})
NODE_SERVING_USAGES = ["digital signature", "key encipherment", "server auth"]
MIN_EXPIRATION_SECONDS = 600  # what the API accepts at least
DEFAULT_DURATION_SECONDS = 365 * 24 * 3600  # the controller-manager's --cluster-signing-duration
ROTATION_JITTER = (0.7, 0.9)  # the kubelet's certificate manager renews within this part of a lifetime

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
CONDITION_TYPES = ("Approved", "Denied", "Failed")

# Bootstrap tokens (kubeadm's `ID.SECRET`, Secrets bootstrap-token-<id> of this type in kube-system).
BOOTSTRAP_TOKEN_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_TOKEN_PREFIX = "bootstrap-token-"
BOOTSTRAP_USER_PREFIX = "system:bootstrap:"
BOOTSTRAP_TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
BOOTSTRAP_GROUP_RE = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
TOKEN_NAMESPACE = "kube-system"
CLUSTER_INFO_NAMESPACE, CLUSTER_INFO_NAME = "kube-public", "cluster-info"


def parse_request(pem: bytes) -> x509.CertificateSigningRequest:
    """The PKCS#10 request of a CSR's spec.request (PEM); ValueError when it is not one or its signature is bad."""
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    csr = x509.load_pem_x509_csr(pem)
    if not csr.is_signature_valid:
        raise ValueError("the request's signature does not verify")
    return csr


def request_pem(obj: dict[str, Any]) -> bytes:
    """spec.request decoded (the API carries it base64-encoded); ValueError when it is not base64."""
    text = ((obj.get("spec") or {}).get("request")) or ""
    return base64.b64decode(text, validate=True)


def new_request(common_name: str, organizations: tuple[str, ...] = (), dns_names: tuple[str, ...] = (),
                ips: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """(private key PEM, PKCS#10 request PEM) for a new ECDSA P-256 key with this subject (a kubelet's bootstrap:
    CN system:node:<name>, O system:nodes) and these subjectAltNames (a kubelet's serving certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    sans: list[x509.GeneralName] = [*(x509.DNSName(d) for d in dns_names),
                                    *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def csr_object(name: str, request: bytes, signer: str, usages: list[str],
               expiration_seconds: int | None = None) -> dict[str, Any]:
    """A CertificateSigningRequest for `request` (PEM)."""
    spec: dict[str, Any] = {"request": base64.b64encode(request).decode(), "signerName": signer, "usages": usages}
    if expiration_seconds is not None:
        spec["expirationSeconds"] = expiration_seconds
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": spec}


def subject_of(csr: x509.CertificateSigningRequest | x509.Certificate) -> tuple[str, list[str]]:
    """(common name, organizations) of a request or certificate subject."""
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cns[0].value) if cns else ""), [str(o.value) for o in orgs]


def _sans(csr: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _has_sans(csr: x509.CertificateSigningRequest) -> bool:
    sans = _sans(csr)
    return sans is not None and len(sans) > 0


def serving_names(node: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(DNS names, IPs) a kubelet's serving certificate names: its Node's status addresses, as the kubelet's
    certificate manager takes them (Hostname/InternalDNS/ExternalDNS, InternalIP/ExternalIP)."""
    dns: list[str] = []
    ips: list[str] = []
    for a in (node.get("status") or {}).get("addresses") or []:
        kind, value = str(a.get("type") or ""), str(a.get("address") or "")
        target = dns if kind in ("Hostname", "InternalDNS", "ExternalDNS") else \
            ips if kind in ("InternalIP", "ExternalIP") else None
        if target is not None and value and value not in target:
            target.append(value)
    return dns, ips


def kubelet_serving_problem(csr: x509.CertificateSigningRequest, usages: list[str]) -> str | None:
    """Why this is not a kubelet serving certificate request (Kubernetes' ValidateKubeletServingCSR, which the
    kubelet-serving signer checks before signing), or None: O system:nodes, CN system:node:<name>, the serving
    usages, at least one DNS or IP SAN and no email or URI SAN."""
    cn, orgs = subject_of(csr)
    if orgs != [NODES_GROUP]:
        return f'subject organization is not {NODES_GROUP}'
    if not cn.startswith(NODE_USER_PREFIX) or len(cn) == len(NODE_USER_PREFIX):
        return f'subject common name does not begin with "{NODE_USER_PREFIX}"'
    if "server auth" not in usages or not set(usages) <= set(NODE_SERVING_USAGES):
        return 'usages must be "server auth" with optionally "digital signature" and "key encipherment"'
    sans = _sans(csr)
    if sans is None or len(sans) == 0:
        return "a DNS or IP subjectAltName is required"
    if sans.get_values_for_type(x509.RFC822Name) or sans.get_values_for_type(x509.UniformResourceIdentifier):
        return "email and URI subjectAltNames are not allowed"
    return None


def node_serving_problem(csr: x509.CertificateSigningRequest, usages: list[str],
                         node: dict[str, Any] | None) -> str | None:
    """Why this is not a serving certificate request pkube approves for `node` (the Node the CN names), or None:
    a kubelet serving request whose every SAN is an address of the Node."""
    problem = kubelet_serving_problem(csr, usages)
    if problem is not None:
        return problem
    if node is None:
        return f"node {subject_of(csr)[0].removeprefix(NODE_USER_PREFIX)} does not exist"
    sans = _sans(csr)
    assert sans is not None
    dns, ips = serving_names(node)
    node_ips = {ipaddress.ip_address(a) for a in ips if _is_ip(a)}
    foreign = [d for d in sans.get_values_for_type(x509.DNSName) if d not in dns] + \
        [str(ip) for ip in sans.get_values_for_type(x509.IPAddress) if ip not in node_ips]
    if foreign:
        return f"subjectAltNames {', '.join(foreign)} are not addresses of the node"
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def node_client_problem(csr: x509.CertificateSigningRequest, usages: list[str]) -> str | None:
    """Why this is not a kubelet client certificate request (Kubernetes' ValidateKubeletClientCSR), or None."""
    cn, orgs = subject_of(csr)
    if orgs != [NODES_GROUP]:
        return f'subject organization is not {NODES_GROUP}'
    if not cn.startswith(NODE_USER_PREFIX) or len(cn) == len(NODE_USER_PREFIX):
        return f'subject common name does not begin with "{NODE_USER_PREFIX}"'
    if _has_sans(csr):
        return "DNS, email, IP or URI subjectAltNames are not allowed"
    if "client auth" not in usages or not set(usages) <= NODE_CLIENT_USAGES:
        return 'usages must be "client auth" with optionally "digital signature" and "key encipherment"'
    return None


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == type_:
            return c
    return None


def is_approved(obj: dict[str, Any]) -> bool:
    c = condition(obj, "Approved")
    return c is not None and c.get("status", "True") == "True" and condition(obj, "Denied") is None


def is_finished(obj: dict[str, Any]) -> bool:
    """Denied, failed, or already carrying its certificate."""
    return (condition(obj, "Denied") is not None or condition(obj, "Failed") is not None
            or bool((obj.get("status") or {}).get("certificate")))


def auto_approval(obj: dict[str, Any], node_named: Callable[[str], dict[str, Any] | None] = lambda _: None,
                  ) -> tuple[str, str] | None:
    """(reason, message) with which the csrapproving controller approves `obj`, or None if it leaves it alone:
    a kubelet client CSR for a node, requested by a bootstrapper (a new node) or by that node itself (renewal);
    a kubelet serving CSR requested by the node itself for its own addresses (`node_named`: the Node of a name,
    None if there is none)."""
    spec = obj.get("spec") or {}
    signer = spec.get("signerName")
    if signer not in (KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER) or is_finished(obj) or is_approved(obj):
        return None
    try:
        csr = parse_request(request_pem(obj))
    except ValueError:
        return None
    if signer == KUBELET_SERVING_SIGNER:
        cn, _ = subject_of(csr)
        if spec.get("username") != cn or NODES_GROUP not in (spec.get("groups") or []):
            return None
        node = node_named(cn.removeprefix(NODE_USER_PREFIX)) if cn.startswith(NODE_USER_PREFIX) else None
        if node_serving_problem(csr, list(spec.get("usages") or []), node) is not None:
            return None
        return "AutoApproved", "Auto approving kubelet serving certificate: requested by the node for its own addresses."
    if node_client_problem(csr, list(spec.get("usages") or [])) is not None:
        return None
    cn, _ = subject_of(csr)
    if spec.get("username") == cn:
        return "AutoApproved", "Auto approving self kubelet client certificate after SubjectAccessReview."
    if BOOTSTRAPPERS_GROUP in (spec.get("groups") or []):
        return "AutoApproved", "Auto approving kubelet client certificate after SubjectAccessReview."
    return None


def ca_hash(ca_pem: bytes) -> str:
    """kubeadm's --discovery-token-ca-cert-hash: sha256 of the CA certificate's SubjectPublicKeyInfo (DER)."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def bootstrap_token_expired(data: dict[str, str], now: datetime) -> bool:
    """Whether a bootstrap token Secret's (decoded) data says it expired; an unreadable expiration counts."""
    text = data.get("expiration")
    if not text:
        return False
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return True
    return when <= now


def decode_secret_data(secret: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[str(k)] = base64.b64decode(str(v)).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    for k, v in (secret.get("stringData") or {}).items():
        out[str(k)] = str(v)
    return out


def bootstrap_token_secret(token_id: str, token_secret: str, expiration: str | None,
                           description: str = "", extra_groups: tuple[str, ...] = ()) -> dict[str, Any]:
    """The Secret kubeadm writes for a bootstrap token (`expiration` RFC 3339, None = never expires): usable
    for authentication (system:bootstrap:<id>, in system:bootstrappers) and signing."""
    data = {"token-id": token_id, "token-secret": token_secret, "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true"}
    if expiration:
        data["expiration"] = expiration
    if description:
        data["description"] = description
    if extra_groups:
        data["auth-extra-groups"] = ",".join(extra_groups)
    return {"apiVersion": "v1", "kind": "Secret", "type": BOOTSTRAP_TOKEN_TYPE,
            "metadata": {"name": BOOTSTRAP_TOKEN_PREFIX + token_id, "namespace": TOKEN_NAMESPACE},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def rotation_deadline(cert: x509.Certificate, jitter: float | None = None) -> datetime:
    """When a kubelet renews `cert` (Kubernetes' certificate manager): at a random 70-90 % of its lifetime
    (`jitter`, a fraction, fixes the point), so that a fleet's renewals spread out."""
    part = random.uniform(*ROTATION_JITTER) if jitter is None else jitter
    start = cert.not_valid_before_utc
    return start + (cert.not_valid_after_utc - start) * part


def seconds_to_rotation(cert_pem: bytes, now: datetime | None = None) -> float:
    """Seconds until the jittered rotation deadline of a PEM certificate (negative when past)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return (rotation_deadline(cert) - (now or datetime.now(timezone.utc))) / timedelta(seconds=1)
