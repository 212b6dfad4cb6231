"""ServiceAccount tokens against a real apiserver: TokenRequest, TokenReview, SA bearer tokens under RBAC,
bound tokens dying with their pod, the ServiceAccount admission plugin, the `kubernetes` Service, and kubectl."""
from __future__ import annotations

import time
from typing import Any, AsyncIterator, Iterator

import aiohttp
import pytest

from apiserver import satokens
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import (CLUSTERROLEBINDINGS, ENDPOINTS, ENDPOINTSLICES, PODS, ROLEBINDINGS,
                             SECRETS, SERVICEACCOUNTS, SERVICES, TOKENREVIEWS)
from tests.support.controlplane import (SA_ISSUER, ApiServer, Etcd, _stop, ca_context, make_test_pki, scratch_namespace,
                                        service_account_flags, start_apiserver)
from tests.support.kubectl import Kubectl
from tests.util import unique, wait_for

G = "rbac.authorization.k8s.io"
NODE = "sa-test-node"
USERS = {f"system:node:{NODE}": ("system:nodes",), "reviewer": ()}
ADVERTISED = "192.0.2.10"  # TEST-NET-1: written into Endpoints only, never dialled
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def server(session_tmp: str, etcd: Etcd) -> Iterator[ApiServer]:
    a = start_apiserver(session_tmp, etcd.url, tls=True, identities=USERS,
                        extra=[*service_account_flags(session_tmp), "--advertise-address", ADVERTISED,
                               "--service-cluster-ip-range", "10.96.0.0/12"])
    yield a
    _stop(a.proc)


@pytest.fixture
async def admin(server: ApiServer, session_tmp: str) -> AsyncIterator[Client]:
    c = Client(server.url, server.token, ssl=ca_context(session_tmp))
    yield c
    await c.close()


@pytest.fixture
async def ns(admin: Client) -> AsyncIterator[str]:
    async with scratch_namespace(admin, "sa") as name:
        yield name


async def _sa(c: Client, ns: str, name: str, **fields: Any) -> Obj:
    obj: Obj = await c.create(SERVICEACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                 "metadata": {"name": name}, **fields}, ns)
    return obj


async def _token(c: Client, ns: str, sa: str, **spec: Any) -> Obj:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    out: Obj = await c.request("POST", SERVICEACCOUNTS.path(ns, sa, "token"), body=body)
    return out


async def _status_as(server: ApiServer, tmp: str, token: str, path: str) -> int:
    async with aiohttp.ClientSession() as s:
        async with s.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, ssl=ca_context(tmp)) as r:
            return r.status


def _pod(name: str, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


async def test_token_request_and_review(admin: Client, ns: str) -> None:
    sa = await _sa(admin, ns, "robot")
    out = await _token(admin, ns, "robot")
    assert out["kind"] == "TokenRequest" and out["apiVersion"] == "authentication.k8s.io/v1"
    assert out["spec"]["audiences"] == [SA_ISSUER] and out["spec"]["expirationSeconds"] == 3600
    token = out["status"]["token"]
    expiry = out["status"]["expirationTimestamp"]
    assert expiry.endswith("Z") and expiry > time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3500))
    review = await admin.create(TOKENREVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                               "spec": {"token": token}})
    status = review["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == f"system:serviceaccount:{ns}:robot"
    assert status["user"]["uid"] == sa["metadata"]["uid"]
    assert status["user"]["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{ns}",
                                        "system:authenticated"]
    assert status["audiences"] == [SA_ISSUER]
    bad = await admin.create(TOKENREVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                            "spec": {"token": token[:-4] + "AAAA"}})
    assert not bad["status"].get("authenticated") and "invalid bearer token" in bad["status"]["error"]


async def test_token_request_validation(admin: Client, ns: str) -> None:
    await _sa(admin, ns, "robot")
    with pytest.raises(ApiError) as e:
        await _token(admin, ns, "robot", expirationSeconds=10)
    assert e.value.code == 422
    assert e.value.message == ('TokenRequest.authentication.k8s.io "robot" is invalid: spec.expirationSeconds: '
                               'Invalid value: 10: may not specify a duration less than 10 minutes')
    with pytest.raises(ApiError) as e:
        await _token(admin, ns, "robot", boundObjectRef={"kind": "Node", "apiVersion": "v1", "name": "x"})
    assert e.value.code == 422 and "spec.boundObjectRef.kind" in e.value.message
    with pytest.raises(ApiError) as e:
        await _token(admin, ns, "nobody")
    assert e.value.code == 404 and e.value.message == 'serviceaccounts "nobody" not found'
    with pytest.raises(ApiError) as e:
        await _token(admin, ns, "robot", boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "gone"})
    assert e.value.code == 404 and e.value.message == 'pods "gone" not found'


