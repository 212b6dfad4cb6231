"""apps/v1 workloads: Deployment, ReplicaSet, DaemonSet, StatefulSet.

What they share: a label selector that must select the pod template's labels and may
not change after creation, and a pod template whose restartPolicy must be Always.
"""
from __future__ import annotations

import re
from typing import Any

from pklib.selectors import SelectorError, selector_from_match

from .base import KindStrategy
from .fields import Cause, Path, forbidden, immutable, invalid, non_negative, not_supported, one_of, required, show
from .meta import as_dict, as_list, validate_labels
from .podspec import default_pod_spec, validate_pod_spec

_PERCENT = re.compile(r"[0-9]+%")
_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist")
PERCENT_ERROR = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or "
                 "'93%', regex used for validation is '[0-9]+%')")


def template_label_causes(template: dict[str, Any], selector: dict[str, Any] | None, path: Path) -> list[Cause]:
    """The pod template's labels are valid and (unless `selector` is None) match the selector."""
    labels = as_dict(as_dict(template.get("metadata")).get("labels"))
    causes = validate_labels(labels, path.child("metadata").child("labels"))
    if selector is not None:
        try:
            matches = selector_from_match(selector).matches(labels)
        except SelectorError:
            matches = False
        if not matches:
            causes.append(invalid(path.child("metadata").child("labels"), labels,
                                  "`selector` does not match template `labels`"))
    return causes


