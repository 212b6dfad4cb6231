"""Pure parts of the node controllers: pod CIDR arithmetic and taint-based eviction delays."""
from __future__ import annotations

from typing import Any

import pytest

from controllers.nodeipam import CidrExhausted, CidrSet
from controllers.nodelifecycle import eviction_delay
from pklib.api.wellknown import UNREACHABLE_TAINT as UNREACHABLE

UNREACHABLE_TAINT = {"key": UNREACHABLE, "effect": "NoExecute"}


def test_cidrs_are_distinct_and_inside_the_cluster_cidr() -> None:
    s = CidrSet("10.244.0.0/16", 24)
    got = [s.allocate() for _ in range(256)]
    assert got[:2] == ["10.244.0.0/24", "10.244.1.0/24"]
    assert len(set(got)) == 256 and got[-1] == "10.244.255.0/24"
    with pytest.raises(CidrExhausted):
        s.allocate()


def test_occupied_ranges_are_skipped_and_released_ones_reused_last() -> None:
    s = CidrSet("10.0.0.0/22", 24)
    assert s.occupy("10.0.0.0/24")
    assert not s.occupy("192.168.0.0/24")  # not ours
    assert not s.occupy("10.0.1.0/25")  # wrong size
    assert s.allocate() == "10.0.1.0/24"
    s.release("10.0.0.0/24")
    assert [s.allocate(), s.allocate(), s.allocate()] == ["10.0.2.0/24", "10.0.3.0/24", "10.0.0.0/24"]


def test_mask_must_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        CidrSet("10.0.0.0/16", 8)


def pod(*tolerations: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"tolerations": list(tolerations)}}


def test_pods_without_toleration_get_the_default_for_unreachable() -> None:
    assert eviction_delay(pod(), [UNREACHABLE_TAINT], 300) == 300


def test_toleration_seconds_bound_the_stay_and_unbounded_tolerations_never_evict() -> None:
    short = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
    forever = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    assert eviction_delay(pod(short), [UNREACHABLE_TAINT], 300) == 2
    assert eviction_delay(pod(forever), [UNREACHABLE_TAINT], 300) is None
    assert eviction_delay(pod({"operator": "Exists"}), [UNREACHABLE_TAINT], 300) is None


def test_other_untolerated_noexecute_taints_evict_at_once() -> None:
    taint = {"key": "maintenance", "value": "now", "effect": "NoExecute"}
    assert eviction_delay(pod(), [taint], 300) == 0
    tol = {"key": "maintenance", "value": "now", "effect": "NoExecute", "tolerationSeconds": 60}
    assert eviction_delay(pod(tol), [taint], 300) == 60
