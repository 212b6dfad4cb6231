"""The default roles and bindings the apiserver ensures at start (Kubernetes' bootstrappolicy/policy.go).

The user-facing cluster-admin, admin, edit and view keep Kubernetes' rules, restricted to the kinds pkube
serves (Kubernetes assembles admin/edit/view by aggregation; pkube writes the result out). Each component
gets a role with what it uses: system:kube-scheduler, system:kube-controller-manager (Kubernetes splits it
into one role per controller; here one role holds what pkube's controllers use), system:node (kubelets,
bound to the group system:nodes), system:node-proxier (bound to the user system:kube-proxy), system:kube-dns
(bound to the user system:kube-dns) and system:pkube-ingress-controller (bound to the user of that name).
"""
from __future__ import annotations

from typing import Any

from pklib.api.ingress import INGRESS_CONTROLLER_USER as INGRESS_CONTROLLER

from .rbac import RBAC_GROUP

Obj = dict[str, Any]
READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
LEGACY, APPS, COORDINATION, DISCOVERY, EVENTS = "", "apps", "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io"
BATCH = "batch"
POLICY = "policy"
AUTOSCALING, METRICS = "autoscaling", "metrics.k8s.io"
AUTHORIZATION, STORAGE, SCHEDULING = "authorization.k8s.io", "storage.k8s.io", "scheduling.k8s.io"
AUTHENTICATION = "authentication.k8s.io"
NETWORKING = "networking.k8s.io"
AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}


def rule(verbs: tuple[str, ...] | str, groups: tuple[str, ...] | str = (), resources: tuple[str, ...] = (),
         names: tuple[str, ...] = (), urls: tuple[str, ...] = ()) -> Obj:
    out: Obj = {"verbs": [verbs] if isinstance(verbs, str) else list(verbs)}
    if urls:
        out["nonResourceURLs"] = list(urls)
        return out
    out["apiGroups"] = [groups] if isinstance(groups, str) else list(groups)
    out["resources"] = list(resources)
    if names:
        out["resourceNames"] = list(names)
    return out


def _events() -> Obj:
    return rule(("create", "update", "patch"), (LEGACY, EVENTS), ("events",))


_VIEW = [
    rule(READ, LEGACY, ("pods", "serviceaccounts", "services", "services/status", "endpoints",
                        "persistentvolumeclaims", "persistentvolumeclaims/status", "configmaps")),
    rule(READ, LEGACY, ("bindings", "events", "pods/status", "namespaces/status", "pods/log")),
    rule(READ, LEGACY, ("namespaces",)),
    rule(READ, LEGACY, ("limitranges", "resourcequotas", "resourcequotas/status", "replicationcontrollers",
                        "replicationcontrollers/scale", "replicationcontrollers/status")),
    rule(READ, DISCOVERY, ("endpointslices",)),
    rule(READ, APPS, ("controllerrevisions", "statefulsets", "statefulsets/scale", "statefulsets/status",
                      "daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status",
                      "replicasets", "replicasets/scale", "replicasets/status")),
    rule(READ, BATCH, ("cronjobs", "cronjobs/status", "jobs", "jobs/status")),
    rule(READ, POLICY, ("poddisruptionbudgets", "poddisruptionbudgets/status")),
    rule(READ, AUTOSCALING, ("horizontalpodautoscalers", "horizontalpodautoscalers/status")),
    # system:aggregated-metrics-reader, aggregated into view (and so edit and admin) in Kubernetes
    rule(READ, METRICS, ("pods", "nodes")),
    rule(READ, NETWORKING, ("ingresses", "ingresses/status", "networkpolicies")),
]
_EDIT = [
    rule(READ, LEGACY, ("pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy")),
    rule("impersonate", LEGACY, ("serviceaccounts",)),
    rule(WRITE, LEGACY, ("pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward")),
    rule("create", LEGACY, ("pods/eviction",)),
    rule(WRITE, LEGACY, ("serviceaccounts", "services", "services/proxy", "persistentvolumeclaims", "configmaps",
                         "secrets", "events", "replicationcontrollers", "replicationcontrollers/scale")),
    rule("create", LEGACY, ("serviceaccounts/token",)),
    rule(WRITE, APPS, ("statefulsets", "statefulsets/scale", "daemonsets", "deployments", "deployments/scale",
                       "deployments/rollback", "replicasets", "replicasets/scale")),
    rule(WRITE, BATCH, ("cronjobs", "jobs")),
    rule(WRITE, POLICY, ("poddisruptionbudgets",)),
    rule(WRITE, AUTOSCALING, ("horizontalpodautoscalers",)),
    rule(WRITE, NETWORKING, ("ingresses", "networkpolicies")),
    *_VIEW,
]
_ADMIN = [
    rule("create", AUTHORIZATION, ("localsubjectaccessreviews",)),
    rule((*READ, *WRITE), RBAC_GROUP, ("roles", "rolebindings")),
    *_EDIT,
]


