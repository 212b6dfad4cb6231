"""RBAC as pure logic: request info, rule matching, bindings, escalation (no server)."""
from __future__ import annotations

from typing import Any

import pytest

from apiserver.authz import policy as bootstrap
from apiserver.authz import requestinfo
from apiserver.authz.authorizer import Authorizer, denied
from apiserver.authz.rbac import Attributes, Rule, StaticPolicy, UserInfo, authorize, covers, escalation_message
from apiserver.kinds import strategy_for
from pklib.resources import CLUSTERROLEBINDINGS, CLUSTERROLES, ROLEBINDINGS, ROLES

G = "rbac.authorization.k8s.io"
ALICE = UserInfo("alice", groups=("devs", "system:authenticated"))


def role(name: str, rules: list[dict[str, Any]], namespace: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": "Role" if namespace else "ClusterRole", "metadata": meta, "rules": rules}


def binding(name: str, ref_kind: str, ref: str, subjects: list[dict[str, Any]], namespace: str = ""
            ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": "RoleBinding" if namespace else "ClusterRoleBinding", "metadata": meta,
            "roleRef": {"apiGroup": G, "kind": ref_kind, "name": ref}, "subjects": subjects}


USER = [{"kind": "User", "name": "alice", "apiGroup": G}]
POLICY = StaticPolicy([
    role("pod-reader", [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods", "pods/log"]}]),
    role("one-cm", [{"verbs": ["get", "update"], "apiGroups": [""], "resources": ["configmaps"],
                     "resourceNames": ["app-config"]}]),
    role("status-writer", [{"verbs": ["patch"], "apiGroups": ["*"], "resources": ["*/status"]}]),
    role("health", [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/logs/*"]}]),
    role("deployer", [{"verbs": ["create", "delete"], "apiGroups": ["apps"], "resources": ["deployments"]}],
         namespace="team"),
    # A ClusterRole bound in one namespace only grants there.
    binding("read-pods", "ClusterRole", "pod-reader", USER, namespace="team"),
    binding("cm", "ClusterRole", "one-cm", [{"kind": "Group", "name": "devs", "apiGroup": G}]),
    binding("status", "ClusterRole", "status-writer", [{"kind": "ServiceAccount", "name": "ctl",
                                                        "namespace": "kube-system"}]),
    binding("health", "ClusterRole", "health", USER),
    binding("deploy", "Role", "deployer", USER, namespace="team"),
    binding("dangling", "Role", "missing", USER, namespace="team"),
])
SA = UserInfo("system:serviceaccount:kube-system:ctl", groups=("system:serviceaccounts",))


def res(user: UserInfo, verb: str, resource: str, namespace: str = "", group: str = "", name: str = "",
        sub: str = "") -> Attributes:
    return Attributes(verb, True, namespace, group, "v1", resource, sub, name, user=user)


def url(user: UserInfo, verb: str, path: str) -> Attributes:
    return Attributes(verb, False, path=path, user=user)


@pytest.mark.parametrize("attrs,allowed", [
    (res(ALICE, "list", "pods", "team"), True),
    (res(ALICE, "watch", "pods", "team"), True),
    (res(ALICE, "delete", "pods", "team", name="p"), False),  # verb not granted
    (res(ALICE, "list", "pods", "other"), False),  # ClusterRole bound by a RoleBinding: its namespace only
    (res(ALICE, "list", "pods"), False),  # nor cluster-wide
    (res(ALICE, "get", "pods", "team", name="p", sub="log"), True),  # subresource listed
    (res(ALICE, "get", "pods", "team", name="p", sub="exec"), False),  # subresource not listed
    (res(ALICE, "get", "configmaps", "any", name="app-config"), True),  # group binding + resourceNames
    (res(ALICE, "get", "configmaps", "any", name="other"), False),
    (res(ALICE, "list", "configmaps", "any"), False),  # a list has no name: resourceNames never match it
    (res(ALICE, "create", "deployments", "team", "apps"), True),  # Role in its own namespace
    (res(ALICE, "create", "deployments", "team", ""), False),  # wrong API group
    (res(ALICE, "create", "deployments", "other", "apps"), False),
    (res(SA, "patch", "deployments", "x", "apps", "d", "status"), True),  # "*/status"
    (res(SA, "patch", "deployments", "x", "apps", "d", "scale"), False),
    (res(SA, "patch", "deployments", "x", "apps", "d"), False),
    (res(UserInfo("system:serviceaccount:default:ctl"), "patch", "pods", "x", "", "p", "status"), False),
    (url(ALICE, "get", "/healthz"), True),
    (url(ALICE, "get", "/logs/kube.log"), True),  # prefix match with "*"
    (url(ALICE, "post", "/healthz"), False),
    (url(ALICE, "get", "/metrics"), False),
    (res(UserInfo("bob"), "list", "pods", "team"), False),
])
def test_rbac_decisions(attrs: Attributes, allowed: bool) -> None:
    assert authorize(POLICY, attrs).allowed is allowed


def test_allowed_reason_and_resolution_errors() -> None:
    assert authorize(POLICY, res(ALICE, "list", "pods", "team")).reason == (
        'RBAC: allowed by RoleBinding "read-pods/team" of ClusterRole "pod-reader" to User "alice"')
    assert authorize(POLICY, res(ALICE, "create", "secrets", "team")).reason == (
        f'RBAC: role.{G} "missing" not found')


def test_superuser_group_bypasses_rbac() -> None:
    admin = UserInfo("root", groups=("system:masters",))
    assert Authorizer(lambda: StaticPolicy(())).authorize(res(admin, "delete", "nodes", name="n")).allowed


def test_bootstrap_policy_grants_what_kubernetes_grants() -> None:
    p = StaticPolicy([*bootstrap.cluster_roles(), *bootstrap.cluster_role_bindings()])
    anyone = UserInfo("carol", groups=("system:authenticated",))
    assert authorize(p, res(anyone, "create", "selfsubjectaccessreviews", group="authorization.k8s.io")).allowed
    assert authorize(p, url(anyone, "get", "/apis/apps/v1")).allowed
    assert not authorize(p, res(anyone, "list", "pods", "default")).allowed
    sched = UserInfo("system:kube-scheduler", groups=("system:authenticated",))
    assert authorize(p, res(sched, "create", "pods", "ns", name="p", sub="binding")).allowed
    assert authorize(p, res(sched, "update", "leases", "kube-system", "coordination.k8s.io", "kube-scheduler")).allowed
    assert not authorize(p, res(sched, "update", "leases", "kube-system", "coordination.k8s.io", "other")).allowed
    assert not authorize(p, res(sched, "create", "secrets", "ns")).allowed
    node = UserInfo("system:node:n1", groups=("system:nodes", "system:authenticated"))
    assert authorize(p, res(node, "patch", "nodes", name="n1", sub="status")).allowed
    assert not authorize(p, res(node, "delete", "nodes", name="n1")).allowed
    proxy = UserInfo("system:kube-proxy", groups=("system:authenticated",))
    assert authorize(p, res(proxy, "watch", "endpointslices", group="discovery.k8s.io")).allowed
    assert not authorize(p, res(proxy, "create", "services", "ns")).allowed


@pytest.mark.parametrize("method,path,query,expect", [
    ("GET", "/api/v1/namespaces/ns/pods", {}, (True, "list", "", "ns", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, (True, "watch", "", "ns", "pods", "", "")),
    ("GET", "/api/v1/pods", {}, (True, "list", "", "", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods/p/log", {}, (True, "get", "", "ns", "pods", "log", "p")),
    ("POST", "/api/v1/namespaces/ns/pods/p/binding", {}, (True, "create", "", "ns", "pods", "binding", "p")),
    ("DELETE", "/apis/apps/v1/namespaces/ns/deployments", {}, (True, "deletecollection", "apps", "ns",
                                                               "deployments", "", "")),
    ("DELETE", "/apis/apps/v1/namespaces/ns/deployments/d", {}, (True, "delete", "apps", "ns", "deployments", "",
                                                                 "d")),
    ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d/scale", {}, (True, "patch", "apps", "ns", "deployments",
                                                                      "scale", "d")),
    ("PUT", "/api/v1/namespaces/ns", {}, (True, "update", "", "ns", "namespaces", "", "ns")),
    ("PUT", "/api/v1/namespaces/ns/finalize", {}, (True, "update", "", "ns", "namespaces", "finalize", "ns")),
    ("GET", "/api/v1/nodes", {"fieldSelector": "metadata.name=n1"}, (True, "list", "", "", "nodes", "", "n1")),
    ("GET", "/api/v1/watch/namespaces/ns/pods", {}, (True, "watch", "", "ns", "pods", "", "")),
    ("GET", "/api/v1", {}, (False, "get", "", "", "", "", "")),
    ("GET", "/apis/apps/v1", {}, (False, "get", "", "", "", "", "")),
    ("GET", "/healthz", {}, (False, "get", "", "", "", "", "")),
    ("POST", "/metrics", {}, (False, "post", "", "", "", "", "")),
])
def test_request_info(method: str, path: str, query: dict[str, str], expect: tuple[Any, ...]) -> None:
    info = requestinfo.parse(method, path, query)
    assert (info.resource_request, info.verb, info.api_group, info.namespace, info.resource, info.subresource,
            info.name) == expect


def test_forbidden_messages() -> None:
    bob = UserInfo("bob")
    assert denied(res(bob, "list", "pods", "default"), "").message == (
        'pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default"')
    assert denied(res(bob, "get", "nodes", name="n1"), "").message == (
        'nodes "n1" is forbidden: User "bob" cannot get resource "nodes" in API group "" at the cluster scope')
    assert denied(res(bob, "get", "pods", "ns", name="p", sub="log"), "").message == (
        'pods "p" is forbidden: User "bob" cannot get resource "pods/log" in API group "" in the namespace "ns"')
    assert denied(res(bob, "create", "deployments", "ns", "apps"), "").message == (
        'deployments.apps is forbidden: User "bob" cannot create resource "deployments" in API group "apps" '
        'in the namespace "ns"')
    assert denied(url(bob, "get", "/metrics"), "").message == 'forbidden: User "bob" cannot get path "/metrics"'


def test_covers_and_escalation_message() -> None:
    owner = [Rule(("get", "list"), ("",), ("pods",)), Rule(("*",), ("apps",), ("*/scale",)),
             Rule(("get",), ("",), ("configmaps",), ("a",)), Rule(("get",), non_resource_urls=("/logs/*",))]
    assert covers(owner, [Rule(("get",), ("",), ("pods",))]) == []
    assert covers(owner, [Rule(("patch",), ("apps",), ("deployments/scale",))]) == []
    assert covers(owner, [Rule(("get",), ("",), ("configmaps",), ("a",))]) == []
    assert covers(owner, [Rule(("get",), non_resource_urls=("/logs/x",))]) == []
    # Names restrict: a rule for every configmap is not covered by one for "a".
    assert covers(owner, [Rule(("get",), ("",), ("configmaps",))]) == [Rule(("get",), ("",), ("configmaps",))]
    missing = covers(owner, [Rule(("get", "create", "delete"), ("",), ("pods", "secrets"))])
    assert escalation_message(ALICE, missing, []) == (
        'user "alice" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not '
        'currently held:\n{APIGroups:[""], Resources:["pods"], Verbs:["create" "delete"]}\n'
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "create" "delete"]}')


def _causes(res_: Any, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [f"{c['field']}: {c['message']}" for c in strategy_for(res_).validate(obj, old)]


def test_validation_messages() -> None:
    assert _causes(ROLES, {"metadata": {"name": "r", "namespace": "n"},
                          "rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]}]}) == [
        'rules[0].nonResourceURLs: Invalid value: ["/x"]: namespaced rules cannot apply to non-resource URLs']
    assert _causes(CLUSTERROLES, {"metadata": {"name": "a/b"}, "rules": [
        {"verbs": ["get"], "nonResourceURLs": ["/x"], "resources": ["pods"]}]}) == [
        "metadata.name: Invalid value: \"a/b\": may not contain '/'",
        'rules[0].nonResourceURLs: Invalid value: ["/x"]: rules cannot apply to both regular resources and '
        'non-resource URLs']
    rb = {"metadata": {"name": "b", "namespace": "n"}, "roleRef": {"apiGroup": "x", "kind": "Pod", "name": ""},
          "subjects": [{"kind": "Robot", "name": "r"}, {"kind": "User", "name": ""}]}
    strategy_for(ROLEBINDINGS).default(rb)
    assert _causes(ROLEBINDINGS, rb) == [
        f'roleRef.apiGroup: Unsupported value: "x": supported values: "{G}"',
        'roleRef.kind: Unsupported value: "Pod": supported values: "Role", "ClusterRole"',
        "roleRef.name: Required value",
        'subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"',
        "subjects[1].name: Required value"]
    crb = {"metadata": {"name": "c"}, "roleRef": {"apiGroup": G, "kind": "Role", "name": "x"},
           "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}
    assert _causes(CLUSTERROLEBINDINGS, crb) == [
        'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',
        "subjects[0].namespace: Required value"]
    old = {"metadata": {"name": "c", "resourceVersion": "1"}, "roleRef": {"apiGroup": G, "kind": "ClusterRole",
                                                                          "name": "view"}}
    new = {"metadata": {"name": "c"}, "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "edit"}}
    assert _causes(CLUSTERROLEBINDINGS, new, old) == [
        f'roleRef: Invalid value: {{"apiGroup":"{G}","kind":"ClusterRole","name":"edit"}}: cannot change roleRef']


class FakeGraph:
    def __init__(self, pods: list[dict[str, Any]], claims: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.pods, self.claims = pods, claims

    def pods_on_node(self, node: str, namespace: str | None) -> list[dict[str, Any]]:
        return [p for p in self.pods if p["spec"].get("nodeName") == node
                and (namespace is None or p["metadata"]["namespace"] == namespace)]

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next((p for p in self.pods if (p["metadata"]["namespace"], p["metadata"]["name"]) == (namespace, name)),
                    None)

    def claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.claims.get((namespace, name))


GRAPH = FakeGraph([
    {"metadata": {"name": "a", "namespace": "ns"},
     "spec": {"nodeName": "n1", "imagePullSecrets": [{"name": "pull"}],
              "volumes": [{"name": "v", "secret": {"secretName": "vol"}},
                          {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                          {"name": "p", "projected": {"sources": [{"configMap": {"name": "proj"}}]}}],
              "containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env",
                                                                                               "key": "k"}}}],
                              "envFrom": [{"configMapRef": {"name": "cm"}}]}]}},
    {"metadata": {"name": "b", "namespace": "ns"},
     "spec": {"nodeName": "n2", "volumes": [{"name": "v", "secret": {"secretName": "other"}}], "containers": []}},
], {("ns", "data"): {"spec": {"volumeName": "pv-1"}}})
N1 = UserInfo("system:node:n1", groups=("system:nodes", "system:authenticated"))


@pytest.mark.parametrize("attrs,allowed,reason", [
    (res(N1, "get", "secrets", "ns", name="vol"), True, ""),
    (res(N1, "get", "secrets", "ns", name="env"), True, ""),
    (res(N1, "get", "secrets", "ns", name="pull"), True, ""),
    (res(N1, "get", "configmaps", "ns", name="cm"), True, ""),
    (res(N1, "get", "configmaps", "ns", name="proj"), True, ""),
    (res(N1, "get", "persistentvolumeclaims", "ns", name="data"), True, ""),
    (res(N1, "get", "persistentvolumes", name="pv-1"), True, ""),
    (res(N1, "get", "persistentvolumes", name="pv-2"), False, "no relationship found between node 'n1' and this object"),
    (res(N1, "get", "secrets", "ns", name="other"), False, "no relationship found between node 'n1' and this object"),
    (res(N1, "get", "secrets", "elsewhere", name="vol"), False,
     "no relationship found between node 'n1' and this object"),
    (res(N1, "list", "secrets", "ns"), False, "can only get individual resources of this type"),
    (res(N1, "update", "secrets", "ns", name="vol"), False, "can only read resources of this type"),
    (res(N1, "update", "leases", "kube-node-lease", "coordination.k8s.io", "n1"), True, ""),
    (res(N1, "update", "leases", "kube-node-lease", "coordination.k8s.io", "n2"), False,
     "can only access node lease with the same name as the requesting node"),
    (res(N1, "patch", "nodes", name="n1", sub="status"), True, ""),  # RBAC's system:node role decides
    # NodeRestriction: its own Node, and only pods bound to it
    (res(N1, "patch", "nodes", name="n2", sub="status"), False, "node 'n1' is not allowed to modify node 'n2'"),
    (res(N1, "delete", "nodes", name="n2"), False, "node 'n1' is not allowed to modify node 'n2'"),
    (res(N1, "patch", "pods", "ns", name="a", sub="status"), True, ""),
    (res(N1, "update", "pods", "ns", name="b", sub="status"), False,
     "node 'n1' can only update pod status for pods with spec.nodeName set to itself"),
    (res(N1, "delete", "pods", "ns", name="a"), True, ""),
    (res(N1, "delete", "pods", "ns", name="b"), False, "node 'n1' can only delete pods with spec.nodeName set to itself"),
    (res(N1, "create", "pods", "ns", name="b", sub="eviction"), False,
     "node 'n1' can only evict pods with spec.nodeName set to itself"),
    (res(N1, "delete", "pods", "ns", name="gone"), True, ""),  # the handler answers 404
])
def test_node_authorizer(attrs: Attributes, allowed: bool, reason: str) -> None:
    p = StaticPolicy([*bootstrap.cluster_roles(), *bootstrap.cluster_role_bindings()])
    decision = Authorizer(lambda: p, GRAPH).authorize(attrs)
    assert (decision.allowed, decision.reason if not allowed else "") == (allowed, reason)
    # Without the Node authorizer, the system:node role alone would let it read any secret.
    if attrs.resource == "secrets" and attrs.verb == "get":
        assert Authorizer(lambda: p).authorize(attrs).allowed


def test_bootstrap_policy_covers_the_batch_controllers_and_users() -> None:
    p = StaticPolicy([*bootstrap.cluster_roles(), *bootstrap.cluster_role_bindings()])
    cm = UserInfo("system:kube-controller-manager", groups=("system:authenticated",))
    for verb, resource, sub in (("create", "jobs", ""), ("update", "jobs", "status"), ("delete", "jobs", ""),
                                ("update", "cronjobs", "status"), ("watch", "cronjobs", "")):
        assert authorize(p, res(cm, verb, resource, "ns", "batch", sub=sub)).allowed, (verb, resource, sub)
    assert authorize(p, res(cm, "patch", "pods", "ns", name="p", sub="status")).allowed  # DisruptionTarget
    assert authorize(p, res(cm, "create", "pods", "ns")).allowed
    sched = UserInfo("system:kube-scheduler", groups=("system:authenticated",))
    assert authorize(p, res(sched, "patch", "pods", "ns", name="p", sub="status")).allowed
    edit = {r["metadata"]["name"]: r for r in bootstrap.cluster_roles()}["edit"]
    batch_rules = [r for r in edit["rules"] if "batch" in r.get("apiGroups", [])]
    assert any("create" in r["verbs"] and {"jobs", "cronjobs"} <= set(r["resources"]) for r in batch_rules)