async def test_service_account_token_is_authorized_by_rbac(server: ApiServer, session_tmp: str, admin: Client,
                                                           ns: str) -> None:
    await _sa(admin, ns, "robot")
    token = (await _token(admin, ns, "robot"))["status"]["token"]
    robot = Client(server.url, token, ssl=ca_context(session_tmp))
    try:
        with pytest.raises(ApiError) as e:
            await robot.list(PODS, ns)
        assert e.value.code == 403
        assert e.value.message == (f'pods is forbidden: User "system:serviceaccount:{ns}:robot" cannot list '
                                   f'resource "pods" in API group "" in the namespace "{ns}"')
        await admin.create(ROLEBINDINGS, {
            "apiVersion": f"{G}/v1", "kind": "RoleBinding", "metadata": {"name": "robot-view"},
            "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": ns}]}, ns)

        async def can_list() -> bool:
            try:
                await robot.list(PODS, ns)
                return True
            except ApiError as err:
                assert err.code == 403
                return False
        await wait_for(can_list, timeout=10)
        with pytest.raises(ApiError) as e:
            await robot.list(SECRETS, ns)
        assert e.value.code == 403
        # The token dies with its ServiceAccount.
        await admin.delete(SERVICEACCOUNTS, "robot", ns)
        assert await _status_as(server, session_tmp, token, PODS.path(ns)) == 401
    finally:
        await robot.close()


async def test_bound_token_stops_working_when_its_pod_is_deleted(server: ApiServer, session_tmp: str,
                                                                 admin: Client, ns: str) -> None:
    await _sa(admin, ns, "robot")
    pod = await admin.create(PODS, _pod("p", serviceAccountName="robot"), ns)
    out = await _token(admin, ns, "robot", boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "p"})
    assert out["spec"]["boundObjectRef"]["uid"] == pod["metadata"]["uid"]
    token = out["status"]["token"]
    assert await _status_as(server, session_tmp, token, "/api") == 200
    review = await admin.create(TOKENREVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                               "spec": {"token": token}})
    assert review["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["p"]
    assert review["status"]["user"]["extra"]["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
    await admin.delete(PODS, "p", ns, grace_period_seconds=0)
    with pytest.raises(ApiError):
        await admin.get(PODS, "p", ns)
    assert await _status_as(server, session_tmp, token, "/api") == 401
    # A token cannot be bound to a pod of another ServiceAccount.
    await admin.create(PODS, _pod("q"), ns)
    with pytest.raises(ApiError) as e:
        await _token(admin, ns, "robot", boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "q"})
    assert e.value.code == 400 and "different serviceaccount" in e.value.message


async def test_expired_foreign_and_wrong_audience_tokens_are_refused(server: ApiServer, session_tmp: str,
                                                                     admin: Client, ns: str) -> None:
    sa = await _sa(admin, ns, "robot")
    uid = sa["metadata"]["uid"]
    pki = make_test_pki(session_tmp)
    ours = satokens.Issuer(satokens.load_private_key(str(pki.sa_key)), SA_ISSUER)
    good, _ = ours.issue(ns, "robot", uid, [SA_ISSUER], 3600)
    assert await _status_as(server, session_tmp, good, "/api") == 200
    expired = satokens.Issuer(ours.key, SA_ISSUER, clock=lambda: time.time() - 7200)
    token, _ = expired.issue(ns, "robot", uid, [SA_ISSUER], 3600)
    assert await _status_as(server, session_tmp, token, "/api") == 401
    review = await admin.create(TOKENREVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                               "spec": {"token": token}})
    assert "service account token has expired" in review["status"]["error"]
    from cryptography.hazmat.primitives.asymmetric import rsa
    foreign = satokens.Issuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), SA_ISSUER)
    token, _ = foreign.issue(ns, "robot", uid, [SA_ISSUER], 3600)
    assert await _status_as(server, session_tmp, token, "/api") == 401
    other = (await _token(admin, ns, "robot", audiences=["vault"]))["status"]["token"]
    assert await _status_as(server, session_tmp, other, "/api") == 401
    review = await admin.create(TOKENREVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                               "spec": {"token": other, "audiences": ["vault"]}})
    assert review["status"]["authenticated"] is True and review["status"]["audiences"] == ["vault"]


async def test_tokenreview_needs_permission(server: ApiServer, session_tmp: str, admin: Client) -> None:
    reviewer = Client(server.url, server.tokens["reviewer"], ssl=ca_context(session_tmp))
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "x"}}
    name = unique("delegator")
    try:
        with pytest.raises(ApiError) as e:
            await reviewer.create(TOKENREVIEWS, dict(body))
        assert e.value.code == 403
        await admin.create(CLUSTERROLEBINDINGS, {
            "apiVersion": f"{G}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"kind": "User", "name": "reviewer", "apiGroup": G}]})

        async def allowed() -> bool:
            try:
                out = await reviewer.create(TOKENREVIEWS, dict(body))
                return out["status"].get("authenticated") is not True
            except ApiError as err:
                assert err.code == 403
                return False
        await wait_for(allowed, timeout=10)
    finally:
        await reviewer.close()


async def test_node_gets_tokens_only_for_its_pods(server: ApiServer, session_tmp: str, admin: Client,
                                                  ns: str) -> None:
    await _sa(admin, ns, "robot")
    await _sa(admin, ns, "other")
    await admin.create(PODS, _pod("mine", serviceAccountName="robot", nodeName=NODE), ns)
    await admin.create(PODS, _pod("theirs", serviceAccountName="other", nodeName="elsewhere"), ns)
    node = Client(server.url, server.tokens[f"system:node:{NODE}"], ssl=ca_context(session_tmp))
    try:
        async def issued() -> bool:
            try:
                await _token(node, ns, "robot", boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "mine"})
                return True
            except ApiError as err:
                assert err.code == 403
                return False
        await wait_for(issued, timeout=10)
        with pytest.raises(ApiError) as e:
            await _token(node, ns, "robot")
        assert e.value.code == 403 and "requested token not bound to a pod" in e.value.message
        with pytest.raises(ApiError) as e:
            await _token(node, ns, "other", boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "theirs"})
        assert e.value.code == 403
        assert e.value.message.startswith(f'serviceaccounts "other" is forbidden: User "system:node:{NODE}" cannot '
                                          f'create resource "serviceaccounts/token"')
    finally:
        await node.close()


