"""Joining a machine as a control-plane member, the kubeadm way (`join --control-plane --certificate-key`).

On the cluster, `pkctl cluster token create --control-plane` uploads what every member shares (kubeadm's
`upload-certs`): the cluster CA's certificate and key (pkube has one CA: etcd, the apiserver and the kubelets
all use it), the service-account signing key pair and the apiserver's static token file (every member's
apiserver authenticates the same component and admin tokens), each encrypted with AES-256-GCM under a fresh
random key, into the Secret kube-system/pkube-certs. The key is printed once as `--certificate-key HEX` and is
never stored in the cluster or sent over the network. The Secret is owned by a bootstrap token that expires
after CERTS_TTL (2 h, as kubeadm's), so the token cleaner and the garbage collector remove it. The join token
of such a command carries the extra group CONTROL_PLANE_GROUP, and only that group may `get` the Secret (a
Role + RoleBinding in kube-system, as kubeadm's kubeadm:kubeadm-certs): worker tokens cannot read it.

On the new machine, `pkctl cluster join URL --token T --ca-hash H --control-plane --certificate-key K`
discovers the CA as a worker join does, reads the Secret with the token and decrypts it (a wrong key is
refused), makes its own member certificates from the CA (etcd server and peer, apiserver serving for its IP,
the etcd and kubelet client certificates), adds itself to etcd as a learner through a member's client URL
(MemberAdd isLearner, then etcd starts with --initial-cluster-state existing; MemberPromote once it caught
up: until then the cluster's quorum does not depend on the new member, so a failed join leaves it intact and
is rolled back with MemberRemove), and runs etcd, apiserver and controller-manager + scheduler (leader
elected with the others) under its own supervisor. `cluster down --purge` there removes its etcd member
first (kubeadm reset does the same), while the quorum still counts it.

Reaching the existing members from another machine: a local cluster's members listen on 127.0.0.1. When the
cluster has a cluster network (`up --nodes N`, N > 1), its etcd members also listen on the network's gateway
(the host's address there) and advertise that address, and their certificates name it (home.etcd_host,
components._etcd_flags); the API is already served there by the supervisor's balancer. A joined member's
servers listen on its own address. A cluster without a cluster network cannot take control-plane members
(its etcd only listens on loopback); nor can a home made before this change, until its etcd members' peer
URLs are changed (`etcdctl member update`).
"""
from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pklib.api import certificates as certs

from pkctl.cluster.home import DEFAULT_PORTS, ClusterConfig, Home, Member, pick_port, write_json
from pkctl.cluster.join import JoinError, TOKEN_ALPHABET, _admin, _checked, _send, _verified

CERTS_SECRET = "pkube-certs"
CERTS_NAMESPACE = "kube-system"
CERTS_TTL = 2 * 3600.0  # kubeadm's certificate key lifetime
CONTROL_PLANE_GROUP = "system:bootstrappers:pkube:control-plane"
CERTS_ROLE = "pkube:pkube-certs"
# The files every member shares, by their name in the home's pki dir (tokens.csv: in the home itself).
SHARED_PKI = ("ca.crt", "ca.key", "sa.key", "sa.pub")
TOKENS = "tokens.csv"
CONFIG = "cluster.json"  # what a member's components need of the cluster's configuration
NONCE_BYTES = 12
PROMOTE_WAIT = 60.0  # seconds a learner gets to catch up with the leader
REMOVE_WAIT = 30.0  # seconds a member removal waits for etcd to find the cluster healthy enough
Obj = dict[str, Any]


def check_certificate_key(key: str) -> bytes:
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise JoinError("--certificate-key must be 64 hex digits (printed by `pkctl cluster token create "
                        "--control-plane`)")
    return raw


