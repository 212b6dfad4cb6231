"""Joining machines to a cluster, as kubeadm does: bootstrap tokens and TLS bootstrap.

On the control plane, `pkctl cluster token create` stores a bootstrap token (a Secret bootstrap-token-<id> in
kube-system) and publishes the cluster's CA in the public ConfigMap kube-public/cluster-info, then prints the
join command: the API URL, the token and the CA's hash (sha256 of its SubjectPublicKeyInfo, kubeadm's
--discovery-token-ca-cert-hash).

On the new machine, `pkctl cluster join` reads cluster-info without trusting the server yet (anonymously, TLS
unverified), accepts the CA in it only if its hash is the one given, and from then on talks to the API over
TLS verified with that CA: with the bootstrap token it asks for a node client certificate through a
CertificateSigningRequest (signer kubernetes.io/kube-apiserver-client-kubelet, CN system:node:<name>, O
system:nodes), which the controller-manager approves and signs. The node's kubeconfig then carries that
certificate: the token is used for nothing else. The kubelet's API starts with a certificate of a node-local
CA; once its Node is registered, the kubelet (--rotate-server-certificates, kubelet/servingcert.py) asks as the
node for a serving certificate of the cluster CA (signer kubernetes.io/kubelet-serving, SANs = its Node's
addresses), which the controller-manager approves and signs, so that the apiserver's logs/exec/port-forward
reach it.
"""
from __future__ import annotations

import base64
import json
import secrets
import ssl
import string
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from pklib.api import certificates as certs
from pklib import kubeconfig

from pkctl.cluster.components import _tls_context
from pkctl.cluster.home import ClusterConfig, Home
from pkctl.cluster.pki import write_private

TOKEN_ALPHABET = string.ascii_lowercase + string.digits
CSR_WAIT = 120.0  # seconds a join waits for its certificate
Obj = dict[str, Any]


class JoinError(Exception):
    """What stops a join or a token command, in one line."""


# -- control plane side -------------------------------------------------------------------------------------


def _admin(home: Home, cfg: ClusterConfig, method: str, path: str, body: Obj | None = None) -> tuple[int, Obj]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(cfg.api_url + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {home.token()}",
                                          "Content-Type": "application/json"})
    return _send(req, _tls_context(home, cfg), cfg.api_url)


def _send(req: urllib.request.Request, tls: ssl.SSLContext | None, server: str,
          timeout: float = 10.0) -> tuple[int, Obj]:
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=tls) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {}
    except (OSError, ValueError) as e:
        raise JoinError(f"cannot reach the API server at {server}: {getattr(e, 'reason', e)}") from None


def _checked(code: int, doc: Obj, what: str) -> Obj:
    if code >= 300:
        raise JoinError(f"{what}: {doc.get('message') or f'HTTP {code}'}")
    return doc


def join_server(cfg: ClusterConfig) -> str:
    """The API URL other machines join at: the cluster network's gateway (several nodes), else the host's
    address (where the supervisor's balancer serves the API), else loopback."""
    return f"https://{cfg.advertise_address or '127.0.0.1'}:{cfg.api_port}"


def publish_cluster_info(home: Home, cfg: ClusterConfig, server: str) -> None:
    """kube-public/cluster-info: a kubeconfig naming the server and its CA (kubeadm's), and what a node needs to
    know of the cluster's networks (pkube's additions)."""
    info = kubeconfig.build(server, None)
    info["clusters"][0]["cluster"]["certificate-authority-data"] = \
        base64.b64encode(home.pki.ca_cert.read_bytes()).decode()
    info["users"], info["contexts"], info["current-context"] = [], [], ""
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": certs.CLUSTER_INFO_NAME, "namespace": certs.CLUSTER_INFO_NAMESPACE},
          "data": {"kubeconfig": yaml.safe_dump(info, sort_keys=False), "serviceCIDR": cfg.service_cidr,
                   "clusterCIDR": cfg.cluster_cidr, "networkBackend": cfg.pod_routing,
                   "vxlanVNI": str(cfg.vxlan_vni or 1)}}
    path = f"/api/v1/namespaces/{certs.CLUSTER_INFO_NAMESPACE}/configmaps"
    code, doc = _admin(home, cfg, "PUT", f"{path}/{certs.CLUSTER_INFO_NAME}", cm)
    if code == 404:
        code, doc = _admin(home, cfg, "POST", path, cm)
    _checked(code, doc, "publishing kube-public/cluster-info")


