"""controllers/podgc.py's choice of terminated pods (pure)."""
from __future__ import annotations

from typing import Any

from controllers.podgc import terminated_to_delete


def pod(name: str, phase: str, created: str, reason: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created},
            "status": {"phase": phase, **({"reason": reason} if reason else {})}}


def test_oldest_terminated_beyond_the_threshold_evicted_first() -> None:
    pods = [pod("a", "Succeeded", "2026-01-01T00:00:03Z"), pod("b", "Failed", "2026-01-01T00:00:01Z"),
            pod("c", "Running", "2026-01-01T00:00:00Z"), pod("d", "Failed", "2026-01-01T00:00:09Z", "Evicted"),
            pod("e", "Succeeded", "2026-01-01T00:00:02Z")]
    assert [p["metadata"]["name"] for p in terminated_to_delete(pods, 2)] == ["d", "b"]
    assert terminated_to_delete(pods, 4) == []
    assert terminated_to_delete(pods, 0) == []  # 0 turns it off