async def test_service_account_pull_secrets_reach_its_pods_and_their_node(server: ApiServer, session_tmp: str,
                                                                          admin: Client, ns: str) -> None:
    """The admission plugin copies the ServiceAccount's imagePullSecrets into a pod that has none; the node the
    pod is bound to may then read them (the kubelet pulls with them), other secrets stay out of its reach."""
    await _sa(admin, ns, "puller", imagePullSecrets=[{"name": "regcred"}])
    for name in ("regcred", "unrelated"):
        await admin.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                                     "type": "kubernetes.io/dockerconfigjson",
                                     "data": {".dockerconfigjson": "eyJhdXRocyI6e319"}}, ns)  # {"auths":{}}
    pod = await admin.create(PODS, _pod("pulls", serviceAccountName="puller", nodeName=NODE), ns)
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    own = await admin.create(PODS, _pod("own", serviceAccountName="puller", imagePullSecrets=[{"name": "mine"}]), ns)
    assert own["spec"]["imagePullSecrets"] == [{"name": "mine"}]
    node = Client(server.url, server.tokens[f"system:node:{NODE}"], ssl=ca_context(session_tmp))
    try:
        async def readable() -> bool:
            try:
                return bool(await node.get(SECRETS, "regcred", ns))
            except ApiError as err:
                assert err.code == 403
                return False
        await wait_for(readable, timeout=10)
        with pytest.raises(ApiError) as e:
            await node.get(SECRETS, "unrelated", ns)
        assert e.value.code == 403
    finally:
        await node.close()


async def test_pods_get_the_service_account_volume(admin: Client, ns: str) -> None:
    pod = await admin.create(PODS, _pod("p", initContainers=[{"name": "i", "image": "busybox"}]), ns)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    [volume] = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(volume["name"]) == len("kube-api-access-") + 5
    sources = volume["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert sources[1] == {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
    for c in [*spec["containers"], *spec["initContainers"]]:
        assert {"name": volume["name"], "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"} in c["volumeMounts"]
    off = await admin.create(PODS, _pod("off", automountServiceAccountToken=False), ns)
    assert not off["spec"].get("volumes") and off["spec"]["serviceAccountName"] == "default"
    await _sa(admin, ns, "quiet", automountServiceAccountToken=False)
    quiet = await admin.create(PODS, _pod("quiet", serviceAccountName="quiet"), ns)
    assert not quiet["spec"].get("volumes")
    with pytest.raises(ApiError) as e:
        await admin.create(PODS, _pod("ghost", serviceAccountName="ghost"), ns)
    assert e.value.code == 403
    assert e.value.message == (f'pods "ghost" is forbidden: error looking up service account {ns}/ghost: '
                               f'serviceaccount "ghost" not found')


async def test_kubernetes_service_points_at_the_advertised_address(admin: Client, server: ApiServer) -> None:
    svc = await admin.get(SERVICES, "kubernetes", "default")
    assert svc["spec"]["clusterIP"] == "10.96.0.1"
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP",
                                     "targetPort": int(server.url.rsplit(":", 1)[1])}]
    port = int(server.url.rsplit(":", 1)[1])
    ep = await admin.get(ENDPOINTS, "kubernetes", "default")
    assert ep["subsets"] == [{"addresses": [{"ip": ADVERTISED}],
                              "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
    eps = await admin.get(ENDPOINTSLICES, "kubernetes", "default")
    assert eps["endpoints"][0]["addresses"] == [ADVERTISED]
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"


def test_kubectl_create_token_and_whoami(server: ApiServer, session_tmp: str, ns: str) -> None:
    kubectl = Kubectl(server.kubeconfig)
    kubectl("create", "serviceaccount", "robot", "-n", ns)
    token = kubectl("create", "token", "robot", "-n", ns, "--duration", "15m").stdout.strip()
    assert token.count(".") == 2
    out = kubectl("auth", "whoami", "--token", token, "-o", "jsonpath={.status.userInfo.username}").stdout
    assert out.strip() == f"system:serviceaccount:{ns}:robot"
    r = kubectl("create", "token", "robot", "-n", ns, "--duration", "1m", ok=False)
    assert r.returncode != 0 and "may not specify a duration less than 10 minutes" in r.stderr
