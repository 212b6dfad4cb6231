"""What a pod asks for (component-helpers resource.PodRequests / PodLimits).

The app containers run together, so their amounts add up; init containers run one at a time before them, so
the pod needs the larger of the biggest init container and the app containers' sum; the pod's overhead comes on
top. `defaults` stands in for a resource a container does not name (the scheduler's non-zero requests).
"""
from __future__ import annotations

from typing import Any, Mapping

from pklib.quantity import Quantity, QuantityError, parse_quantity

Amounts = dict[str, Quantity]


def add_amount(total: Amounts, name: str, q: Quantity) -> None:
    # The sum keeps the first operand's format (64Mi + 64Mi reads 128Mi), like Quantity.Add.
    prev = total.get(name)
    total[name] = Quantity(prev.value + q.value, prev.format) if prev else q


def _container_amounts(container: dict[str, Any], part: str, defaults: Mapping[str, Quantity]) -> Amounts:
    out: Amounts = {}
    for name, text in {**defaults, **((container.get("resources") or {}).get(part) or {})}.items():
        try:
            out[name] = text if isinstance(text, Quantity) else parse_quantity(text)
        except QuantityError:
            continue  # the API server refuses these; an old object must not break the caller
    return out


def pod_amounts(spec: dict[str, Any], part: str = "requests",
                defaults: Mapping[str, Quantity] | None = None) -> Amounts:
    """`part` is "requests" or "limits"."""
    defaults = defaults or {}
    total: Amounts = {}
    for c in spec.get("containers") or []:
        for name, q in _container_amounts(c, part, defaults).items():
            add_amount(total, name, q)
    for c in spec.get("initContainers") or []:
        for name, q in _container_amounts(c, part, defaults).items():
            if name not in total or q.value > total[name].value:
                total[name] = q
    for name, text in (spec.get("overhead") or {}).items():
        try:
            add_amount(total, name, parse_quantity(text))
        except QuantityError:
            continue
    return total