def validate_selector(selector: dict[str, Any], path: Path) -> list[Cause]:
    causes = validate_labels(selector.get("matchLabels"), path.child("matchLabels"))
    for i, expr in enumerate(as_list(selector.get("matchExpressions"))):
        p = path.child("matchExpressions").index(i)
        op, values = expr["operator"], expr.get("values") or []
        if op not in _SELECTOR_OPS:
            causes.append(invalid(p.child("operator"), op, "not a valid selector operator"))
        elif op in ("In", "NotIn") and not values:
            causes.append(required(p.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist") and values:
            causes.append(forbidden(p.child("values"),
                                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        causes += validate_labels({expr["key"]: ""}, p.child("key"))
    return causes


def int_or_percent(value: Any, path: Path) -> tuple[list[Cause], int | None]:
    """Errors of an int-or-percent field, and its percent (or the int) when it is valid."""
    if isinstance(value, str):
        if not _PERCENT.fullmatch(value):
            return [invalid(path, value, PERCENT_ERROR)], None
        pct = int(value[:-1])
        if pct > 100:
            return [invalid(path, value, "must not be greater than 100%")], None
        return [], pct
    if isinstance(value, int) and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")], None
    return [], value


def _validate_rolling(ru: dict[str, Any], path: Path) -> list[Cause]:
    surge_errs, surge = int_or_percent(ru.get("maxSurge", 0), path.child("maxSurge"))
    unavail_errs, unavail = int_or_percent(ru.get("maxUnavailable", 0), path.child("maxUnavailable"))
    causes = surge_errs + unavail_errs
    if surge == 0 and unavail == 0 and not causes:
        causes.append(invalid(path.child("maxUnavailable"), ru.get("maxUnavailable", 0),
                              "may not be 0 when `maxSurge` is 0"))
    return causes


class WorkloadStrategy(KindStrategy):
    """The common part; subclasses add their own defaults and spec rules."""

    has_replicas = True

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        if self.has_replicas:
            spec.setdefault("replicas", 1)
        default_pod_spec(as_dict(spec.get("template")).get("spec"), is_pod=False)
        self.default_spec(spec)

    def default_spec(self, spec: dict[str, Any]) -> None:
        return None

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = obj["spec"]
        if old is not None and spec == old.get("spec"):
            return []  # a status or metadata write: the stored spec passed these rules already
        path = Path("spec")
        causes: list[Cause] = []
        selector = spec["selector"]
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            causes.append(invalid(path.child("selector"), selector,
                                  f"empty selector is invalid for {self.kind.lower()}"))
        else:
            causes += validate_selector(selector, path.child("selector"))
        causes += self._validate_template(spec, selector, path.child("template"), bool(causes))
        for field in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
            causes += non_negative(path.child(field), spec.get(field))
        causes += self.validate_spec(spec, path)
        if old is not None:
            old_spec = as_dict(old.get("spec"))
            if "selector" in old_spec and spec.get("selector") != old_spec["selector"]:
                causes.append(immutable(path.child("selector"), spec.get("selector")))
            causes += self.validate_spec_update(spec, old_spec, path)
        return causes

    def _validate_template(self, spec: dict[str, Any], selector: dict[str, Any], path: Path,
                           selector_bad: bool) -> list[Cause]:
        template = spec.get("template")
        if template is None:
            return [required(path)]
        causes = template_label_causes(template, None if selector_bad else selector, path)
        pod_spec = template.get("spec")
        if pod_spec is None:
            return causes + [required(path.child("spec"))]
        claim_names = frozenset(str(as_dict(as_dict(c).get("metadata")).get("name"))
                                for c in as_list(spec.get("volumeClaimTemplates")))
        causes += validate_pod_spec(pod_spec, path.child("spec"), claim_names)
        policy = pod_spec.get("restartPolicy")
        if policy is not None and policy != "Always":
            causes.append(not_supported(path.child("spec").child("restartPolicy"), policy, ("Always",)))
        return causes

    def validate_spec(self, spec: dict[str, Any], path: Path) -> list[Cause]:
        return []

    def validate_spec_update(self, spec: dict[str, Any], old: dict[str, Any], path: Path) -> list[Cause]:
        return []


class DeploymentStrategy(WorkloadStrategy):
    kind = "Deployment"

    def default_spec(self, spec: dict[str, Any]) -> None:
        _default_rolling_update(spec, "strategy", maxUnavailable="25%", maxSurge="25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)

    def validate_spec(self, spec: dict[str, Any], path: Path) -> list[Cause]:
        strategy = as_dict(spec.get("strategy"))
        p = path.child("strategy")
        causes = one_of(p.child("type"), strategy.get("type"), ("Recreate", "RollingUpdate"))
        if strategy.get("type") == "Recreate" and strategy.get("rollingUpdate") is not None:
            causes.append(forbidden(p.child("rollingUpdate"), "may not be specified when strategy `type` is "
                                                              "'Recreate'"))
        elif strategy.get("type") == "RollingUpdate":
            causes += _validate_rolling(as_dict(strategy.get("rollingUpdate")), p.child("rollingUpdate"))
        deadline = spec.get("progressDeadlineSeconds")
        if isinstance(deadline, int):
            if deadline <= 0:
                causes.append(invalid(path.child("progressDeadlineSeconds"), deadline, "must be greater than 0"))
            elif deadline <= spec.get("minReadySeconds", 0):
                causes.append(invalid(path.child("progressDeadlineSeconds"), deadline,
                                      "must be greater than minReadySeconds"))
        return causes


class ReplicaSetStrategy(WorkloadStrategy):
    kind = "ReplicaSet"
    status_zero = {"replicas": 0}
    field_labels = ("status.replicas",)


def _default_rolling_update(spec: dict[str, Any], field: str, **rolling_defaults: Any) -> None:
    """Default spec.<field> to type RollingUpdate, and its rollingUpdate parameters when that is the type."""
    strategy = spec.setdefault(field, {})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            if isinstance(ru, dict):
                for key, value in rolling_defaults.items():
                    ru.setdefault(key, value)


class DaemonSetStrategy(WorkloadStrategy):
    kind = "DaemonSet"
    status_zero = {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}
    has_replicas = False

    def default_spec(self, spec: dict[str, Any]) -> None:
        _default_rolling_update(spec, "updateStrategy", maxUnavailable=1, maxSurge=0)
        spec.setdefault("revisionHistoryLimit", 10)

    def validate_spec(self, spec: dict[str, Any], path: Path) -> list[Cause]:
        strategy = as_dict(spec.get("updateStrategy"))
        p = path.child("updateStrategy")
        causes = one_of(p.child("type"), strategy.get("type"), ("RollingUpdate", "OnDelete"))
        if strategy.get("type") == "RollingUpdate":
            causes += _validate_rolling(as_dict(strategy.get("rollingUpdate")), p.child("rollingUpdate"))
        return causes


# StatefulSet fields that may change after creation (Kubernetes 1.32).
_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
_STS_UPDATE_FORBIDDEN = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                         "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
                         "'minReadySeconds' are forbidden")


class StatefulSetStrategy(WorkloadStrategy):
    kind = "StatefulSet"
    status_zero = {"replicas": 0, "availableReplicas": 0}

    def default_spec(self, spec: dict[str, Any]) -> None:
        spec.setdefault("podManagementPolicy", "OrderedReady")
        _default_rolling_update(spec, "updateStrategy", partition=0)
        spec.setdefault("revisionHistoryLimit", 10)
        policy = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
        if isinstance(policy, dict):
            policy.setdefault("whenDeleted", "Retain")
            policy.setdefault("whenScaled", "Retain")
        for claim in as_list(spec.get("volumeClaimTemplates")):
            claim_spec = as_dict(claim).get("spec")
            if isinstance(claim_spec, dict):
                claim_spec.setdefault("volumeMode", "Filesystem")

    def validate_spec(self, spec: dict[str, Any], path: Path) -> list[Cause]:
        causes = one_of(path.child("podManagementPolicy"), spec.get("podManagementPolicy"),
                        ("OrderedReady", "Parallel"))
        strategy = as_dict(spec.get("updateStrategy"))
        p = path.child("updateStrategy")
        causes += one_of(p.child("type"), strategy.get("type"), ("RollingUpdate", "OnDelete"))
        ru = as_dict(strategy.get("rollingUpdate"))
        if strategy.get("type") == "OnDelete" and strategy.get("rollingUpdate") is not None:
            causes.append(forbidden(p.child("rollingUpdate"), "only allowed for updateStrategy 'RollingUpdate'"))
        causes += non_negative(p.child("rollingUpdate").child("partition"), ru.get("partition"))
        if "maxUnavailable" in ru:
            errs, value = int_or_percent(ru["maxUnavailable"], p.child("rollingUpdate").child("maxUnavailable"))
            if not errs and value == 0:
                errs = [invalid(p.child("rollingUpdate").child("maxUnavailable"), ru["maxUnavailable"],
                                "must be greater than 0")]
            causes += errs
        retention = as_dict(spec.get("persistentVolumeClaimRetentionPolicy"))
        rp = path.child("persistentVolumeClaimRetentionPolicy")
        for field in ("whenDeleted", "whenScaled"):
            causes += one_of(rp.child(field), retention.get(field), ("Retain", "Delete"))
        causes += non_negative(path.child("ordinals").child("start"), as_dict(spec.get("ordinals")).get("start"))
        names: set[str] = set()
        for i, claim in enumerate(as_list(spec.get("volumeClaimTemplates"))):
            cp = path.child("volumeClaimTemplates").index(i).child("metadata").child("name")
            name = as_dict(claim.get("metadata")).get("name")
            if not name:
                causes.append(required(cp))
            elif name in names:
                causes.append(invalid(cp, name, "must be unique"))
            names.add(name or "")
        return causes

    def validate_spec_update(self, spec: dict[str, Any], old: dict[str, Any], path: Path) -> list[Cause]:
        fixed_new = {k: v for k, v in spec.items() if k not in _STS_MUTABLE and k != "selector"}
        fixed_old = {k: v for k, v in old.items() if k not in _STS_MUTABLE and k != "selector"}
        if fixed_new != fixed_old:
            changed = sorted(k for k in set(fixed_new) | set(fixed_old) if fixed_new.get(k) != fixed_old.get(k))
            return [forbidden(path, f"{_STS_UPDATE_FORBIDDEN} (changed: {', '.join(show(c) for c in changed)})")]
        return []


class ReplicationControllerStrategy(WorkloadStrategy):
    """core/v1 ReplicationController: a ReplicaSet with an equality selector (a plain label map), which
    defaults to the template's labels (as do the controller's own labels), and may change."""
    kind = "ReplicationController"
    status_zero = {"replicas": 0}
    field_labels = ("status.replicas",)

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        super().apply_defaults(obj)
        spec = obj.get("spec")
        labels = as_dict(as_dict(as_dict(spec).get("template")).get("metadata")).get("labels")
        if not isinstance(spec, dict) or not isinstance(labels, dict) or not labels:
            return
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = obj.get("metadata")
        if isinstance(meta, dict) and not meta.get("labels"):
            meta["labels"] = dict(labels)

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = as_dict(obj.get("spec"))
        if old is not None and spec == old.get("spec"):
            return []
        path = Path("spec")
        selector = as_dict(spec.get("selector"))
        causes = validate_labels(selector, path.child("selector")) if selector else [required(path.child("selector"))]
        causes += self._validate_template(spec, {"matchLabels": selector}, path.child("template"), bool(causes))
        for field in ("replicas", "minReadySeconds"):
            causes += non_negative(path.child(field), spec.get(field))
        return causes

    def scale_of(self, obj: dict[str, Any]) -> tuple[int, int, str]:
        spec, status = as_dict(obj.get("spec")), as_dict(obj.get("status"))
        selector = ",".join(f"{k}={v}" for k, v in sorted(as_dict(spec.get("selector")).items()))
        return int(spec.get("replicas", 1)), int(status.get("replicas") or 0), selector
