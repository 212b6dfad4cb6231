"""TLS bootstrap against a real apiserver and the real certificate controllers: bootstrap tokens, the
CertificateSigningRequest API (validation, requester identity, approval, Table columns, kubectl certificate
approve|deny), client-certificate authentication, anonymous access to cluster-info only, the token cleaner."""
from __future__ import annotations

import base64
import json
import ssl
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controllers.certificates import sign
from pklib.api import certificates as certs
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import CLUSTERROLEBINDINGS, CLUSTERROLES, CONFIGMAPS, CSRS, NODES, SECRETS
from tests.support.controllers import controller_manager
from tests.support.controlplane import ApiServer, Etcd, _stop, ca_context, make_test_pki, start_apiserver
from tests.support.kubectl import Kubectl
from tests.util import unique, wait_for

Obj = dict[str, Any]
APPROVER = "csr-approver"


@pytest.fixture(scope="module")
def server(session_tmp: str, etcd: Etcd) -> Iterator[ApiServer]:
    pki = make_test_pki(session_tmp)
    a = start_apiserver(session_tmp, etcd.url, tls=True, extra=["--client-ca-file", str(pki.ca_cert)],
                        identities={APPROVER: ()})
    yield a
    _stop(a.proc)


@pytest.fixture
async def admin(server: ApiServer, session_tmp: str) -> AsyncIterator[Client]:
    c = Client(server.url, server.token, ssl=ca_context(session_tmp))
    yield c
    await c.close()


@pytest.fixture
async def controllers(server: ApiServer, session_tmp: str) -> AsyncIterator[None]:
    pki = make_test_pki(session_tmp)
    async with controller_manager(server) as start:
        await start("csrapproving,csrsigning,tokencleaner", "--cluster-signing-cert-file", str(pki.ca_cert),
                    "--cluster-signing-key-file", str(pki.ca_key))
        yield


def _token() -> tuple[str, str]:
    word = unique("t").replace("-", "")[-6:].lower().rjust(6, "0")
    return word, (unique("s").replace("-", "") + "0" * 16)[-16:].lower()