def encrypt(key: bytes, name: str, data: bytes) -> bytes:
    """nonce + AES-256-GCM ciphertext; the name is authenticated too, so that files cannot be swapped."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, data, name.encode())


def decrypt(key: bytes, name: str, blob: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], name.encode())


# -- cluster side ------------------------------------------------------------------------------------------


def shared_config(cfg: ClusterConfig) -> Obj:
    """What a joining member's components take from the cluster's configuration."""
    return {"serviceCIDR": cfg.service_cidr, "clusterCIDR": cfg.cluster_cidr, "nodeCIDRMaskSize": cfg.node_cidr_mask,
            "nodeMonitorGracePeriod": cfg.node_monitor_grace_period,
            "defaultUnreachableTolerationSeconds": cfg.default_unreachable_toleration_seconds,
            "clusterSigningDuration": cfg.cluster_signing_duration, "eventTTL": cfg.event_ttl,
            "etcdEndpoints": [u.replace("//127.0.0.1:", f"//{cfg.etcd_host}:") for u in cfg.etcd_urls]}


def upload_certs(home: Home, cfg: ClusterConfig) -> str:
    """Store the shared control-plane files encrypted in kube-system/pkube-certs; returns the key (hex)."""
    if not cfg.workers:
        raise JoinError("this cluster's etcd listens on loopback only: a control-plane member can join a cluster "
                        "with a cluster network (`pkctl cluster up --nodes N`, N > 1)")
    key = AESGCM.generate_key(bit_length=256)
    files = {name: (home.pki.dir / name).read_bytes() for name in SHARED_PKI}
    files[TOKENS] = home.tokens_file.read_bytes()
    files[CONFIG] = json.dumps(shared_config(cfg)).encode()
    owner = _ttl_token(home, cfg)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": CERTS_SECRET, "namespace": CERTS_NAMESPACE,
                           "ownerReferences": [{"apiVersion": "v1", "kind": "Secret", "name": owner["name"],
                                                "uid": owner["uid"], "blockOwnerDeletion": True}]},
              "data": {name: base64.b64encode(encrypt(key, name, data)).decode()
                       for name, data in files.items()}}
    path = f"/api/v1/namespaces/{CERTS_NAMESPACE}/secrets"
    code, doc = _admin(home, cfg, "PUT", f"{path}/{CERTS_SECRET}", secret)
    if code == 404:
        code, doc = _admin(home, cfg, "POST", path, secret)
    _checked(code, doc, f"storing {CERTS_NAMESPACE}/{CERTS_SECRET}")
    _ensure_role(home, cfg)
    return key.hex()


def _ttl_token(home: Home, cfg: ClusterConfig) -> Obj:
    """A bootstrap token good for nothing but expiring (kubeadm's 'proxy for managing TTL'): the Secret it owns
    goes with it."""
    token_id = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(6))
    expiration = (datetime.now(timezone.utc) + timedelta(seconds=CERTS_TTL)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = certs.bootstrap_token_secret(token_id, "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(16)),
                                        expiration, f"Proxy for managing TTL for the {CERTS_SECRET} secret")
    for usage in ("usage-bootstrap-authentication", "usage-bootstrap-signing"):
        del body["data"][usage]
    doc = _checked(*_admin(home, cfg, "POST", f"/api/v1/namespaces/{certs.TOKEN_NAMESPACE}/secrets", body),
                   "storing the certificates' TTL token")
    return {"name": doc["metadata"]["name"], "uid": doc["metadata"]["uid"]}


def _ensure_role(home: Home, cfg: ClusterConfig) -> None:
    """Only tokens of CONTROL_PLANE_GROUP may read the Secret (kubeadm's kubeadm:kubeadm-certs)."""
    meta = {"name": CERTS_ROLE, "namespace": CERTS_NAMESPACE}
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/" + CERTS_NAMESPACE
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": dict(meta),
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [CERTS_SECRET],
                       "verbs": ["get"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": dict(meta),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CERTS_ROLE},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": CONTROL_PLANE_GROUP}]}
    for plural, body in (("roles", role), ("rolebindings", binding)):
        code, doc = _admin(home, cfg, "POST", f"{rbac}/{plural}", body)
        if code != 409:
            _checked(code, doc, f"creating {plural[:-1]} {CERTS_ROLE}")


# -- joining machine side ----------------------------------------------------------------------------------


