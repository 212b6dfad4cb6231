"""Ingress semantics shared by the apiserver (validation, default-class admission) and the ingress controller:
the path types, which class is the default, and which Ingresses a controller serves (Kubernetes'
networking/v1 types and the DefaultIngressClass admission plugin)."""
from __future__ import annotations

from typing import Any, Iterable

# The annotation that marks an IngressClass as the one new Ingresses without a class get.
DEFAULT_INGRESS_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
# The class annotation Ingresses used before spec.ingressClassName (still honoured by controllers).
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"

PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")

# pkube's own class and the controller name it answers to (`pkctl cluster up` installs the class, default).
PKUBE_CLASS = "pkube"
PKUBE_CONTROLLER = "pkube.io/ingress-nginx"
# The user pkube's ingress controller authenticates as (and its RBAC role's name).
INGRESS_CONTROLLER_USER = "system:pkube-ingress-controller"

# Characters sequences an Exact or Prefix path may not contain (Kubernetes' invalidPathSequences/Suffixes).
INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
INVALID_PATH_SUFFIXES = ("/..", "/.")

Obj = dict[str, Any]


def is_default_class(ingress_class: Obj) -> bool:
    annotations = (ingress_class.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(DEFAULT_INGRESS_CLASS_ANNOTATION, "")).lower() == "true"


def default_class(classes: Iterable[Obj]) -> Obj | None:
    """The class a new Ingress without one gets: among those marked default, the newest (Kubernetes' admission
    picks the most recently created when several are marked, and warns about it), None when none is."""
    marked = [c for c in classes if is_default_class(c)]
    if not marked:
        return None
    return max(marked, key=lambda c: ((c.get("metadata") or {}).get("creationTimestamp") or "",
                                      (c.get("metadata") or {}).get("name") or ""))


def class_name(ingress: Obj) -> str:
    """The Ingress' class: spec.ingressClassName, else the legacy annotation, else ""."""
    name = (ingress.get("spec") or {}).get("ingressClassName")
    if name:
        return str(name)
    return str(((ingress.get("metadata") or {}).get("annotations") or {}).get(LEGACY_CLASS_ANNOTATION) or "")


def tls_hosts(ingress: Obj) -> dict[str, str]:
    """host -> Secret name of the Ingress' TLS sections (the first section naming a host wins)."""
    out: dict[str, str] = {}
    for section in (ingress.get("spec") or {}).get("tls") or []:
        for host in section.get("hosts") or []:
            if section.get("secretName"):
                out.setdefault(host, section["secretName"])
    return out


def rule_hosts(ingress: Obj) -> list[str]:
    return [r.get("host") or "" for r in (ingress.get("spec") or {}).get("rules") or []]
