"""The kubelet's eviction manager (kubelet/eviction.py) and image GC manager (kubelet/imagegc.py): thresholds,
ranking, messages, conditions, and which images a GC deletes from a real image store (no containers)."""
from __future__ import annotations

import io
import tarfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from images.image import Layer
from images.store import ImageStore
from kubelet.eviction import (DEFAULT_EVICTION_HARD, EvictionManager, Observation, parse_thresholds, rank_for,
                              thresholds_met)
from kubelet.flags import check_real_config
from kubelet.host import PodUsage
from kubelet.imagegc import FsStats, ImageGCManager, ImageGCPolicy
from kubelet.main import build_parser
from kubelet.runtime.interface import ContainerStats, PodStats

Mi = 1024 * 1024


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def normal(self, obj: dict[str, Any], reason: str, message: str) -> None:
        self.seen.append(("Normal", reason, message))

    def warning(self, obj: dict[str, Any], reason: str, message: str) -> None:
        self.seen.append(("Warning", reason, message))

    async def run(self) -> None:
        pass


def test_thresholds_parse_like_kubernetes_and_bad_ones_are_one_line_errors() -> None:
    parsed = parse_thresholds("memory.available<100Mi, nodefs.available<10%,pid.available<1k")
    assert [str(t) for t in parsed] == ["memory.available<100Mi", "nodefs.available<10%", "pid.available<1k"]
    assert parsed[0].value(0) == 100 * Mi and parsed[1].value(1000) == 100 and parsed[2].value(0) == 1000
    assert {t.signal for t in parse_thresholds(DEFAULT_EVICTION_HARD)} >= {"memory.available", "nodefs.available"}
    for bad, words in (("memory.available>1Gi", "only the < operator"), ("cpu.available<1", "unsupported eviction "
                       "signal 'cpu.available'"), ("memory.available<lots", "'lots'"),
                       ("nodefs.available<150%", "<= 100%"), ("memory.available<1,memory.available<2", "duplicate")):
        with pytest.raises(ValueError, match=words):
            parse_thresholds(bad)


def test_bad_kubelet_gc_and_eviction_flags_are_refused_before_anything_runs() -> None:
    def check(*flags: str) -> None:
        check_real_config(build_parser().parse_args(["--port", "0", *flags]))
    check("--image-gc-high-threshold", "0", "--image-gc-low-threshold", "0", "--image-minimum-gc-age", "0s",
          "--eviction-hard", "memory.available<1000Ti", "--eviction-pressure-transition-period", "30s")
    for flags, words in ((("--image-gc-low-threshold", "90"), "must not be greater"),
                         (("--image-gc-high-threshold", "101"), "between 0 and 100"),
                         (("--image-minimum-gc-age", "2 minutes"), "--image-minimum-gc-age"),
                         (("--eviction-hard", "memory<1Gi"), "unsupported eviction signal"),
                         (("--eviction-pressure-transition-period", "soon"), "transition-period")):
        with pytest.raises(ValueError, match=words):
            check(*flags)


