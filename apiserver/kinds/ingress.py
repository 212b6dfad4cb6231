"""networking.k8s.io/v1 Ingress and IngressClass, and the DefaultIngressClass admission.

An Ingress routes HTTP(S) by host and path to Service backends (or a typed resource); it needs rules or a
defaultBackend, every path a pathType, every backend exactly one of service (with a port name or number) or
resource. An IngressClass names the controller that implements it (a domain-prefixed path, immutable). A new
Ingress without a class gets the class annotated `ingressclass.kubernetes.io/is-default-class: "true"`, as
Kubernetes' DefaultIngressClass admission plugin does.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from pklib import validation as v
from pklib.api.ingress import (INVALID_PATH_SEQUENCES, INVALID_PATH_SUFFIXES, LEGACY_CLASS_ANNOTATION, PATH_TYPES,
                               default_class)
from pklib.resources import INGRESSCLASSES

from ..watchcache import resource_prefix
from .base import KindStrategy, Rollback, nothing
from .fields import Cause, Path, immutable, invalid, not_supported, required, too_long
from .meta import as_dict

_CLASS_PREFIX = resource_prefix(INGRESSCLASSES.group, INGRESSCLASSES.plural)
_SCOPES = ("Cluster", "Namespace")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_errors(host: str) -> list[str]:
    """A rule's or TLS section's host: a DNS subdomain, or a wildcard `*.` one; never an IP address."""
    if _is_ip(host):
        return ["must be a DNS name, not an IP address"]
    if host.startswith("*."):
        errors = v.is_dns1123_subdomain(host[2:])
        return [e.replace("a lowercase RFC 1123 subdomain", "a wildcard DNS-1123 subdomain") for e in errors]
    return v.is_dns1123_subdomain(host)


def _validate_backend(backend: dict[str, Any], path: Path) -> list[Cause]:
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        causes: list[Cause] = []
        if resource.get("apiGroup") == "":
            causes.append(invalid(path.child("resource").child("apiGroup"), "", "must not be empty"))
        return causes
    if service is None:
        return [invalid(path, "", "resource or service backend is required")]
    causes = [invalid(path.child("service").child("name"), service["name"], e)
              for e in v.is_dns1035_label(service["name"])] if service["name"] else \
        [required(path.child("service").child("name"))]
    port = as_dict(service.get("port"))
    name, number = port.get("name") or "", port.get("number") or 0
    port_path = path.child("service").child("port")
    if name and number:
        causes.append(invalid(path, "", "cannot set both port name & port number"))
    elif name:
        causes += [invalid(port_path.child("name"), name, e) for e in v.is_valid_port_name(name)]
    elif number:
        causes += [invalid(port_path.child("number"), number, e) for e in v.is_valid_port_num(number)]
    else:
        causes.append(required(path, "port name or number is required"))
    return causes


def _validate_path(entry: dict[str, Any], path: Path) -> list[Cause]:
    causes: list[Cause] = []
    path_type, value = entry["pathType"], entry.get("path", "")
    if path_type not in PATH_TYPES:
        causes.append(not_supported(path.child("pathType"), path_type, PATH_TYPES))
    if path_type in ("Exact", "Prefix"):
        if not value.startswith("/"):
            causes.append(invalid(path.child("path"), value, "must be an absolute path"))
        for seq in INVALID_PATH_SEQUENCES:
            if seq in value:
                causes.append(invalid(path.child("path"), value, f"must not contain '{seq}'"))
        for suffix in INVALID_PATH_SUFFIXES:
            if value.endswith(suffix):
                causes.append(invalid(path.child("path"), value, f"cannot end with '{suffix}'"))
    elif value and not value.startswith("/"):
        causes.append(invalid(path.child("path"), value, "must be an absolute path"))
    return causes + _validate_backend(entry["backend"], path.child("backend"))


class IngressStrategy(KindStrategy):
    kind = "Ingress"

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = as_dict(obj.get("spec"))
        path = Path("spec")
        causes: list[Cause] = []
        rules = spec.get("rules") or []
        if not rules and "defaultBackend" not in spec:
            causes.append(invalid(path, spec, "either `defaultBackend` or `rules` must be specified"))
        if "defaultBackend" in spec:
            causes += _validate_backend(spec["defaultBackend"], path.child("defaultBackend"))
        class_name = spec.get("ingressClassName")
        if class_name is not None:
            causes += [invalid(path.child("ingressClassName"), class_name, e)
                       for e in v.is_dns1123_subdomain(class_name)]
        for i, rule in enumerate(rules):
            rule_path = path.child("rules").index(i)
            if rule.get("host"):
                causes += [invalid(rule_path.child("host"), rule["host"], e) for e in _host_errors(rule["host"])]
            http = rule.get("http")
            if http is None:
                continue
            paths = http["paths"]
            if not paths:
                causes.append(required(rule_path.child("http").child("paths")))
            for j, entry in enumerate(paths):
                causes += _validate_path(entry, rule_path.child("http").child("paths").index(j))
        for i, section in enumerate(spec.get("tls") or []):
            for j, host in enumerate(section.get("hosts") or []):
                causes += [invalid(path.child("tls").index(i).child("hosts").index(j), host, e)
                           for e in _host_errors(host)]
            secret = section.get("secretName")
            if secret:
                causes += [invalid(path.child("tls").index(i).child("secretName"), secret, e)
                           for e in v.is_dns1123_subdomain(secret)]
        return causes

    async def begin_create(self, obj: dict[str, Any], storage: Any) -> Rollback:
        await admit_default_class(obj, storage)
        return nothing


async def admit_default_class(ingress: dict[str, Any], storage: Any) -> None:
    """Kubernetes' DefaultIngressClass admission: a new Ingress naming no class (neither spec.ingressClassName
    nor the legacy annotation) gets the default one, when a class is marked default."""
    spec = ingress.get("spec")
    annotations = as_dict(as_dict(ingress.get("metadata")).get("annotations"))
    if not isinstance(spec, dict) or spec.get("ingressClassName") or LEGACY_CLASS_ANNOTATION in annotations:
        return
    result = await storage.list(_CLASS_PREFIX)
    chosen = default_class(e.value for e in result.entries)
    if chosen is not None:
        spec["ingressClassName"] = chosen["metadata"]["name"]


def _controller_errors(controller: str) -> list[str]:
    """A controller name is a domain-prefixed path, e.g. example.com/ingress (Kubernetes' IsDomainPrefixedPath)."""
    domain, slash, rest = controller.partition("/")
    if not slash or not domain:
        return ["must be a domain-prefixed path (such as \"acme.io/foo\")"]
    errors = v.is_dns1123_subdomain(domain)
    if any(c not in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:@/" for c in rest):
        errors.append("must be a valid path")
    return errors


class IngressClassStrategy(KindStrategy):
    kind = "IngressClass"
    namespaced = False

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = as_dict(obj.get("spec"))
        path = Path("spec")
        causes: list[Cause] = []
        controller = spec.get("controller") or ""
        if not controller:
            causes.append(required(path.child("controller")))
        else:
            if len(controller) > 250:
                causes.append(too_long(path.child("controller"), 250))
            causes += [invalid(path.child("controller"), controller, e) for e in _controller_errors(controller)]
        if old is not None and controller != as_dict(old.get("spec")).get("controller"):
            causes.append(immutable(path.child("controller"), controller))
        params = spec.get("parameters")
        if isinstance(params, dict):
            p = path.child("parameters")
            scope = params.get("scope")
            if scope is not None and scope not in _SCOPES:
                causes.append(not_supported(p.child("scope"), scope, _SCOPES))
            if scope == "Namespace" and not params.get("namespace"):
                causes.append(required(p.child("namespace"), "`parameters.scope` is set to 'Namespace'"))
            if scope != "Namespace" and params.get("namespace"):
                causes.append(invalid(p.child("namespace"), params["namespace"],
                                      "`parameters.scope` is set to 'Cluster'"))
        return causes
