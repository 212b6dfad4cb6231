"""pkctl drain's pod filters (kubectl's order and words), without a cluster."""
from __future__ import annotations

from typing import Any

from pkctl.commands.drain import aggregate, classify, go_duration


def pod(name: str, owner: str | None = None, phase: str = "Running", emptydir: bool = False,
        mirror: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns"}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner, "name": "o", "uid": "u",
                                    "controller": True}]
    if mirror:
        meta["annotations"] = {"kubernetes.io/config.mirror": "x"}
    volumes = [{"name": "v", "emptyDir": {}}] if emptydir else []
    return {"metadata": meta, "spec": {"volumes": volumes}, "status": {"phase": phase}}


PODS = [pod("rs", "ReplicaSet"), pod("ds", "DaemonSet"), pod("bare"), pod("scratch", "ReplicaSet", emptydir=True),
        pod("done", phase="Succeeded"), pod("static", "Node", mirror=True)]


def names(pods: list[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def test_refusals_without_flags() -> None:
    out = classify(PODS, lambda p: True, False, False, False)
    assert out.error_texts() == [
        "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): ns/ds",
        "cannot delete Pods declare no controller (use --force to override): ns/bare",
        "cannot delete Pods with local storage (use --delete-emptydir-data to override): ns/scratch"]


def test_everything_allowed_by_flags() -> None:
    out = classify(PODS, lambda p: True, True, True, True)
    assert not out.errors
    assert names(out.remove) == ["rs", "bare", "scratch", "done"]  # never the DaemonSet's or the mirror pod
    assert out.warning_text() == "ignoring DaemonSet-managed Pods: ns/ds; deleting Pods that declare no " \
                                 "controller: ns/bare"


def test_orphaned_daemonset_pod() -> None:
    out = classify([pod("ds", "DaemonSet")], lambda p: False, True, False, False)
    assert out.error_texts() == ['cannot delete daemonsets.apps "o" not found: ns/ds']
    forced = classify([pod("ds", "DaemonSet")], lambda p: False, False, False, True)
    assert names(forced.remove) == ["ds"] and forced.warnings == {'daemonsets.apps "o" not found': ["ns/ds"]}


def test_go_words() -> None:
    assert [go_duration(s) for s in (5, 0.5, 90, 3725)] == ["5s", "0.5s", "1m30s", "1h2m5s"]
    assert aggregate(["a"]) == "a" and aggregate(["a", "b"]) == "[a, b]"
