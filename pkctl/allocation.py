"""What the pods on a node ask for: the "Non-terminated Pods" and "Allocated resources" of `describe node`.

Pure arithmetic on quantities (pklib.quantity), as kubectl's describer does it.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any

from pklib.api.podresources import Amounts, add_amount, pod_amounts
from pklib.quantity import Quantity, QuantityError, parse_quantity


def pod_requests_and_limits(spec: dict[str, Any]) -> tuple[Amounts, Amounts]:
    return pod_amounts(spec, "requests"), pod_amounts(spec, "limits")


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
            add_amount(out, name, q)
    return out