def download_certs(server: str, ca_pem: bytes, token: str, key: bytes) -> dict[str, bytes]:
    """The shared files, read with the bootstrap token and decrypted with the certificate key."""
    req = urllib.request.Request(f"{server.rstrip('/')}/api/v1/namespaces/{CERTS_NAMESPACE}/secrets/{CERTS_SECRET}",
                                 headers={"Authorization": f"Bearer {token}"})
    code, doc = _send(req, _verified(ca_pem), server)
    if code == 401:
        raise JoinError("the cluster refused the bootstrap token (unknown, expired or deleted); create a new one "
                        "on the control plane with `pkctl cluster token create --control-plane`")
    if code == 403:
        raise JoinError("this token may not read the control-plane certificates: join as a control-plane member "
                        "with a token from `pkctl cluster token create --control-plane`")
    if code == 404:
        raise JoinError(f"no control-plane certificates in {CERTS_NAMESPACE}/{CERTS_SECRET} (they expire "
                        f"{CERTS_TTL / 3600:.0f}h after upload): run `pkctl cluster token create --control-plane` "
                        "on the cluster again")
    data = _checked(code, doc, f"reading {CERTS_NAMESPACE}/{CERTS_SECRET}").get("data") or {}
    out = {}
    try:
        for name in (*SHARED_PKI, TOKENS, CONFIG):
            out[name] = decrypt(key, name, base64.b64decode(data[name]))
    except InvalidTag:
        raise JoinError(f"the certificate key does not decrypt {CERTS_NAMESPACE}/{CERTS_SECRET}: wrong "
                        "--certificate-key (or certificates uploaded again since)") from None
    except (KeyError, ValueError):
        raise JoinError(f"{CERTS_NAMESPACE}/{CERTS_SECRET} is damaged: upload it again with `pkctl cluster token "
                        "create --control-plane`") from None
    return out


def prepare_member_home(home: Home, server: str, name: str, ip: str, files: dict[str, bytes],
                        default_home: bool) -> ClusterConfig:
    """The home of a joined control-plane member: the shared files, its own certificates, ports (Kubernetes'
    for the default home, else free ones), its config and kubeconfigs. etcd membership comes next (add_learner)."""
    from pkctl.cluster import pki  # cryptography's x509: only a join needs it
    shared = json.loads(files[CONFIG])
    home.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for d in (home.etcd_data, home.logs, home.run, home.pki.dir):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    for fname in SHARED_PKI:
        pki.write_private(home.pki.dir / fname, files[fname])
    pki.write_private(home.tokens_file, files[TOKENS])
    taken: set[int] = set()

    def choose(port: str) -> int:
        chosen = pick_port(DEFAULT_PORTS[port] if default_home else None, taken)
        taken.add(chosen)
        return chosen
    member = Member(name, ip, choose("etcd_client_port"), choose("etcd_peer_port"), choose("api_port"),
                    choose("control_plane_port"))
    cfg = ClusterConfig(etcd_client_port=member.etcd_client_port, etcd_peer_port=member.etcd_peer_port,
                        api_port=member.api_port, control_plane_port=member.control_plane_port,
                        service_cidr=shared["serviceCIDR"], cluster_cidr=shared["clusterCIDR"], node_name=name,
                        tls=True, node_ip=ip, members=[member], joined=server,
                        node_cidr_mask_size=int(shared["nodeCIDRMaskSize"]),
                        node_monitor_grace_period=float(shared["nodeMonitorGracePeriod"]),
                        default_unreachable_toleration_seconds=float(shared["defaultUnreachableTolerationSeconds"]),
                        cluster_signing_duration=float(shared["clusterSigningDuration"]),
                        event_ttl=float(shared.get("eventTTL") or 0.0),
                        etcd_peers=[u for u in shared["etcdEndpoints"] if u != member.etcd_url])
    pki.ensure(home.pki.dir, ips=[ip], service_ip=str(ipaddress.ip_network(cfg.service_cidr)[1]), etcd_ips=[ip])
    write_json(home.config_file, asdict(cfg))
    home.write_kubeconfigs(cfg)
    return cfg


