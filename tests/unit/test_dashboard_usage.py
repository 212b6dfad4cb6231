"""The dashboard's CPU and memory series (dashboard/usage.py): one bounded ring per node, pod and container."""
from __future__ import annotations

from typing import Any

import pytest

from dashboard.main import build_parser
from dashboard.usage import WINDOW, Usage


def stats(nanocores: int, memory: int) -> dict[str, Any]:
    return {"cpu": {"usageNanoCores": nanocores}, "memory": {"workingSetBytes": memory}}


def summary(pods: list[str]) -> dict[str, Any]:
    return {"node": stats(250_000_000, 2 << 30),
            "pods": [{"podRef": {"namespace": "ns", "name": p}, **stats(1_000_000, 1 << 20),
                      "containers": [{"name": "app", **stats(1_000_000, 1 << 20)}]} for p in pods]}


def test_series_per_node_pod_and_container() -> None:
    usage = Usage(client=None, interval=10)  # type: ignore[arg-type]  # record() and the JSON need no client
    usage.record("n1", summary(["a"]), 100.0)
    usage.record("n1", summary(["a"]), 110.0)
    assert usage.nodes_json() == {"interval": 10, "series": {"n1": {"t": [100.0, 110.0], "cpu": [0.25, 0.25],
                                                                     "memory": [2 << 30, 2 << 30]}}}
    pod = usage.pod_json("ns", "a")
    assert pod["pod"]["t"] == [100.0, 110.0] and pod["pod"]["cpu"] == [0.001, 0.001]
    assert list(pod["containers"]) == ["app"] and pod["containers"]["app"]["memory"] == [1 << 20, 1 << 20]
    assert usage.pod_json("ns", "other") == {"interval": 10, "pod": None, "containers": {}}


def test_a_sample_without_a_rate_is_skipped() -> None:
    usage = Usage(client=None, interval=10)  # type: ignore[arg-type]
    usage.record("n1", {"node": {"cpu": {}, "memory": {"workingSetBytes": 5}}}, 100.0)
    assert usage.nodes_json()["series"]["n1"]["t"] == []


def test_memory_is_bounded_to_an_hour_and_gone_pods_are_dropped() -> None:
    usage = Usage(client=None, interval=10)  # type: ignore[arg-type]
    t = 0.0
    for _ in range(3 * int(WINDOW / 10)):  # three hours of samples
        t += 10
        usage.record("n1", summary(["stays"] if t > 100 else ["stays", "goes"]), t)
        usage.prune(t)
    kept = usage.nodes_json()["series"]["n1"]["t"]
    assert len(kept) == int(WINDOW / 10) + 1 and kept == sorted(kept) and kept[-1] == t  # oldest first, to now
    assert usage.pod_json("ns", "goes")["pod"] is None  # deleted more than an hour ago: its series is gone
    assert usage.pod_json("ns", "stays")["pod"] is not None


@pytest.mark.parametrize("value", ["0", "61", "x"])
def test_sample_interval_flag_is_checked(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--sample-interval", value])
    assert "--sample-interval" in capsys.readouterr().err