def _role(name: str, rules: list[Obj], labels: dict[str, str] | None = None) -> Obj:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "annotations": dict(AUTOUPDATE), "labels": dict(labels or BOOTSTRAP_LABELS)},
            "rules": rules}


def _binding(name: str, role: str, subjects: list[tuple[str, str]]) -> Obj:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "annotations": dict(AUTOUPDATE), "labels": dict(BOOTSTRAP_LABELS)},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": kind, "name": who} for kind, who in subjects]}


_SCHEDULER = [
    _events(),
    rule("create", COORDINATION, ("leases",)),
    rule(("get", "update"), COORDINATION, ("leases",), ("kube-scheduler",)),
    rule(READ, LEGACY, ("nodes",)),
    rule(("get", "list", "watch", "delete"), LEGACY, ("pods",)),
    rule("create", LEGACY, ("pods/binding", "bindings")),
    rule(("patch", "update"), LEGACY, ("pods/status",)),
    rule(READ, LEGACY, ("services", "replicationcontrollers")),
    rule(READ, APPS, ("replicasets", "statefulsets")),
    rule(READ, LEGACY, ("persistentvolumeclaims", "persistentvolumes")),
    rule("create", AUTHORIZATION, ("subjectaccessreviews",)),
    rule(READ, LEGACY, ("namespaces",)),
    rule(READ, STORAGE, ("storageclasses",)),
    rule(READ, SCHEDULING, ("priorityclasses",)),
    # system:volume-scheduler: binding claims at pre-bind.
    rule((*READ, "patch", "update"), LEGACY, ("persistentvolumes", "persistentvolumeclaims")),
]
_CONTROLLER_MANAGER = [
    _events(),
    rule("create", COORDINATION, ("leases",)),
    rule(("get", "update"), COORDINATION, ("leases",), ("pkube-controller-manager",)),
    # The garbage collector and the namespace controller act on every kind (as Kubernetes' generic-garbage-
    # collector and namespace-controller roles do); statuses, scale and finalize are among "*".
    rule(("get", "list", "watch", "patch", "update", "delete", "deletecollection"), "*", ("*",)),
    rule("create", LEGACY, ("pods", "endpoints", "persistentvolumes", "persistentvolumeclaims", "serviceaccounts",
                            "configmaps")),
    rule("create", APPS, ("replicasets", "controllerrevisions")),
    rule("create", BATCH, ("jobs",)),
    rule("create", DISCOVERY, ("endpointslices",)),
    rule("create", STORAGE, ("storageclasses",)),
    rule("create", AUTHORIZATION, ("subjectaccessreviews",)),
    rule("create", "apiregistration.k8s.io", ("apiservices",)),  # the Local APIServices of CRDs' group versions
]
_NODE = [
    rule("create", AUTHORIZATION, ("subjectaccessreviews", "localsubjectaccessreviews")),
    rule(READ, LEGACY, ("services",)),
    rule(("create", "get", "list", "watch"), LEGACY, ("nodes",)),
    rule(("update", "patch"), LEGACY, ("nodes/status",)),
    rule(("update", "patch"), LEGACY, ("nodes",)),
    rule(("create", "update", "patch"), LEGACY, ("events",)),
    rule(READ, LEGACY, ("pods",)),
    rule(("create", "delete"), LEGACY, ("pods",)),
    rule(("update", "patch"), LEGACY, ("pods/status",)),
    rule("create", LEGACY, ("pods/eviction",)),
    rule(READ, LEGACY, ("secrets", "configmaps")),
    rule("get", LEGACY, ("persistentvolumeclaims", "persistentvolumes")),
    rule("get", LEGACY, ("endpoints",)),
    rule(("get", "create", "update", "patch", "delete"), COORDINATION, ("leases",)),
    rule("create", LEGACY, ("serviceaccounts/token",)),
]
_NODE_PROXIER = [
    rule(("list", "watch"), LEGACY, ("services", "endpoints")),
    # pkube's proxy also publishes its node's pods' hostPorts (what the CNI portmap plugin does in Kubernetes)
    rule(("list", "watch"), LEGACY, ("pods",)),
    rule(READ, LEGACY, ("nodes",)),
    _events(),
    rule(("list", "watch"), DISCOVERY, ("endpointslices",)),
    # NetworkPolicy enforcement (proxy/netpol.py): the policies, every pod they may name, namespaces' labels.
    rule(("list", "watch"), NETWORKING, ("networkpolicies",)),
    rule(("list", "watch"), LEGACY, ("namespaces",)),
]
# pkube's cluster DNS (proxy/dns_main.py) answers from Services and EndpointSlices (Kubernetes' system:kube-dns
# reads Services and Endpoints).
_KUBE_DNS = [
    rule(("list", "watch"), LEGACY, ("services", "endpoints")),
    rule(("list", "watch"), DISCOVERY, ("endpointslices",)),
]
# pkube's proxy is also the LoadBalancer implementation (k3s' ServiceLB): it writes the nodes' addresses into
# LoadBalancer Services' status. Bound to system:kube-proxy only (the proxies of the machine that runs `cluster up`),
# not to the nodes, whose identity joined machines' proxies use.
SERVICE_LOAD_BALANCER = "pkube:service-load-balancer"
_SERVICE_LOAD_BALANCER = [rule(("update", "patch"), LEGACY, ("services/status",))]
CERTIFICATES = "certificates.k8s.io"
# Bootstrap tokens' users (system:bootstrappers) may ask for a node client certificate and read their request
# (Kubernetes' system:node-bootstrapper, which kubeadm binds to the group); a node renews its own through
# system:node's rule below.
_NODE_BOOTSTRAPPER = [rule(("create", "get", "list", "watch"), CERTIFICATES, ("certificatesigningrequests",))]
_NODE.append(rule(("create", "get", "list", "watch"), CERTIFICATES, ("certificatesigningrequests",)))
# The controller-manager's csrapproving and csrsigning controllers (Kubernetes' system:controller:certificate-
# controller, there bound to their service account): approving and signing need `approve` and `sign` on the signer.
_CERTIFICATE_CONTROLLER = [
    rule(("get", "list", "watch", "delete"), CERTIFICATES, ("certificatesigningrequests",)),
    rule("update", CERTIFICATES, ("certificatesigningrequests/approval", "certificatesigningrequests/status")),
    rule(READ, LEGACY, ("nodes",)),  # a serving CSR's SANs are checked against its Node's addresses
    rule("approve", CERTIFICATES, ("signers",), ("kubernetes.io/kube-apiserver-client-kubelet",
                                                 "kubernetes.io/kubelet-serving")),
    rule("sign", CERTIFICATES, ("signers",), ("kubernetes.io/kube-apiserver-client-kubelet",
                                              "kubernetes.io/kube-apiserver-client", "kubernetes.io/kubelet-serving")),
    _events(),
]
# pkube's ingress controller (ingress/): renders nginx from Ingresses, their Services' EndpointSlices and TLS
# Secrets, and writes the Ingresses' status address.
_INGRESS_CONTROLLER = [
    rule(READ, NETWORKING, ("ingresses", "ingressclasses")),
    rule("create", NETWORKING, ("ingressclasses",)),  # its own class, at start (--ensure-class)
    rule(("update", "patch"), NETWORKING, ("ingresses/status",)),
    rule(READ, LEGACY, ("services", "secrets")),
    rule(READ, DISCOVERY, ("endpointslices",)),
    _events(),
]
_DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
                   "/version", "/version/")
