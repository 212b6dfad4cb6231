"""Pod Security Admission (Kubernetes' k8s.io/pod-security-admission/admission).

A namespace picks its levels with labels: `pod-security.kubernetes.io/enforce` refuses a Pod that breaks
the level (403), `warn` answers with a `Warning` header, `audit` logs; each has a `-version` label
(`latest` or `v1.x`). A namespace without an enforce label gets the cluster default
(`--pod-security-default-enforce`, `baseline` unless set; `privileged` turns it off), and so do the warn and
audit modes (Kubernetes' AdmissionConfiguration `defaults`, all three set to that level).
Workloads (Deployments, ReplicaSets, DaemonSets, StatefulSets, Jobs) are never refused: their pod template
gets the warn level's warnings. Changing a namespace's enforce level warns about its existing pods that
the new level would refuse. kube-system is exempt.

The checks themselves are pure functions in `policy.py`; `PodSecurity` decides what applies to a write.
"""
from __future__ import annotations

import contextvars
import logging
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from ..status import StatusError
from . import policy
from .policy import PRIVILEGED, RESTRICTED

log = logging.getLogger("apiserver.podsecurity")

PREFIX = "pod-security.kubernetes.io/"
MODES = ("enforce", "audit", "warn")
EXEMPT_NAMESPACES = frozenset({"kube-system"})
POD_CONTROLLERS = frozenset({"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "CronJob",
                             "ReplicationController", "PodTemplate"})
MAX_PODS_TO_CHECK = 3000  # Kubernetes' bound on the existing pods a namespace update evaluates
_VERSION = re.compile(r"^v1\.(0|[1-9][0-9]*)$")

# The warnings of the request being served (set per request by `collect`); None outside a request.
_WARNINGS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("podsecurity_warnings", default=None)


def collect() -> tuple[list[str], contextvars.Token[list[str] | None]]:
    """Start collecting the warnings of one request: (the list they go in, the token to reset with)."""
    warnings: list[str] = []
    return warnings, _WARNINGS.set(warnings)


def stop_collecting(token: contextvars.Token[list[str] | None]) -> None:
    _WARNINGS.reset(token)


def _warn(texts: Iterable[str]) -> None:
    into = _WARNINGS.get()
    if into is not None:
        into.extend(texts)


@dataclass(frozen=True)
class LevelVersion:
    level: str
    version: str = "latest"

    def __str__(self) -> str:
        return f"{self.level}:{self.version}"


@dataclass(frozen=True)
class Policy:
    enforce: LevelVersion
    audit: LevelVersion
    warn: LevelVersion


@dataclass(frozen=True)
class LabelError:
    label: str
    value: str
    message: str

    def cause(self) -> dict[str, str]:
        return {"reason": "FieldValueInvalid", "field": f"metadata.labels[{self.label}]",
                "message": f'Invalid value: "{self.value}": {self.message}'}


def _level_error() -> str:
    return "must be one of privileged, baseline, restricted"


def policy_for(labels: dict[str, Any], default: Policy) -> tuple[Policy, list[LabelError]]:
    """The namespace's policy from its labels over `default`, and what is wrong with the labels.

    A bad enforce level counts as restricted, a bad warn or audit level as privileged, a bad version as
    latest (Kubernetes fails closed for enforce, open for the others)."""
    errors: list[LabelError] = []
    modes = {"enforce": default.enforce, "audit": default.audit, "warn": default.warn}
    for mode in MODES:
        current = modes[mode]
        level_label, version_label = PREFIX + mode, f"{PREFIX}{mode}-version"
        if level_label in labels:
            value = str(labels[level_label])
            if value in policy.LEVELS:
                current = replace(current, level=value)
            else:
                errors.append(LabelError(level_label, value, _level_error()))
                current = replace(current, level=RESTRICTED if mode == "enforce" else PRIVILEGED)
        if version_label in labels:
            value = str(labels[version_label])
            if value == "latest" or _VERSION.match(value):
                current = replace(current, version=value)
            else:
                errors.append(LabelError(version_label, value, 'must be "latest" or "v1.x"'))
                current = replace(current, version="latest")
        modes[mode] = current
    return Policy(modes["enforce"], modes["audit"], modes["warn"]), errors


def governs(kind: str) -> bool:
    """Whether writes of `kind` go through Pod Security (Pods and the objects with a pod template)."""
    return kind == "Pod" or kind in POD_CONTROLLERS


