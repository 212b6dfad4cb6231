"""RBAC against a real apiserver: users with tokens of their own, bound by RoleBindings, and real kubectl."""
from __future__ import annotations

import os
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from pklib import kubeconfig
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import (CLUSTERROLEBINDINGS, CLUSTERROLES, CONFIGMAPS, PODS, ROLEBINDINGS, ROLES,
                             SECRETS, SELFSUBJECTACCESSREVIEWS, SUBJECTACCESSREVIEWS)
from tests.support.controlplane import (ApiServer, Etcd, _stop, ca_context, make_test_pki, scratch_namespace,
                                        start_apiserver)
from tests.support.kubectl import Kubectl
from tests.util import unique, wait_for, wait_for_sync

G = "rbac.authorization.k8s.io"
USERS = {"alice": (), "bob": ("devs",), "carol": ()}


@pytest.fixture(scope="module")
def server(session_tmp: str, etcd: Etcd) -> Iterator[ApiServer]:
    a = start_apiserver(session_tmp, etcd.url, tls=True, identities=USERS)
    yield a
    _stop(a.proc)


@pytest.fixture
async def admin(server: ApiServer, session_tmp: str) -> AsyncIterator[Client]:
    c = Client(server.url, server.token, ssl=ca_context(session_tmp))
    yield c
    await c.close()


@pytest.fixture
async def alice(server: ApiServer, session_tmp: str) -> AsyncIterator[Client]:
    c = Client(server.url, server.tokens["alice"], ssl=ca_context(session_tmp))
    yield c
    await c.close()


@pytest.fixture
async def ns(admin: Client) -> AsyncIterator[str]:
    async with scratch_namespace(admin, "rbac") as name:
        yield name


def kubectl_as(server: ApiServer, tmp: str, user: str | None = None) -> Kubectl:
    if user is None:
        return Kubectl(server.kubeconfig)
    path = os.path.join(tmp, f"kubeconfig-{user}-{unique('kc')}")
    kubeconfig.write(path, kubeconfig.build(server.url, server.tokens[user],
                                            ca_data=Path(make_test_pki(tmp).ca_cert).read_bytes()))
    return Kubectl(path)


def rolebinding(name: str, ns: str, role_kind: str, role: str, user: str) -> dict[str, object]:
    return {"apiVersion": f"{G}/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": G, "kind": role_kind, "name": role},
            "subjects": [{"kind": "User", "name": user, "apiGroup": G}]}


async def _forbidden(coro: object) -> ApiError:
    with pytest.raises(ApiError) as e:
        await coro  # type: ignore[misc]
    assert e.value.code == 403 and e.value.reason == "Forbidden", e.value.status
    return e.value


async def test_view_binding_lists_but_cannot_create(admin: Client, alice: Client, ns: str) -> None:
    err = await _forbidden(alice.list(PODS, ns))
    assert err.message == (f'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the '
                           f'namespace "{ns}"')
    await admin.create(ROLEBINDINGS, rolebinding("alice-view", ns, "ClusterRole", "view", "alice"), ns)

    async def can_list() -> bool:
        try:
            await alice.list(PODS, ns)
            return True
        except ApiError as e:
            assert e.code == 403
            return False
    await wait_for(can_list, timeout=10)
    err = await _forbidden(alice.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                                     "metadata": {"name": "c"}}, ns))
    assert err.message == (f'configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group '
                           f'"" in the namespace "{ns}"')
    # The view role reads no secrets, and the binding reaches no other namespace nor cluster-scoped kinds.
    err = await _forbidden(alice.list(SECRETS, ns))
    assert err.message.startswith('secrets is forbidden: User "alice" cannot list resource "secrets"')
    err = await _forbidden(alice.list(PODS, "default"))
    assert err.message.endswith('in the namespace "default"')
    err = await _forbidden(alice.get(CLUSTERROLES, "view"))
    assert err.message == (f'clusterroles.{G} "view" is forbidden: User "alice" cannot get resource "clusterroles" '
                           f'in API group "{G}" at the cluster scope')