_PUBLIC_INFO_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/")


def cluster_roles() -> list[Obj]:
    return [
        _role("cluster-admin", [rule("*", "*", ("*",)), rule("*", urls=("*",))], {**BOOTSTRAP_LABELS}),
        _role("admin", _ADMIN),
        _role("edit", _EDIT),
        _role("view", _VIEW),
        _role("system:basic-user", [rule("create", AUTHORIZATION, ("selfsubjectaccessreviews",
                                                                    "selfsubjectrulesreviews")),
                                    rule("create", AUTHENTICATION, ("selfsubjectreviews",))]),
        _role("system:discovery", [rule("get", urls=_DISCOVERY_URLS)]),
        _role("system:auth-delegator", [rule("create", AUTHENTICATION, ("tokenreviews",)),
                                        rule("create", AUTHORIZATION, ("subjectaccessreviews",))]),
        _role("system:public-info-viewer", [rule("get", urls=_PUBLIC_INFO_URLS)]),
        _role("system:kube-scheduler", _SCHEDULER),
        _role("system:kube-controller-manager", _CONTROLLER_MANAGER),
        _role("system:node", _NODE),
        _role("system:node-proxier", _NODE_PROXIER),
        _role(SERVICE_LOAD_BALANCER, _SERVICE_LOAD_BALANCER),
        _role("system:kube-dns", _KUBE_DNS),
        _role("system:node-bootstrapper", _NODE_BOOTSTRAPPER),
        _role("system:controller:certificate-controller", _CERTIFICATE_CONTROLLER),
        _role(INGRESS_CONTROLLER, _INGRESS_CONTROLLER),
    ]


