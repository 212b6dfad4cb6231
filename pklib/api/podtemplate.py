"""Pod template equality as Kubernetes' EqualIgnoreHash sees it (the Deployment controller and `rollout undo`)."""
from __future__ import annotations

import copy
from typing import Any

HASH_LABEL = "pod-template-hash"


def template_without_hash(template: dict[str, Any] | None) -> dict[str, Any]:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return t


def comparable_template(template: dict[str, Any] | None) -> dict[str, Any]:
    """Without the pod-template-hash label and without empty or null fields. Go compares typed objects, where
    `resources: {}`, `args: []` and `creationTimestamp: null` are the same value as no field at all; kubectl's
    `rollout undo` sends such fields, and the rollback must still find the ReplicaSet it came from."""
    pruned: dict[str, Any] = _without_empties(template_without_hash(template))
    return pruned


def _without_empties(value: Any) -> Any:
    if isinstance(value, dict):
        pruned = {k: _without_empties(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if not _is_empty(v)}
    if isinstance(value, list):
        # Elements stay, even empty ones: their position is part of the value.
        return [_without_empties(v) for v in value]
    return value


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (dict, list)) and not value)


def same_template(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return comparable_template(a) == comparable_template(b)