async def test_escalation_is_refused_unless_held_or_escalate(admin: Client, alice: Client, ns: str) -> None:
    # alice may manage roles and rolebindings in ns (the admin role), which holds nothing on nodes.
    await admin.create(ROLEBINDINGS, rolebinding("alice-admin", ns, "ClusterRole", "admin", "alice"), ns)
    held = {"apiVersion": f"{G}/v1", "kind": "Role", "metadata": {"name": "pods-reader", "namespace": ns},
            "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}

    async def created() -> bool:
        try:
            await alice.create(ROLES, dict(held), ns)
            return True
        except ApiError as e:
            assert e.code == 403 and "cannot create resource" in e.message, e.message
            return False
    await wait_for(created, timeout=10)
    grabby = {"apiVersion": f"{G}/v1", "kind": "Role", "metadata": {"name": "grabby", "namespace": ns},
              "rules": [{"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["nodes", "pods"]}]}
    # A dry run checks it too (kubectl --dry-run=server).
    await _forbidden(alice.request("POST", ROLES.path(ns), body=grabby, params={"dryRun": "All"}))
    err = await _forbidden(alice.create(ROLES, grabby, ns))
    assert err.message == (
        f'roles.{G} "grabby" is forbidden: user "alice" (groups=["system:authenticated"]) is attempting to grant '
        'RBAC permissions not currently held:\n{APIGroups:[""], Resources:["nodes"], Verbs:["get" "delete"]}')
    # Binding a role with more than she holds is refused as well; binding one she holds is fine.
    err = await _forbidden(alice.create(ROLEBINDINGS, rolebinding("carol-admin", ns, "ClusterRole", "cluster-admin",
                                                                  "carol"), ns))
    assert err.message.startswith(f'rolebindings.{G} "carol-admin" is forbidden: user "alice" (groups=')
    await alice.create(ROLEBINDINGS, rolebinding("carol-view", ns, "ClusterRole", "view", "carol"), ns)
    # With the `escalate` verb on roles she may write any Role; with `bind` on a ClusterRole she may bind it.
    await admin.create(ROLES, {"apiVersion": f"{G}/v1", "kind": "Role",
                               "metadata": {"name": "escalator", "namespace": ns},
                               "rules": [{"verbs": ["escalate"], "apiGroups": [G], "resources": ["roles"]},
                                         {"verbs": ["bind"], "apiGroups": [G], "resources": ["clusterroles"],
                                          "resourceNames": ["cluster-admin"]}]}, ns)
    await admin.create(ROLEBINDINGS, rolebinding("alice-escalate", ns, "Role", "escalator", "alice"), ns)

    async def escalated() -> bool:
        try:
            await alice.create(ROLES, dict(grabby, metadata={"name": "grabby", "namespace": ns}), ns)
            return True
        except ApiError as e:
            assert e.code == 403, e.message
            return False
    await wait_for(escalated, timeout=10)
    await alice.create(ROLEBINDINGS, rolebinding("carol-admin", ns, "ClusterRole", "cluster-admin", "carol"), ns)


async def test_access_reviews_and_impersonation(admin: Client, alice: Client, ns: str) -> None:
    await admin.create(ROLEBINDINGS, rolebinding("alice-edit", ns, "ClusterRole", "edit", "alice"), ns)
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"verb": "create", "group": "apps", "resource": "deployments",
                                              "namespace": ns}}}

    async def allowed() -> bool:
        answer = await alice.create(SELFSUBJECTACCESSREVIEWS, dict(review))
        return bool(answer["status"]["allowed"])
    await wait_for(allowed, timeout=10)
    answer = await alice.create(SELFSUBJECTACCESSREVIEWS, dict(review))
    assert answer["status"]["reason"] == (f'RBAC: allowed by RoleBinding "alice-edit/{ns}" of ClusterRole "edit" '
                                          'to User "alice"')
    sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "spec": {"user": "bob", "groups": ["devs"], "resourceAttributes": {"verb": "list", "resource": "pods",
                                                                              "namespace": ns}}}
    assert (await admin.create(SUBJECTACCESSREVIEWS, sar))["status"] == {"allowed": False}
    with pytest.raises(ApiError) as e:
        await admin.create(SUBJECTACCESSREVIEWS, {"spec": {"resourceAttributes": {"verb": "get"}}})
    assert e.value.code == 422 and e.value.message == (
        'SubjectAccessReview "" is invalid: spec.user: Invalid value: "": at least one of user '
        "or group must be specified")
    # Only those allowed to `impersonate` may act as someone else; the admin may.
    err = await _forbidden(alice.request("GET", PODS.path(ns), headers={"Impersonate-User": "bob"}))
    assert err.message == ('users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group '
                           '"" at the cluster scope')
    err = await _forbidden(admin.request("GET", PODS.path(ns), headers={"Impersonate-User": "bob"}))
    assert err.message == f'pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the ' \
                          f'namespace "{ns}"'
    await admin.request("GET", PODS.path(ns), headers={"Impersonate-User": "alice"})