def _pod(name: str, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
         priority: int = 0) -> dict[str, Any]:
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    return {"metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"priority": priority, "containers": [{"name": "c", "image": "i", "resources": resources}]}}


def _usage(pod: dict[str, Any], memory: int) -> PodUsage:
    now = datetime.now(timezone.utc)
    return PodUsage(pod, PodStats("sb", now, 0, memory, [ContainerStats("cid", now, 0, memory, memory)]),
                    {"cid": "c"})


def test_memory_ranking_puts_pods_over_their_requests_first_then_priority_then_usage_above_request() -> None:
    best_effort = _pod("besteffort")
    burstable = _pod("burstable", requests={"memory": "10Mi"})
    guaranteed = _pod("guaranteed", requests={"memory": "50Mi", "cpu": "1"}, limits={"memory": "50Mi", "cpu": "1"})
    hungry = _pod("hungry-burstable", requests={"memory": "10Mi"})
    usage = {"besteffort": 1 * Mi, "burstable": 5 * Mi, "guaranteed": 20 * Mi, "hungry-burstable": 40 * Mi}
    order = [p["metadata"]["name"] for p in rank_for("memory", [guaranteed, burstable, best_effort, hungry], usage)]
    # both over their requests: the larger excess first; then the rest by usage minus request (burstable's -5Mi
    # before guaranteed's -30Mi)
    assert order == ["hungry-burstable", "besteffort", "burstable", "guaranteed"]
    assert [p["metadata"]["name"] for p in rank_for("ephemeral-storage", [guaranteed, burstable, best_effort],
                                                    {})] == ["besteffort", "burstable", "guaranteed"]
    important = _pod("important", priority=1000)
    assert [p["metadata"]["name"] for p in rank_for("memory", [important, best_effort], usage)] == [
        "besteffort", "important"]


async def test_one_pod_is_evicted_per_check_with_kubernetes_message_and_the_condition_holds() -> None:
    now = [100.0]
    observed = {"memory.available": Observation(50 * Mi, 1000 * Mi)}
    events = Events()
    manager = EvictionManager(parse_thresholds("memory.available<100Mi"), lambda: observed, events,
                              lambda: {"kind": "Node", "metadata": {"name": "n"}}, period=1,
                              transition_period=30, clock=lambda: now[0])
    assert manager.conditions() == {"MemoryPressure": False, "DiskPressure": False, "PIDPressure": False}
    best_effort, guaranteed = _pod("besteffort"), _pod("guaranteed", {"memory": "50Mi"}, {"memory": "50Mi"})
    pods = [guaranteed, best_effort]
    evicted: list[tuple[str, str]] = []

    async def usage() -> list[PodUsage]:
        return [_usage(best_effort, 2 * Mi), _usage(guaranteed, 10 * Mi)]

    def evict(pod: dict[str, Any], message: str) -> None:
        evicted.append((pod["metadata"]["name"], message))

    await manager.synchronize(pods, usage, evict)
    assert evicted == [("besteffort", "The node was low on resource: memory. Threshold quantity: 100Mi, "
                                      "available: 50Mi. Container c was using 2Mi, request is 0, has larger "
                                      "consumption of memory.")]
    assert manager.conditions()["MemoryPressure"] is True
    assert ("Warning", "EvictionThresholdMet", "Attempting to reclaim memory") in events.seen
    await manager.synchronize(pods, usage, evict)   # the evicted pod still listed: not chosen twice
    assert [name for name, _ in evicted] == ["besteffort", "guaranteed"]
    # the signal recovers: the condition stays for the transition period, then clears
    observed["memory.available"] = Observation(500 * Mi, 1000 * Mi)
    await manager.synchronize([], usage, evict)
    now[0] += 29
    assert manager.conditions()["MemoryPressure"] is True
    now[0] += 2
    assert manager.conditions()["MemoryPressure"] is False
    assert len(evicted) == 2


async def test_under_pressure_new_pods_that_would_worsen_it_are_refused() -> None:
    observed = {"memory.available": Observation(1, 100), "pid.available": Observation(50, 100)}
    manager = EvictionManager(parse_thresholds("memory.available<10,pid.available<10"), lambda: observed, Events(),
                              dict, period=1, transition_period=0)
    best_effort, burstable = _pod("besteffort"), _pod("burstable", {"memory": "10Mi"})
    tolerant = {**best_effort, "spec": {**best_effort["spec"], "tolerations": [
        {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}]}}
    assert manager.admit(best_effort) is None   # no pressure yet

    async def usage() -> list[PodUsage]:
        return []
    await manager.synchronize([], usage, lambda p, m: None)
    assert manager.admit(best_effort) == "The node had condition: [MemoryPressure]."
    assert manager.admit(burstable) is None and manager.admit(tolerant) is None
    observed["pid.available"] = Observation(5, 100)
    await manager.synchronize([], usage, lambda p, m: None)
    assert manager.admit(burstable) == "The node had condition: [MemoryPressure PIDPressure]."
    assert manager.admit(_pod("critical", priority=2_000_001_000)) is None


async def test_critical_pods_are_never_evicted_and_disk_pressure_reclaims_images_first() -> None:
    observed = {"nodefs.available": Observation(1, 100)}
    manager = EvictionManager(parse_thresholds("nodefs.available<10%"), lambda: observed, Events(), dict,
                              period=1, transition_period=0)
    critical = _pod("critical", priority=2_000_000_000)
    evicted: list[str] = []
    reclaimed: list[tuple[str, int | None]] = []

    async def usage() -> list[PodUsage]:
        return []

    async def reclaim(signal: str, missing: int | None) -> None:
        reclaimed.append((signal, missing))

    await manager.synchronize([critical], usage, lambda p, m: evicted.append(p["metadata"]["name"]), reclaim)
    assert reclaimed == [("nodefs.available", 10 - 1)] and evicted == []
    assert manager.conditions()["DiskPressure"] is True
    observed["nodefs.available"] = Observation(50, 100)
    assert thresholds_met(manager.thresholds, observed) == []
    await manager.synchronize([critical], usage, lambda p, m: evicted.append(p["metadata"]["name"]), reclaim)
    assert manager.conditions()["DiskPressure"] is False   # no transition period


# ---- image garbage collection on a real store -------------------------------------------------------------------

def _image(store: ImageStore, name: str, size: int) -> str:
    """An image of one layer holding `size` bytes, named `name`: its manifest digest."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(f"{name.rsplit('/', 1)[-1].replace(':', '-')}.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(b"x" * size))
    digest = store.layout.put_blob(buf.getvalue())
    layer = Layer(digest, "application/vnd.oci.image.layer.v1.tar", len(buf.getvalue()), digest)
    return store.commit({"config": {"Cmd": ["true"]}}, [layer], name).manifest_digest


def test_image_gc_deletes_unused_images_least_recently_used_first_down_to_the_low_threshold(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    now = [1000.0]
    fs = [FsStats(capacity=1_000_000, available=100_000)]   # 90% used: above the high threshold
    events = Events()
    gc = ImageGCManager(store, ImageGCPolicy(high_threshold=85, low_threshold=80, min_age=60), events, dict,
                        usage=lambda: fs[0], clock=lambda: now[0])
    used = _image(store, "example.com/used:1", 60_000)
    # a container's root filesystem records its image (what prepare_rootfs writes)
    (tmp_path / "images" / "containers" / "c1").mkdir(parents=True)
    (tmp_path / "images" / "containers" / "c1" / "image").write_text(used)
    for name in ("oldest", "middle", "newest"):   # first seen one after the other
        _image(store, f"example.com/{name}:1", 60_000)
        gc.detect()
        now[0] += 10
    assert store.images_in_use() == {used}
    # none old enough yet: nothing deleted, and the node hears it
    error = gc.garbage_collect()
    assert error is not None and "Attempted to free 100000 bytes, but only found 0 bytes eligible" in error
    gc.collect_and_report(error)
    assert [e[1] for e in events.seen] == ["FreeDiskSpaceFailed"]
    gc.collect_and_report(gc.garbage_collect())
    assert [e[1] for e in events.seen] == ["FreeDiskSpaceFailed", "FreeDiskSpaceFailed", "ImageGCFailed"]
    assert len(store.list()) == 4
    now[0] += 60
    # 100 kB to free (down to 80%): the two least recently seen unused images (60 kB each) go, blobs included
    assert gc.garbage_collect() is None
    assert {i.name for i in store.list()} == {"example.com/used:1", "example.com/newest:1"}
    assert len(list(store.layout.layers.iterdir())) == 2   # their unpacked layers went too
    # below the high threshold nothing is deleted
    fs[0] = FsStats(capacity=1_000_000, available=500_000)
    now[0] += 1000
    assert gc.garbage_collect() is None
    assert len(store.list()) == 2
    # thresholds 0/0: everything unused goes, the image in use stays
    gc.policy = ImageGCPolicy(high_threshold=0, low_threshold=0, min_age=0)
    assert gc.garbage_collect() is not None   # 500 kB wanted, 60 kB found
    assert {i.name for i in store.list()} == {"example.com/used:1"}