def create_token(home: Home, cfg: ClusterConfig, ttl: float, description: str = "",
                 extra_groups: tuple[str, ...] = ()) -> tuple[str, str]:
    """(token, join command). `ttl` seconds; 0: the token never expires; `extra_groups`: more groups its user
    is in (system:bootstrappers:...)."""
    token_id = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(6))
    secret = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(16))
    expiration = (datetime.now(timezone.utc) + timedelta(seconds=ttl)).strftime("%Y-%m-%dT%H:%M:%SZ") \
        if ttl > 0 else None
    server = join_server(cfg)
    publish_cluster_info(home, cfg, server)
    body = certs.bootstrap_token_secret(token_id, secret, expiration,
                                        description or "bootstrap token generated by `pkctl cluster token create`",
                                        extra_groups)
    _checked(*_admin(home, cfg, "POST", f"/api/v1/namespaces/{certs.TOKEN_NAMESPACE}/secrets", body),
             "storing the token")
    token = f"{token_id}.{secret}"
    return token, (f"pkctl cluster join {server} --token {token} "
                   f"--ca-hash {certs.ca_hash(home.pki.ca_cert.read_bytes())}")


@dataclass
class TokenInfo:
    token: str  # ID.SECRET
    expires: datetime | None
    usages: list[str]
    description: str
    groups: list[str]


def list_tokens(home: Home, cfg: ClusterConfig) -> list[TokenInfo]:
    doc = _checked(*_admin(home, cfg, "GET", f"/api/v1/namespaces/{certs.TOKEN_NAMESPACE}/secrets?fieldSelector="
                           + urllib.parse.quote(f"type={certs.BOOTSTRAP_TOKEN_TYPE}")), "listing tokens")
    out = []
    for s in doc.get("items") or []:
        if s.get("type") != certs.BOOTSTRAP_TOKEN_TYPE:
            continue
        data = certs.decode_secret_data(s)
        try:
            expires = datetime.fromisoformat(data["expiration"].replace("Z", "+00:00")) \
                if data.get("expiration") else None
        except ValueError:
            expires = None
        usages = sorted(k.removeprefix("usage-bootstrap-") for k, v in data.items()
                        if k.startswith("usage-bootstrap-") and v == "true")
        out.append(TokenInfo(f"{data.get('token-id', '')}.{data.get('token-secret', '')}", expires, usages,
                             data.get("description", ""), [g for g in data.get("auth-extra-groups", "").split(",")
                                                           if g]))
    return out


def delete_token(home: Home, cfg: ClusterConfig, token: str) -> str:
    """Deletes a token given as ID or ID.SECRET; returns its ID."""
    token_id = token.split(".", 1)[0]
    if not certs.BOOTSTRAP_TOKEN_RE.match(f"{token_id}.{'0' * 16}"):
        raise JoinError(f'"{token}" is not a bootstrap token ID ([a-z0-9]{{6}}) or token ([a-z0-9]{{6}}.[a-z0-9]{{16}})')
    code, doc = _admin(home, cfg, "DELETE", f"/api/v1/namespaces/{certs.TOKEN_NAMESPACE}/secrets/"
                                            f"{certs.BOOTSTRAP_TOKEN_PREFIX}{token_id}")
    if code == 404:
        raise JoinError(f'bootstrap token "{token_id}" not found')
    _checked(code, doc, "deleting the token")
    return token_id


# -- joining machine side -----------------------------------------------------------------------------------


@dataclass
class ClusterInfo:
    ca_pem: bytes
    service_cidr: str
    cluster_cidr: str
    network_backend: str = ""  # how the cluster's nodes route pods (host-gw or vxlan; "": not published)
    vxlan_vni: int = 0


def check_join_args(server: str, token: str, ca_hash: str) -> None:
    url = urllib.parse.urlparse(server)
    if url.scheme != "https" or not url.hostname:
        raise JoinError(f"the API server URL must be https://HOST:PORT, got {server!r}")
    if not certs.BOOTSTRAP_TOKEN_RE.match(token):
        raise JoinError("--token must be a bootstrap token of the form [a-z0-9]{6}.[a-z0-9]{16} "
                        "(from `pkctl cluster token create`)")
    if not (ca_hash.startswith("sha256:") and len(ca_hash) == 71
            and all(ch in "0123456789abcdef" for ch in ca_hash[7:])):
        raise JoinError("--ca-hash must be sha256:<64 hex digits> (printed by `pkctl cluster token create`)")