# -- etcd membership, through etcd's JSON gateway -----------------------------------------------------------


ETCD_RETRY = 15.0  # seconds to retry what a member answers while it is not ready (gRPC code 14, refused)
UNAVAILABLE = 14    # gRPC's code for "try again": e.g. the JSON gateway of a member that just started


def etcd_call(urls: list[str], path: str, body: Obj, tls: ssl.SSLContext, timeout: float = 5.0,
              retry: float = ETCD_RETRY) -> Obj:
    """POST to the first member that answers; JoinError with the last answer when none does. A member that is
    not ready yet (unavailable, refusing connections: a cluster that was just started) is asked again for up to
    `retry` seconds; any other answer is final."""
    deadline = time.monotonic() + retry
    while True:
        last, transient = "no etcd endpoint known", False
        for url in urls:
            req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=timeout, context=tls) as r:
                    return json.loads(r.read() or b"{}")  # type: ignore[no-any-return]
            except urllib.error.HTTPError as e:
                try:
                    doc = json.loads(e.read())
                    last, transient = f"{url}: {doc.get('error') or e.code}", doc.get("code") == UNAVAILABLE
                except ValueError:
                    last, transient = f"{url}: HTTP {e.code}", e.code == 503
            except (OSError, ValueError) as e:
                last, transient = f"{url}: {getattr(e, 'reason', e)}", isinstance(e, OSError)
        if not transient or time.monotonic() > deadline:
            raise JoinError(f"etcd {path} failed: {last}")
        time.sleep(0.5)


def add_learner(urls: list[str], tls: ssl.SSLContext, name: str, peer_url: str) -> tuple[str, str]:
    """(member ID, --initial-cluster for the new member): MemberAdd as a learner."""
    if any(m.get("name") == name for m in member_list(urls, tls)):
        raise JoinError(f"the cluster has an etcd member named {name} already: join with another --node-name")
    doc = etcd_call(urls, "/v3/cluster/member/add", {"peerURLs": [peer_url], "isLearner": True}, tls)
    member_id = str(doc["member"]["ID"])
    initial = []
    for m in doc.get("members") or []:
        for url in m.get("peerURLs") or []:
            initial.append(f"{name if str(m.get('ID')) == member_id else m.get('name')}={url}")
    return member_id, ",".join(initial)


def promote(urls: list[str], tls: ssl.SSLContext, member_id: str, wait: float = PROMOTE_WAIT) -> None:
    """MemberPromote once the learner caught up with the leader (etcd refuses it before)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            etcd_call(urls, "/v3/cluster/member/promote", {"ID": member_id}, tls)
            return
        except JoinError as e:
            if time.monotonic() > deadline:
                raise JoinError(f"the new etcd member did not catch up within {wait:.0f}s ({e})") from None
        time.sleep(0.5)


def remove_member(urls: list[str], tls: ssl.SSLContext, name: str = "", member_id: str = "") -> bool:
    """MemberRemove by ID, or by name (False: no such member). Give the other members' URLs first: a member
    removing itself may close the connection before it answers."""
    if not member_id:
        member_id = next((str(m["ID"]) for m in member_list(urls, tls) if m.get("name") == name), "")
        if not member_id:
            return False
    deadline = time.monotonic() + REMOVE_WAIT
    while True:
        try:
            etcd_call(urls, "/v3/cluster/member/remove", {"ID": member_id}, tls)
            return True
        except JoinError as e:
            if "member not found" in str(e):  # an earlier try went through after all
                return True
            # etcd's strict reconfiguration check: the member serving the request must have been connected to
            # enough of the others for 5 s (a member that just started, or just reconnected, is not yet)
            if "unhealthy cluster" not in str(e) or time.monotonic() > deadline:
                raise
        time.sleep(1.0)


def member_list(urls: list[str], tls: ssl.SSLContext) -> list[Obj]:
    return list(etcd_call(urls, "/v3/cluster/member/list", {}, tls).get("members") or [])