def cluster_role_bindings() -> list[Obj]:
    return [
        _binding("cluster-admin", "cluster-admin", [("Group", "system:masters")]),
        _binding("system:basic-user", "system:basic-user", [("Group", "system:authenticated")]),
        _binding("system:discovery", "system:discovery", [("Group", "system:authenticated")]),
        _binding("system:public-info-viewer", "system:public-info-viewer",
                 [("Group", "system:authenticated"), ("Group", "system:unauthenticated")]),
        _binding("system:kube-scheduler", "system:kube-scheduler", [("User", "system:kube-scheduler")]),
        _binding("system:kube-controller-manager", "system:kube-controller-manager",
                 [("User", "system:kube-controller-manager")]),
        _binding("system:node", "system:node", [("Group", "system:nodes")]),
        _binding("system:node-proxier", "system:node-proxier", [("User", "system:kube-proxy")]),
        # a joined node's proxy runs as the node (`pkctl cluster join` bootstraps one identity per machine)
        _binding("pkube:node-proxier:nodes", "system:node-proxier", [("Group", "system:nodes")]),
        _binding(SERVICE_LOAD_BALANCER, SERVICE_LOAD_BALANCER, [("User", "system:kube-proxy")]),
        _binding("system:kube-dns", "system:kube-dns", [("User", "system:kube-dns")]),
        _binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", [("Group", "system:bootstrappers")]),
        _binding("system:controller:certificate-controller", "system:controller:certificate-controller",
                 [("User", "system:kube-controller-manager")]),
        _binding(INGRESS_CONTROLLER, INGRESS_CONTROLLER, [("User", INGRESS_CONTROLLER)]),
    ]


def public_roles() -> list[tuple[Obj, Obj]]:
    """(Role, RoleBinding) pairs in kube-public: anyone, anonymous included, may read the cluster-info
    ConfigMap, where a joining node finds the cluster's CA (kubeadm's kubeadm:bootstrap-signer-clusterinfo)."""
    name = "kubeadm:bootstrap-signer-clusterinfo"
    meta = {"name": name, "namespace": "kube-public", "labels": dict(BOOTSTRAP_LABELS)}
    role = {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "Role", "metadata": dict(meta),
            "rules": [rule("get", LEGACY, ("configmaps",), ("cluster-info",))]}
    binding = {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "RoleBinding", "metadata": dict(meta),
               "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": name},
               "subjects": [{"apiGroup": RBAC_GROUP, "kind": "User", "name": "system:anonymous"}]}
    return [(role, binding)]
