"""core/v1 LimitRange and ResourceQuota: their defaults and validation.

What they do to other objects is admission (apiserver/admission/limitranger.py, resourcequota.py); the
resourcequota controller keeps a quota's status.used.
"""
from __future__ import annotations

from typing import Any

from pklib import validation as v
from pklib.api.limitrange import CLAIM, CONTAINER, LIMIT_TYPES, POD
from pklib.api.quota import SCOPES
from pklib.quantity import Quantity, QuantityError, parse_quantity

from .base import KindStrategy
from .fields import Cause, Path, duplicate, forbidden, invalid, not_supported, required
from .meta import as_dict, as_list

_QUOTA_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _quantities(values: Any, path: Path, causes: list[Cause], non_negative: bool = True) -> dict[str, Quantity]:
    """The parsed quantities of a resource list; what is wrong goes to `causes`."""
    out: dict[str, Quantity] = {}
    for name, raw in as_dict(values).items():
        p = path.key(name)
        if "/" in name and v.is_qualified_name(name):
            causes.append(invalid(p, name, "must be a standard resource type or fully qualified"))
            continue
        try:
            q = parse_quantity(raw)
        except QuantityError as e:
            causes.append(invalid(p, raw, str(e)))
            continue
        if non_negative and q.value < 0:
            causes.append(invalid(p, raw, "must be greater than or equal to 0"))
            continue
        out[name] = q
    return out


class LimitRangeStrategy(KindStrategy):
    kind = "LimitRange"

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        # Kubernetes' SetDefaults_LimitRangeItem: a Container item's default limit is its max, its default
        # request its default limit, else its min.
        for item in as_list(as_dict(obj.get("spec")).get("limits")):
            if not isinstance(item, dict) or item.get("type") != CONTAINER:
                continue
            default = item.setdefault("default", {})
            request = item.setdefault("defaultRequest", {})
            if not isinstance(default, dict) or not isinstance(request, dict):
                continue
            for name, value in as_dict(item.get("max")).items():
                default.setdefault(name, value)
            for name, value in default.items():
                request.setdefault(name, value)
            for name, value in as_dict(item.get("min")).items():
                request.setdefault(name, value)

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        causes: list[Cause] = []
        seen: set[str] = set()
        path = Path("spec").child("limits")
        for i, item in enumerate(as_list(as_dict(obj.get("spec")).get("limits"))):
            p = path.index(i)
            kind = item.get("type")
            if kind not in LIMIT_TYPES:
                causes.append(not_supported(p.child("type"), kind, LIMIT_TYPES))
                continue
            if kind in seen:
                causes.append(duplicate(p.child("type"), kind))
            seen.add(kind)
            parsed = {f: _quantities(item.get(f), p.child(f), causes)
                      for f in ("min", "max", "default", "defaultRequest", "maxLimitRequestRatio")}
            if kind == POD:
                for f in ("default", "defaultRequest"):
                    if parsed[f]:
                        causes.append(forbidden(p.child(f), "may not be specified when `type` is 'Pod'"))
            if kind == CLAIM and "storage" not in parsed["min"] and "storage" not in parsed["max"]:
                causes.append(required(p.child("limits"), "either minimum or maximum storage value is required, "
                                                          "but neither was provided"))
            causes += _ordering(parsed, p)
        return causes


def _ordering(parsed: dict[str, dict[str, Quantity]], p: Path) -> list[Cause]:
    """min <= defaultRequest <= default <= max, and sensible ratios (Kubernetes' ValidateLimitRange words)."""
    causes: list[Cause] = []
    low, high = parsed["min"], parsed["max"]
    request, default = parsed["defaultRequest"], parsed["default"]
    for name in sorted(set().union(*parsed.values())):
        k = p.key(name)
        if name in low and name in high and low[name].value > high[name].value:
            causes.append(invalid(k.child("min"), str(low[name]),
                                  f"min value {low[name]} is greater than max value {high[name]}"))
        if name in request:
            if name in low and low[name].value > request[name].value:
                causes.append(invalid(k.child("defaultRequest"), str(request[name]),
                                      f"min value {low[name]} is greater than default request value {request[name]}"))
            if name in high and request[name].value > high[name].value:
                causes.append(invalid(k.child("defaultRequest"), str(request[name]),
                                      f"default request value {request[name]} is greater than max value "
                                      f"{high[name]}"))
            if name in default and request[name].value > default[name].value:
                causes.append(invalid(k.child("defaultRequest"), str(request[name]),
                                      f"default request value {request[name]} is greater than default limit "
                                      f"value {default[name]}"))
        if name in default and name in high and default[name].value > high[name].value:
            causes.append(invalid(k.child("default"), str(default[name]),
                                  f"default value {default[name]} is greater than max value {high[name]}"))
        ratio = parsed["maxLimitRequestRatio"].get(name)
        if ratio is not None:
            if ratio.value < 1:
                causes.append(invalid(k.child("maxLimitRequestRatio"), str(ratio), f"ratio {ratio} is less than 1"))
            if name in low and name in high and low[name].value > 0:
                most = high[name].value / low[name].value
                if ratio.value > most:
                    causes.append(invalid(k.child("maxLimitRequestRatio"), str(ratio),
                                          f"ratio {ratio} is greater than max/min = {float(most):f}"))
    return causes


class ResourceQuotaStrategy(KindStrategy):
    kind = "ResourceQuota"

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        causes: list[Cause] = []
        spec = as_dict(obj.get("spec"))
        path = Path("spec")
        _quantities(spec.get("hard"), path.child("hard"), causes)
        _quantities(as_dict(obj.get("status")).get("hard"), Path("status").child("hard"), causes)
        _quantities(as_dict(obj.get("status")).get("used"), Path("status").child("used"), causes)
        for i, scope in enumerate(as_list(spec.get("scopes"))):
            if scope not in SCOPES:
                causes.append(not_supported(path.child("scopes").index(i), scope, SCOPES))
        exprs = as_list(as_dict(spec.get("scopeSelector")).get("matchExpressions"))
        for i, expr in enumerate(exprs):
            p = path.child("scopeSelector").child("matchExpressions").index(i)
            if expr.get("scopeName") not in SCOPES:
                causes.append(not_supported(p.child("scopeName"), expr.get("scopeName"), SCOPES))
            if expr.get("operator") not in _QUOTA_OPERATORS:
                causes.append(not_supported(p.child("operator"), expr.get("operator"), _QUOTA_OPERATORS))
            elif expr["operator"] in ("In", "NotIn") and not expr.get("values"):
                causes.append(required(p.child("values"), "must be at least one value when `operator` is 'In' or "
                                                          "'NotIn' for scope selector"))
            elif expr["operator"] in ("Exists", "DoesNotExist") and expr.get("values"):
                causes.append(invalid(p.child("values"), expr["values"], "must be no value when `operator` is "
                                                                          "'Exist' or 'DoesNotExist' for scope "
                                                                          "selector"))
        return causes
