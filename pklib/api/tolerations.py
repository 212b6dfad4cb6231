"""Taints and tolerations (k8s.io/api core/v1 Toleration.ToleratesTaint)."""
from __future__ import annotations

from typing import Any, Iterable, Sequence


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """An empty effect matches every effect and an empty key every key (with operator Exists); the operator
    Equal (also when empty) compares values, Exists ignores them, and any other operator tolerates nothing."""
    effect = toleration.get("effect") or ""
    if effect and effect != (taint.get("effect") or ""):
        return False
    key = toleration.get("key") or ""
    if key and key != (taint.get("key") or ""):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations: Iterable[dict[str, Any]], taint: dict[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def untolerated(taints: Iterable[dict[str, Any]], tolerations: Sequence[dict[str, Any]],
                effects: tuple[str, ...]) -> list[dict[str, Any]]:
    """The taints with one of `effects` that no toleration tolerates."""
    return [t for t in taints if t.get("effect") in effects and not tolerated(tolerations, t)]
