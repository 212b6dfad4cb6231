"""Role, ClusterRole, RoleBinding, ClusterRoleBinding (rbac.authorization.k8s.io/v1).

Validation as Kubernetes' pkg/apis/rbac/validation words it; the writes also check escalation (a user may
grant only permissions they hold, or with the `escalate`/`bind` verbs: apiserver/authz/authorizer.py).
"""
from __future__ import annotations

from typing import Any, Callable

from pklib import validation as v

from ..authz.authorizer import confirm_binding_write, confirm_role_write
from .base import KindStrategy
from .fields import Cause, Path, invalid, not_supported, required
from .meta import as_dict, as_list

RBAC_GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


def rbac_name_errors(name: str) -> list[str]:
    """Kubernetes' path.IsValidPathSegmentName: any name that can be a URL path segment."""
    errors = [f"may not be '{bad}'" for bad in (".", "..") if name == bad]
    errors += [f"may not contain '{bad}'" for bad in ("/", "%") if bad in name]
    return errors


def validate_rules(rules: list[Any], namespaced: bool, path: Path) -> list[Cause]:
    causes: list[Cause] = []
    for i, r in enumerate(rules):
        rule, at = as_dict(r), path.index(i)
        if not rule.get("verbs"):
            causes.append(required(at.child("verbs"), "verbs must contain at least one value"))
        urls = rule.get("nonResourceURLs")
        if urls:
            if namespaced:
                causes.append(invalid(at.child("nonResourceURLs"), urls,
                                      "namespaced rules cannot apply to non-resource URLs"))
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                causes.append(invalid(at.child("nonResourceURLs"), urls,
                                      "rules cannot apply to both regular resources and non-resource URLs"))
            continue
        if not rule.get("apiGroups"):
            causes.append(required(at.child("apiGroups"), "resource rules must supply at least one api group"))
        if not rule.get("resources"):
            causes.append(required(at.child("resources"), "resource rules must supply at least one resource"))
    return causes


def validate_binding(obj: dict[str, Any], old: dict[str, Any] | None, kinds: tuple[str, ...],
                     namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    ref = as_dict(obj.get("roleRef"))
    at = Path("roleRef")
    if ref.get("apiGroup", "") != RBAC_GROUP:
        causes.append(not_supported(at.child("apiGroup"), ref.get("apiGroup", ""), [RBAC_GROUP]))
    if ref.get("kind", "") not in kinds:
        causes.append(not_supported(at.child("kind"), ref.get("kind", ""), kinds))
    name = ref.get("name") or ""
    if not name:
        causes.append(required(at.child("name")))
    else:
        causes += [invalid(at.child("name"), name, e) for e in rbac_name_errors(name)]
    for i, s in enumerate(as_list(obj.get("subjects"))):
        causes += _validate_subject(as_dict(s), namespaced, Path("subjects").index(i))
    if old is not None and as_dict(old.get("roleRef")) != ref:
        causes.append(invalid(at, ref, "cannot change roleRef"))
    return causes


def _validate_subject(subject: dict[str, Any], namespaced: bool, at: Path) -> list[Cause]:
    causes: list[Cause] = []
    name, kind, group = subject.get("name") or "", subject.get("kind") or "", subject.get("apiGroup") or ""
    if not name:
        causes.append(required(at.child("name")))
    if kind == "ServiceAccount":
        if name:
            causes += [invalid(at.child("name"), name, e) for e in v.is_dns1123_subdomain(name)]
        if group:
            causes.append(not_supported(at.child("apiGroup"), group, [""]))
        if not namespaced and not subject.get("namespace"):
            causes.append(required(at.child("namespace")))
    elif kind in ("User", "Group"):
        if group != RBAC_GROUP:
            causes.append(not_supported(at.child("apiGroup"), group, [RBAC_GROUP]))
    else:
        causes.append(not_supported(at.child("kind"), kind, SUBJECT_KINDS))
    return causes


class _RBACStrategy(KindStrategy):
    plural = ""
    granted = ""  # the field saying what the object grants: a write that changes it must not escalate
    confirm_write: Callable[[str, dict[str, Any]], None]

    def name_errors(self, name: str) -> list[str]:
        return rbac_name_errors(name)

    def admit(self, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if old is None or obj.get(self.granted) != old.get(self.granted):
            self.confirm_write(self.plural, obj)


class _RoleStrategy(_RBACStrategy):
    granted = "rules"
    confirm_write = staticmethod(confirm_role_write)

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        return validate_rules(as_list(obj.get("rules")), self.namespaced, Path("rules"))


class RoleStrategy(_RoleStrategy):
    kind = "Role"
    plural = "roles"
    namespaced = True


class ClusterRoleStrategy(_RoleStrategy):
    kind = "ClusterRole"
    plural = "clusterroles"
    namespaced = False


class _BindingStrategy(_RBACStrategy):
    granted = "roleRef"
    confirm_write = staticmethod(confirm_binding_write)
    ref_kinds: tuple[str, ...] = ()

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        for s in as_list(obj.get("subjects")):
            if isinstance(s, dict) and "apiGroup" not in s:
                s["apiGroup"] = RBAC_GROUP if s.get("kind") in ("User", "Group") else ""
            if isinstance(s, dict) and s.get("apiGroup") == "":
                del s["apiGroup"]  # Kubernetes omits the empty group of a ServiceAccount subject

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        return validate_binding(obj, old, self.ref_kinds, self.namespaced)


class RoleBindingStrategy(_BindingStrategy):
    kind = "RoleBinding"
    plural = "rolebindings"
    namespaced = True
    ref_kinds = ("Role", "ClusterRole")


class ClusterRoleBindingStrategy(_BindingStrategy):
    kind = "ClusterRoleBinding"
    plural = "clusterrolebindings"
    namespaced = False
    ref_kinds = ("ClusterRole",)