async def _bootstrap_token(admin: Client, expires_in: float | None = 3600) -> str:
    token_id, secret = _token()
    expiration = None if expires_in is None else \
        (datetime.now(timezone.utc) + timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await admin.create(SECRETS, certs.bootstrap_token_secret(token_id, secret, expiration), certs.TOKEN_NAMESPACE)
    return f"{token_id}.{secret}"


async def _get_status(server: ApiServer, tmp: str, path: str, token: str | None = None,
                      ctx: ssl.SSLContext | None = None) -> tuple[int, Obj]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s:
        async with s.get(server.url + path, headers=headers, ssl=ctx or ca_context(tmp)) as r:
            return r.status, await r.json(content_type=None)


def _cert_context(tmp: str, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    ctx = ca_context(tmp)
    d = tempfile.mkdtemp(dir=tmp)
    (Path(d) / "c.crt").write_bytes(cert_pem)
    (Path(d) / "c.key").write_bytes(key_pem)
    ctx.load_cert_chain(str(Path(d) / "c.crt"), str(Path(d) / "c.key"))
    return ctx


async def test_node_bootstraps_a_client_certificate(server: ApiServer, admin: Client, controllers: None,
                                                    session_tmp: str) -> None:
    token = await _bootstrap_token(admin)
    node = unique("boot-node")
    key_pem, request = certs.new_request(f"system:node:{node}", ("system:nodes",))
    async with Client(server.url, token, ssl=ca_context(session_tmp)) as boot:
        name = unique("node-csr")
        created = await boot.create(CSRS, certs.csr_object(name, request, certs.KUBELET_CLIENT_SIGNER,
                                                           ["digital signature", "client auth"]))
        spec = created["spec"]
        assert spec["username"] == f"system:bootstrap:{token.split('.')[0]}"
        assert "system:bootstrappers" in spec["groups"] and "system:authenticated" in spec["groups"]

        async def issued() -> Obj | None:
            csr = await boot.get(CSRS, name)  # bootstrappers may read CSRs
            return csr if (csr.get("status") or {}).get("certificate") else None
        csr = await wait_for(issued, timeout=20, message="the node's certificate")
    assert [c["type"] for c in csr["status"]["conditions"]] == ["Approved"]
    assert csr["status"]["conditions"][0]["reason"] == "AutoApproved"
    cert_pem = base64.b64decode(csr["status"]["certificate"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert certs.subject_of(cert) == (f"system:node:{node}", ["system:nodes"])
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=364) < lifetime <= timedelta(days=366)
    # The certificate authenticates as the node; the Node authorizer (NodeRestriction) applies to it.
    ctx = _cert_context(session_tmp, cert_pem, key_pem)
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    async with aiohttp.ClientSession() as s:
        async with s.post(server.url + "/apis/authentication.k8s.io/v1/selfsubjectreviews", json=body,
                          ssl=ctx) as r:
            assert r.status == 201, await r.text()
            info = (await r.json())["status"]["userInfo"]
    assert info["username"] == f"system:node:{node}" and "system:nodes" in info["groups"]
    status, _ = await _get_status(server, session_tmp, "/api/v1/nodes", ctx=ctx)
    assert status == 200
    status, out = await _get_status(server, session_tmp, "/api/v1/namespaces/kube-system/secrets/anything", ctx=ctx)
    assert status == 403 and "no relationship found between node" in out["message"]


async def test_node_serving_certificates(server: ApiServer, admin: Client, controllers: None,
                                        session_tmp: str) -> None:
    """A node's kubelet-serving CSR for its own Node's addresses is approved and signed (also when the Node
    appears after the CSR); one naming a foreign address stays pending until an admin approves it."""
    pki = make_test_pki(session_tmp)
    node = unique("serving-node")
    # the node's client certificate, as its TLS bootstrap gives it
    key_pem, request = certs.new_request(f"system:node:{node}", ("system:nodes",))
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    client_csr = certs.csr_object("", request, certs.KUBELET_CLIENT_SIGNER, ["digital signature", "client auth"])
    client_cert = sign(client_csr, ca, ca_key, 3600, datetime.now(timezone.utc))
    ctx = _cert_context(session_tmp, client_cert, key_pem)
    addresses = [{"type": "InternalIP", "address": "10.77.0.5"}, {"type": "Hostname", "address": node}]
    own, foreign = unique("serving-own"), unique("serving-foreign")
    for name, ips in ((foreign, ("10.77.0.5", "10.77.0.6")), (own, ("10.77.0.5",))):
        _, req = certs.new_request(f"system:node:{node}", ("system:nodes",), (node,), ips)
        body = certs.csr_object(name, req, certs.KUBELET_SERVING_SIGNER, list(certs.NODE_SERVING_USAGES))
        async with aiohttp.ClientSession() as s:
            async with s.post(server.url + "/apis/certificates.k8s.io/v1/certificatesigningrequests", json=body,
                              ssl=ctx) as r:
                assert r.status == 201, await r.text()
                assert (await r.json())["spec"]["username"] == f"system:node:{node}"
    try:
        created = await admin.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        await admin.update_status(NODES, dict(created, status={"addresses": addresses}))

        async def signed(name: str) -> Obj | None:
            csr = await admin.get(CSRS, name)
            return csr if (csr.get("status") or {}).get("certificate") else None
        csr = await wait_for(lambda: signed(own), timeout=20, message="the node's serving certificate")
        assert csr["status"]["conditions"][0]["reason"] == "AutoApproved"
        cert = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["10.77.0.5"]
        pending = await admin.get(CSRS, foreign)
        assert not (pending.get("status") or {}).get("conditions")
        assert Kubectl(server.kubeconfig)("get", "csr", foreign).stdout.splitlines()[1].split()[-1] == "Pending"
        assert "approved" in Kubectl(server.kubeconfig)("certificate", "approve", foreign).stdout
        await wait_for(lambda: signed(foreign), timeout=20, message="the admin-approved serving certificate")
    finally:
        await admin.delete(NODES, node)


async def test_bootstrap_token_rules(server: ApiServer, admin: Client, controllers: None, session_tmp: str) -> None:
    good = await _bootstrap_token(admin)
    status, _ = await _get_status(server, session_tmp, "/apis/certificates.k8s.io/v1/certificatesigningrequests",
                                  good)
    assert status == 200
    # bootstrappers may not read anything else
    status, _ = await _get_status(server, session_tmp, "/api/v1/namespaces/kube-system/secrets", good)
    assert status == 403
    token_id, secret = good.split(".")
    assert (await _get_status(server, session_tmp, "/api/v1/namespaces", f"{token_id}.{'x' * 16}"))[0] == 401
    unknown_id, unknown_secret = _token()
    assert (await _get_status(server, session_tmp, "/api/v1/namespaces", f"{unknown_id}.{unknown_secret}"))[0] == 401
    # An expired token is refused at once, and the token cleaner removes its Secret.
    expired = await _bootstrap_token(admin, expires_in=-5)
    assert (await _get_status(server, session_tmp, "/apis/certificates.k8s.io/v1/certificatesigningrequests",
                              expired))[0] == 401

    async def cleaned() -> bool:
        try:
            await admin.get(SECRETS, certs.BOOTSTRAP_TOKEN_PREFIX + expired.split(".")[0], certs.TOKEN_NAMESPACE)
        except ApiError as e:
            return e.code == 404
        return False
    await wait_for(cleaned, timeout=15, message="the token cleaner")


async def test_csr_validation(admin: Client) -> None:
    _, request = certs.new_request("someone")
    cases = [
        (dict(request=base64.b64encode(b"not a pem").decode()), "spec.request"),
        (dict(signerName="no-slash"), "spec.signerName"),
        (dict(usages=["client auth", "flying"]), "spec.usages[1]"),
        (dict(usages=[]), "spec.usages"),
        (dict(expirationSeconds=10), "spec.expirationSeconds"),
    ]
    for change, field in cases:
        obj = certs.csr_object(unique("bad-csr"), request, certs.CLIENT_SIGNER, ["client auth"])
        obj["spec"].update(change)
        with pytest.raises(ApiError) as e:
            await admin.create(CSRS, obj)
        assert e.value.code == 422, change
        assert field in [c.get("field") for c in e.value.status.get("details", {}).get("causes", [])], e.value.status


async def test_kubectl_certificate_approve_and_deny(server: ApiServer, admin: Client, controllers: None) -> None:
    kubectl = Kubectl(server.kubeconfig)
    _, request = certs.new_request("jane", ("devs",))
    approve, deny = unique("approve-csr"), unique("deny-csr")
    for name in (approve, deny):
        obj = certs.csr_object(name, request, certs.CLIENT_SIGNER, ["client auth"], expiration_seconds=3600)
        created = await admin.create(CSRS, obj)
        assert created["spec"]["username"] == "admin"  # filled by the apiserver, whatever the client says
    out = kubectl("get", "csr", approve).stdout.splitlines()
    assert out[0].split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    assert out[1].split()[2:] == [certs.CLIENT_SIGNER, "admin", "60m", "Pending"]
    assert "approved" in kubectl("certificate", "approve", approve).stdout
    assert "denied" in kubectl("certificate", "deny", deny).stdout

    async def signed() -> Obj | None:
        csr = await admin.get(CSRS, approve)
        return csr if (csr.get("status") or {}).get("certificate") else None
    csr = await wait_for(signed, timeout=20, message="the approved CSR's certificate")
    cert = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
    assert certs.subject_of(cert) == ("jane", ["devs"])
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(hours=1, minutes=6)
    assert kubectl("get", "csr", approve).stdout.splitlines()[1].split()[-1] == "Approved,Issued"
    denied = await admin.get(CSRS, deny)
    assert [c["type"] for c in denied["status"]["conditions"]] == ["Denied"]
    assert not denied["status"].get("certificate")
    # A user's own kube-apiserver-client CSR is never auto-approved.
    assert kubectl("get", "csr", deny).stdout.splitlines()[1].split()[-1] == "Denied"


async def test_anonymous_reads_only_cluster_info(server: ApiServer, admin: Client, session_tmp: str) -> None:
    path = f"/api/v1/namespaces/kube-public/configmaps/{certs.CLUSTER_INFO_NAME}"
    try:
        await admin.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": certs.CLUSTER_INFO_NAME},
                                        "data": {"kubeconfig": "x"}}, "kube-public")
    except ApiError as e:
        assert e.code == 409
    status, out = await _get_status(server, session_tmp, path)
    assert status == 200 and out["metadata"]["name"] == certs.CLUSTER_INFO_NAME
    status, _ = await _get_status(server, session_tmp, "/api/v1/namespaces/kube-public/configmaps")
    assert status == 401
    status, _ = await _get_status(server, session_tmp, "/api/v1/namespaces/kube-system/configmaps/cluster-info")
    assert status == 401
    assert json.loads(json.dumps(out))["data"]


async def _grant(admin: Client, name: str, rules: list[Obj]) -> None:
    g = "rbac.authorization.k8s.io"
    await admin.create(CLUSTERROLES, {"apiVersion": f"{g}/v1", "kind": "ClusterRole", "metadata": {"name": name},
                                      "rules": rules})
    await admin.create(CLUSTERROLEBINDINGS, {
        "apiVersion": f"{g}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": g, "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": g, "kind": "User", "name": APPROVER}]})


