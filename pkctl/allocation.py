"""What the pods on a node ask for: the "Non-terminated Pods" and "Allocated resources" of `describe node`.

Pure arithmetic on quantities (pklib.quantity), as kubectl's describer does it.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any

from pklib.quantity import Quantity, QuantityError, parse_quantity

Amounts = dict[str, Quantity]


def _plus(total: Amounts, name: str, q: Quantity) -> None:
    # The sum keeps the first operand's format (64Mi + 64Mi reads 128Mi), like Quantity.Add.
    prev = total.get(name)
    total[name] = Quantity(prev.value + q.value, prev.format) if prev else q


def _add(total: Amounts, values: dict[str, Any] | None) -> None:
    for name, text in (values or {}).items():
        try:
            _plus(total, name, parse_quantity(text))
        except QuantityError:
            continue  # the API server rejects these; an old object must not break describe


def pod_requests_and_limits(spec: dict[str, Any]) -> tuple[Amounts, Amounts]:
    """Requests and limits of a pod: its containers' sum, or an init container's if larger (they run alone)."""
    requests: Amounts = {}
    limits: Amounts = {}
    for c in spec.get("containers") or []:
        _add(requests, (c.get("resources") or {}).get("requests"))
        _add(limits, (c.get("resources") or {}).get("limits"))
    for c in spec.get("initContainers") or []:
        for total, part in ((requests, "requests"), (limits, "limits")):
            single: Amounts = {}
            _add(single, (c.get("resources") or {}).get(part))
            for name, q in single.items():
                if name not in total or q.value > total[name].value:
                    total[name] = q
    _add(requests, spec.get("overhead"))
    _add(limits, spec.get("overhead"))
    return requests, limits


def with_percent(amount: Quantity | None, allocatable: Any) -> str:
    """`250m (12%)` of the node's allocatable, as kubectl writes it; `0 (0%)` when nothing is asked."""
    value = amount.value if amount else Fraction(0)
    text = str(amount) if amount else "0"
    try:
        capacity = parse_quantity(allocatable).value if allocatable is not None else Fraction(0)
    except QuantityError:
        capacity = Fraction(0)
    percent = int(value * 100 / capacity) if capacity else 0
    return f"{text} ({percent}%)"


def total(amounts: list[Amounts]) -> Amounts:
    out: Amounts = {}
    for a in amounts:
        for name, q in a.items():
            _plus(out, name, q)
    return out
