"""The table of built-in API resources: one row per kind.

Every component resolves kinds, plurals and short names through this table
(the apiserver for routing and discovery, pkctl for `get po`, controllers for
paths), so that a kind is described exactly once.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_COMPARED = 9  # Resource's fields up to categories


class Resource(NamedTuple):
    """One kind's row. Equal (and hashed) by its first nine fields; list_kind, singular_name and custom do not take
    part. (A NamedTuple, not a dataclass: see pklib/rest.py on what pkctl imports.)"""
    group: str  # "" for core
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    # Subresource names, e.g. ("status", "scale").
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    categories: tuple[str, ...] = ()
    list_kind: str = ""
    singular_name: str = ""  # "" = the kind in lower case
    # Served from a CustomResourceDefinition (registered at run time), not built in.
    custom: bool = False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resource) and self[:_COMPARED] == other[:_COMPARED]

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self[:_COMPARED])

    @property
    def singular(self) -> str:
        return self.singular_name or self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The REST path of a collection or an object, e.g. /apis/apps/v1/namespaces/ns/deployments/x/scale."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


def _r(group: str, version: str, kind: str, plural: str, namespaced: bool, short: tuple[str, ...] = (),
       sub: tuple[str, ...] = (), cats: tuple[str, ...] = (), verbs: tuple[str, ...] = ALL_VERBS) -> Resource:
    return Resource(group, version, kind, plural, namespaced, short, sub, verbs, cats, kind + "List")


# The built-in kinds, one named row each. Components use these handles (`from pklib.resources import PODS`)
# instead of resolving kinds they name themselves: the handle is the plural upper-cased, and the volume kinds
# go by their short names (PVS, PVCS).
NAMESPACES = _r("", "v1", "Namespace", "namespaces", False, ("ns",), ("status", "finalize"))
PODS = _r("", "v1", "Pod", "pods", True, ("po",), ("status", "binding", "eviction", "log", "exec", "attach",
                                                         "portforward", "ephemeralcontainers"),
         ("all",))
SERVICES = _r("", "v1", "Service", "services", True, ("svc",), ("status",), ("all",))
ENDPOINTS = _r("", "v1", "Endpoints", "endpoints", True, ("ep",))
NODES = _r("", "v1", "Node", "nodes", False, ("no",), ("status", "proxy"))
CONFIGMAPS = _r("", "v1", "ConfigMap", "configmaps", True, ("cm",))
SECRETS = _r("", "v1", "Secret", "secrets", True)
PVS = _r("", "v1", "PersistentVolume", "persistentvolumes", False, ("pv",), ("status",))
PVCS = _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",), ("status",))
EVENTS = _r("", "v1", "Event", "events", True, ("ev",))
SERVICEACCOUNTS = _r("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",), ("token",))
LIMITRANGES = _r("", "v1", "LimitRange", "limitranges", True, ("limits",))
RESOURCEQUOTAS = _r("", "v1", "ResourceQuota", "resourcequotas", True, ("quota",), ("status",))
REPLICATIONCONTROLLERS = _r("", "v1", "ReplicationController", "replicationcontrollers", True, ("rc",),
                            ("status", "scale"), ("all",))
DEPLOYMENTS = _r("apps", "v1", "Deployment", "deployments", True, ("deploy",), ("status", "scale"), ("all",))
REPLICASETS = _r("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale"), ("all",))
DAEMONSETS = _r("apps", "v1", "DaemonSet", "daemonsets", True, ("ds",), ("status",), ("all",))
STATEFULSETS = _r("apps", "v1", "StatefulSet", "statefulsets", True, ("sts",), ("status", "scale"), ("all",))
JOBS = _r("batch", "v1", "Job", "jobs", True, (), ("status",), ("all",))
CRONJOBS = _r("batch", "v1", "CronJob", "cronjobs", True, ("cj",), ("status",), ("all",))
CONTROLLERREVISIONS = _r("apps", "v1", "ControllerRevision", "controllerrevisions", True)
LEASES = _r("coordination.k8s.io", "v1", "Lease", "leases", True)
ENDPOINTSLICES = _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True)
STORAGECLASSES = _r("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ("sc",))
PRIORITYCLASSES = _r("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, ("pc",))
PODDISRUPTIONBUDGETS = _r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",), ("status",))
APISERVICES = _r("apiregistration.k8s.io", "v1", "APIService", "apiservices", False, (), ("status",),
                 ("api-extensions",))
CSRS = _r("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", False, ("csr",),
         ("status", "approval"))
NETWORKING_GROUP = "networking.k8s.io"
INGRESSES = _r(NETWORKING_GROUP, "v1", "Ingress", "ingresses", True, ("ing",), ("status",))
INGRESSCLASSES = _r(NETWORKING_GROUP, "v1", "IngressClass", "ingressclasses", False)
NETWORKPOLICIES = _r(NETWORKING_GROUP, "v1", "NetworkPolicy", "networkpolicies", True, ("netpol",))
CRDS = _r("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False,
          ("crd", "crds"), ("status",), ("api-extensions",))
RBAC_GROUP = "rbac.authorization.k8s.io"
ROLES = _r(RBAC_GROUP, "v1", "Role", "roles", True)
CLUSTERROLES = _r(RBAC_GROUP, "v1", "ClusterRole", "clusterroles", False)
ROLEBINDINGS = _r(RBAC_GROUP, "v1", "RoleBinding", "rolebindings", True)
CLUSTERROLEBINDINGS = _r(RBAC_GROUP, "v1", "ClusterRoleBinding", "clusterrolebindings", False)
# Virtual kinds: a request is answered (create only), nothing is stored.
SELFSUBJECTACCESSREVIEWS = _r("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
                              False, verbs=("create",))
SUBJECTACCESSREVIEWS = _r("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", False,
                          verbs=("create",))
SELFSUBJECTRULESREVIEWS = _r("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
                             False, verbs=("create",))
AUTHENTICATION_GROUP = "authentication.k8s.io"
TOKENREVIEWS = _r(AUTHENTICATION_GROUP, "v1", "TokenReview", "tokenreviews", False, verbs=("create",))
SELFSUBJECTREVIEWS = _r(AUTHENTICATION_GROUP, "v1", "SelfSubjectReview", "selfsubjectreviews", False,
                        verbs=("create",))
# autoscaling/v2: scales a workload's scale subresource from resource metrics (controllers/hpa.py).
HPAS = _r("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, ("hpa",), ("status",),
          ("all",))
HPAS_V1 = _r("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, ("hpa",), ("status",),
             ("all",))  # the same objects, converted (targetCPUUtilizationPercentage); v2 is the preferred version
# metrics.k8s.io/v1beta1: read-only usage figures the apiserver serves from the kubelets (apiserver/metrics_api.py).
NODEMETRICS = _r("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", False, verbs=("get", "list"))
PODMETRICS = _r("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", True, verbs=("get", "list"))

RESOURCES: tuple[Resource, ...] = (
    NAMESPACES, PODS, SERVICES, ENDPOINTS, NODES, CONFIGMAPS, SECRETS, PVS, PVCS, EVENTS, SERVICEACCOUNTS,
    LIMITRANGES, RESOURCEQUOTAS, REPLICATIONCONTROLLERS, DEPLOYMENTS,
    REPLICASETS, DAEMONSETS, STATEFULSETS, JOBS, CRONJOBS, CONTROLLERREVISIONS, LEASES, ENDPOINTSLICES, STORAGECLASSES,
    PRIORITYCLASSES, PODDISRUPTIONBUDGETS, INGRESSES, INGRESSCLASSES, NETWORKPOLICIES, ROLES, CLUSTERROLES, ROLEBINDINGS,
    CLUSTERROLEBINDINGS, CRDS, APISERVICES, CSRS,
    SELFSUBJECTACCESSREVIEWS, SUBJECTACCESSREVIEWS, SELFSUBJECTRULESREVIEWS, TOKENREVIEWS, SELFSUBJECTREVIEWS, HPAS,
    HPAS_V1, NODEMETRICS, PODMETRICS,
)
# Kinds served by a handler of their own instead of storage (they have no objects to list or get).
VIRTUAL: tuple[Resource, ...] = (SELFSUBJECTACCESSREVIEWS, SUBJECTACCESSREVIEWS, SELFSUBJECTRULESREVIEWS, TOKENREVIEWS,
                                 SELFSUBJECTREVIEWS, NODEMETRICS, PODMETRICS)


# The built-in kinds followed by those of CustomResourceDefinitions, one row per served version (set by the
# apiserver as CRDs come and go).
_all: tuple[Resource, ...] = RESOURCES


def set_custom(rows: Iterable[Resource]) -> None:
    """Replace the custom resource rows (the apiserver's CRD registry calls this on every CRD change)."""
    global _all
    _all = RESOURCES + tuple(rows)


def all_resources() -> tuple[Resource, ...]:
    """The built-in kinds followed by the custom ones registered in this process."""
    return _all


def groups() -> dict[str, list[str]]:
    """group name -> versions, in table order ("" is the core group; a group's preferred version first)."""
    out: dict[str, list[str]] = {}
    for r in all_resources():
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out


def for_path(group: str, version: str, plural: str) -> Resource | None:
    for r in all_resources():
        if r.group == group and r.version == version and r.plural == plural:
            return r
    return None


def for_kind(api_version: str, kind: str) -> Resource | None:
    for r in all_resources():
        if r.api_version == api_version and r.kind == kind:
            return r
    return None


def lookup(name: str) -> Resource | None:
    """Resolve what a user types: plural, singular, short name, kind, or `plural.group`."""
    n = name.lower()
    group = None
    if "." in n:
        n, group = n.split(".", 1)
    for r in all_resources():
        if group is not None and r.group != group:
            continue
        if n in (r.plural, r.singular, r.kind.lower()) or n in r.short_names:
            return r
    return None


def must_lookup(name: str) -> Resource:
    """`lookup` for a kind the code itself names (module constants): a missing row is a bug in this
    table, so it fails loudly at import time instead of surfacing later as a None."""
    res = lookup(name)
    if res is None:
        raise LookupError(f"unknown resource {name!r}: no such row in pklib.resources")
    return res