async def test_approving_needs_approve_on_the_signer(server: ApiServer, admin: Client, session_tmp: str) -> None:
    _, request = certs.new_request("someone")
    name = unique("signer-csr")
    await admin.create(CSRS, certs.csr_object(name, request, certs.CLIENT_SIGNER, ["client auth"]))
    role = unique("approver")
    await _grant(admin, role, [{"apiGroups": [certs.GROUP], "verbs": ["get", "update"],
                                "resources": ["certificatesigningrequests", "certificatesigningrequests/approval"]}])
    async with Client(server.url, server.tokens[APPROVER], ssl=ca_context(session_tmp)) as approver:
        async def approve() -> Obj:
            csr = await approver.get(CSRS, name)
            csr["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Test"}]}
            return await approver.update(CSRS, csr, "approval")
        async def readable() -> bool:
            try:
                return bool(await approver.get(CSRS, name))
            except ApiError as e:
                if e.code != 403:
                    raise
                return False  # the new binding is not in the policy cache yet
        await wait_for(readable, timeout=10, message="the approver's role to apply")
        with pytest.raises(ApiError) as e:
            await approve()
        assert e.value.code == 403
        assert f'user not permitted to approve requests with signerName "{certs.CLIENT_SIGNER}"' in e.value.message
        await _grant(admin, role + "-signers", [{"apiGroups": [certs.GROUP], "verbs": ["approve"],
                                                 "resources": ["signers"], "resourceNames": ["kubernetes.io/*"]}])

        async def approved() -> Obj | None:
            try:
                return await approve()
            except ApiError as e:
                if e.code != 403:
                    raise
                return None  # the new binding is not in the policy cache yet
        out = await wait_for(approved, timeout=10, message="approval with approve on kubernetes.io/*")
    assert [c["type"] for c in out["status"]["conditions"]] == ["Approved"]