def test_kubectl_auth_can_i_and_get_columns(server: ApiServer, session_tmp: str) -> None:
    admin = kubectl_as(server, session_tmp)
    ns = unique("can-i")
    admin("create", "namespace", ns)
    try:
        admin("create", "rolebinding", "alice-view", "--clusterrole=view", "--user=alice", "-n", ns)
        wait_for_sync(lambda: admin("auth", "can-i", "list", "pods", "-n", ns, "--as", "alice",
                                    ok=False).stdout.strip() == "yes", message="kubectl auth can-i --as alice: yes")
        r = admin("auth", "can-i", "create", "deployments", "-n", ns, "--as", "alice", ok=False)
        assert (r.returncode, r.stdout.strip()) == (1, "no")
        r = kubectl_as(server, session_tmp, "alice")("auth", "can-i", "list", "pods", "-n", ns)
        assert r.stdout.strip() == "yes"
        r = kubectl_as(server, session_tmp, "carol")("auth", "can-i", "create", "deployments", "-n", ns, ok=False)
        assert (r.returncode, r.stdout.strip()) == (1, "no")
        assert admin("auth", "can-i", "create", "deployments", "-n", ns).stdout.strip() == "yes"
        listed = kubectl_as(server, session_tmp, "alice")("auth", "can-i", "--list", "-n", ns).stdout.splitlines()
        assert listed[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
        rows = {line.split()[0]: line for line in listed[1:]}
        assert rows["pods"].endswith("[get list watch]")
        assert "selfsubjectaccessreviews.authorization.k8s.io" in rows
        r = kubectl_as(server, session_tmp, "alice")("get", "pods", "-n", "default", ok=False)
        assert r.returncode == 1 and r.stderr.strip() == (
            'Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API '
            'group "" in the namespace "default"')
        out = admin("get", "rolebindings", "-n", ns, "-o", "wide").stdout.splitlines()
        assert out[0].split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
        assert out[1].split()[:2] == ["alice-view", "ClusterRole/view"] and out[1].split()[-1] == "alice"
        out = admin("get", "clusterroles", "view").stdout.splitlines()
        assert out[0].split() == ["NAME", "CREATED", "AT"] and out[1].split()[0] == "view"
        out = admin("get", "clusterrolebindings", "cluster-admin").stdout.splitlines()
        assert out[1].split()[:2] == ["cluster-admin", "ClusterRole/cluster-admin"]
    finally:
        admin("delete", "namespace", ns, "--wait=false")


async def test_rbac_kinds_round_trip(admin: Client, ns: str) -> None:
    crb = {"apiVersion": f"{G}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": unique("crb")},
           "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "view"},
           "subjects": [{"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "name": "sa", "namespace": ns}]}
    created = await admin.create(CLUSTERROLEBINDINGS, crb)
    # Subject apiGroup defaults as in Kubernetes: the RBAC group for users and groups, none for service accounts.
    assert created["subjects"] == [{"kind": "Group", "name": "devs", "apiGroup": G},
                                   {"kind": "ServiceAccount", "name": "sa", "namespace": ns}]
    with pytest.raises(ApiError) as e:
        await admin.patch(CLUSTERROLEBINDINGS, crb["metadata"]["name"],  # type: ignore[index]
                          {"roleRef": {"name": "edit"}})
    assert e.value.code == 422 and "cannot change roleRef" in e.value.message
    await admin.delete(CLUSTERROLEBINDINGS, crb["metadata"]["name"])  # type: ignore[index]