def pod_template(kind: str, obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(metadata, spec) of the pod template of a workload object (a CronJob's is one level deeper)."""
    spec: dict[str, Any] = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
    if kind == "PodTemplate":
        template = obj.get("template")
    elif kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    else:
        template = spec.get("template")
    if not isinstance(template, dict):
        return None
    return template.get("metadata") or {}, template.get("spec") or {}


def significant_pod_update(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether a pod update changes anything the checks look at (Kubernetes' isSignificantPodUpdate: the
    mutable parts of a pod spec are images, seccomp annotations and ephemeral containers)."""
    def part(pod: dict[str, Any]) -> Any:
        spec = pod.get("spec") or {}
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        seccomp = {k: v for k, v in annotations.items() if "seccomp" in k or k.startswith(policy.APPARMOR_PREFIX)}
        return ([(c.get("name"), c.get("image")) for c in spec.get("containers") or []],
                [(c.get("name"), c.get("image")) for c in spec.get("initContainers") or []],
                spec.get("ephemeralContainers"), seccomp)

    return part(new) != part(old)


class PodSecurity:
    def __init__(self, default_enforce: str = "baseline", exempt_namespaces: Iterable[str] = EXEMPT_NAMESPACES):
        if default_enforce not in policy.LEVELS:
            raise ValueError(f"--pod-security-default-enforce: {default_enforce!r} {_level_error()}")
        enforce = LevelVersion(default_enforce)
        # Audit and warn default to the enforce default (the flag is one level for the whole cluster).
        self.default = Policy(enforce, enforce, enforce)
        self.exempt = frozenset(exempt_namespaces)

    # -- pods and workloads --------------------------------------------------------------------------------

    def admit(self, kind: str, obj: dict[str, Any], old: dict[str, Any] | None,
              namespace: dict[str, Any] | None) -> None:
        """Checks a create (old None) or update of a namespaced object: raises a 403 StatusError to refuse a
        Pod, adds warnings to the request. `namespace` is the object's Namespace."""
        meta = obj.get("metadata") or {}
        ns_name = meta.get("namespace") or ""
        if ns_name in self.exempt or namespace is None:
            return
        if kind == "Pod":
            if old is not None and not significant_pod_update(obj, old):
                return
            template: tuple[dict[str, Any], dict[str, Any]] | None = (meta, obj.get("spec") or {})
        elif kind in POD_CONTROLLERS:
            if old is not None and obj.get("spec") == old.get("spec"):
                return  # status writes of the controllers (Kubernetes skips subresources)
            template = pod_template(kind, obj)
        else:
            return
        if template is None:
            return
        labels = (namespace.get("metadata") or {}).get("labels") or {}
        pol, _ = policy_for(labels, self.default)
        pod_meta, spec = template
        results: dict[LevelVersion, list[policy.Violation]] = {}

        def check(lv: LevelVersion) -> list[policy.Violation]:
            if lv not in results:
                results[lv] = policy.evaluate(lv.level, pod_meta, spec)
            return results[lv]

        name = meta.get("name") or ""
        audit = check(pol.audit)
        if audit:
            log.info("audit: %s %s/%s would violate PodSecurity %r: %s", kind, ns_name, name, str(pol.audit),
                     policy.forbidden_detail(audit))
        if kind == "Pod" and (refused := check(pol.enforce)):
            raise StatusError(403, "Forbidden", f'pods "{name}" is forbidden: violates PodSecurity "{pol.enforce}": '
                                                f"{policy.forbidden_detail(refused)}", {"name": name, "kind": "pods"})
        if warned := check(pol.warn):
            _warn([f'would violate PodSecurity "{pol.warn}": {policy.forbidden_detail(warned)}'])

    # -- namespaces ----------------------------------------------------------------------------------------

    def label_errors(self, namespace: dict[str, Any], old: dict[str, Any] | None = None) -> list[dict[str, str]]:
        """Status causes for the pod-security labels of a namespace that are not valid (422 on its write).
        An update that leaves the errors as they were is let through (Kubernetes: a namespace stored with a bad
        label can still be finalized and deleted)."""
        def causes(ns: dict[str, Any]) -> list[dict[str, str]]:
            labels = (ns.get("metadata") or {}).get("labels") or {}
            return [e.cause() for e in policy_for(labels, self.default)[1]]

        found = causes(namespace)
        return [] if found and old is not None and causes(old) == found else found

    def namespace_updated(self, new: dict[str, Any], old: dict[str, Any],
                          pods: Callable[[], list[dict[str, Any]]]) -> None:
        """Warns about the existing pods (listed by `pods`, called only when needed) of a namespace whose
        enforce level got stricter."""
        name = (new.get("metadata") or {}).get("name") or ""
        new_pol, _ = policy_for((new.get("metadata") or {}).get("labels") or {}, self.default)
        old_pol, _ = policy_for((old.get("metadata") or {}).get("labels") or {}, self.default)
        enforce = new_pol.enforce
        if enforce == old_pol.enforce or enforce.level == PRIVILEGED or name in self.exempt:
            return
        if enforce.version == old_pol.enforce.version and \
                policy.LEVELS.index(enforce.level) <= policy.LEVELS.index(old_pol.enforce.level):
            return
        _warn(existing_pod_warnings(name, enforce, pods()))


def existing_pod_warnings(namespace: str, enforce: LevelVersion, pods: list[dict[str, Any]]) -> list[str]:
    """Kubernetes' warnings about existing pods under a new enforce level: one per distinct set of reasons,
    named after the first pod (by name) that has it, with how many others do."""
    total = len(pods)
    pods = pods[:MAX_PODS_TO_CHECK]
    by_reason: dict[str, list[str]] = {}
    for pod in pods:
        found = policy.evaluate(enforce.level, pod.get("metadata") or {}, pod.get("spec") or {})
        if found:
            by_reason.setdefault(policy.forbidden_reason(found), []).append((pod.get("metadata") or {}).get("name", ""))
    out: list[str] = []
    if len(pods) < total:
        out.append(f"new PodSecurity enforce level only checked against the first {len(pods)} of {total} "
                   "existing pods")
    if by_reason:
        out.append(f'existing pods in namespace "{namespace}" violate the new PodSecurity enforce level '
                   f'"{enforce}"')
    decorated = []
    for reason, names in by_reason.items():
        others = len(names) - 1
        suffix = "" if others == 0 else f" (and {others} other pod{'s' if others > 1 else ''})"
        decorated.append(f"{min(names)}{suffix}: {reason}")
    return out + sorted(decorated)