def discover(server: str, ca_hash: str) -> ClusterInfo:
    """The cluster's CA from its public cluster-info, trusted only when its public key has the given hash."""
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    path = f"/api/v1/namespaces/{certs.CLUSTER_INFO_NAMESPACE}/configmaps/{certs.CLUSTER_INFO_NAME}"
    code, doc = _send(urllib.request.Request(server.rstrip("/") + path), unverified, server)
    if code != 200:
        raise JoinError(f"cannot read the cluster's public cluster-info at {server} "
                        f"({doc.get('message') or f'HTTP {code}'}); was a token created there "
                        "(`pkctl cluster token create`)?")
    data = doc.get("data") or {}
    try:
        info = yaml.safe_load(data.get("kubeconfig") or "")
        ca_pem = base64.b64decode(info["clusters"][0]["cluster"]["certificate-authority-data"])
        actual = certs.ca_hash(ca_pem)
    except (ValueError, KeyError, IndexError, TypeError, yaml.YAMLError):
        raise JoinError(f"the cluster-info at {server} holds no readable CA certificate") from None
    if actual != ca_hash:
        raise JoinError(f"the cluster's CA has hash {actual}, not the --ca-hash given ({ca_hash}): refusing to "
                        f"trust {server}")
    vni = str(data.get("vxlanVNI") or "")
    return ClusterInfo(ca_pem, data.get("serviceCIDR") or "", data.get("clusterCIDR") or "",
                       str(data.get("networkBackend") or ""), int(vni) if vni.isdigit() else 0)


def _verified(ca_pem: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem.decode())


def bootstrap_certificate(server: str, ca_pem: bytes, token: str, node_name: str,
                          progress: Callable[[str], None] = lambda _: None) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) of the node's client certificate, obtained through a CSR with the token."""
    key_pem, request = certs.new_request(f"{certs.NODE_USER_PREFIX}{node_name}", (certs.NODES_GROUP,))
    body = certs.csr_object("", request, certs.KUBELET_CLIENT_SIGNER, ["digital signature", "client auth"])
    body["metadata"] = {"generateName": "node-csr-"}
    tls = _verified(ca_pem)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    base = server.rstrip("/") + "/apis/certificates.k8s.io/v1/certificatesigningrequests"
    code, doc = _send(urllib.request.Request(base, data=json.dumps(body).encode(), method="POST", headers=headers),
                      tls, server)
    if code == 401:
        raise JoinError("the cluster refused the bootstrap token (unknown, expired or deleted); create a new one "
                        "on the control plane with `pkctl cluster token create`")
    name = _checked(code, doc, "requesting the node's certificate")["metadata"]["name"]
    progress(f"  ✓ certificate requested (CertificateSigningRequest {name}), waiting for approval")
    deadline = time.monotonic() + CSR_WAIT
    while time.monotonic() < deadline:
        code, csr = _send(urllib.request.Request(f"{base}/{name}", headers=headers), tls, server)
        csr = _checked(code, csr, f"reading CertificateSigningRequest {name}")
        for bad in ("Denied", "Failed"):
            c = certs.condition(csr, bad)
            if c is not None:
                raise JoinError(f"CertificateSigningRequest {name} was {bad.lower()}: "
                                f"{c.get('message') or c.get('reason') or ''}")
        issued = (csr.get("status") or {}).get("certificate")
        if issued:
            return key_pem, base64.b64decode(issued)
        time.sleep(0.5)
    raise JoinError(f"CertificateSigningRequest {name} was not signed within {CSR_WAIT:.0f}s; is the "
                    "controller-manager running with the cluster's CA (csrapproving, csrsigning)?")


def write_credentials(home: Home, server: str, ca_pem: bytes, key_pem: bytes, cert_pem: bytes) -> None:
    """The cluster CA, the node's key and certificate, and its kubeconfig (naming those files)."""
    pki = home.pki
    pki.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki.ca_cert.write_bytes(ca_pem)
    write_private(pki.key("kubelet-client"), key_pem)
    pki.cert("kubelet-client").write_bytes(cert_pem)
    doc = kubeconfig.build(server, None)
    doc["clusters"][0]["cluster"]["certificate-authority"] = str(pki.ca_cert)
    doc["users"][0]["user"] = {"client-certificate": str(pki.cert("kubelet-client")),
                               "client-key": str(pki.key("kubelet-client"))}
    kubeconfig.write(Path(home.node_kubeconfig), doc)
