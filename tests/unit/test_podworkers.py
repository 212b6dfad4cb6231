"""PodWorkers driven on the fake runtime: start, restart with back-off, deletion, image pull errors, and one
plan per sync. No API server: a fake client keeps the pods and applies status patches as the watch would."""
from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest

import kubelet.podworkers as podworkers
from kubelet.containerconfig import PodConfigOptions
from kubelet.podworkers import PodWorkerConfig, PodWorkers
from kubelet.runtime.fake import FakeRuntime
from kubelet.runtime.interface import ContainerState
from kubelet.volumes import VolumeManager
from pklib.errors import ApiError
from pklib.informer import Handler
from tests.util import wait_for

NODE = "node-1"


class FakePods:
    """The pod cache (podworkers.PodSource) and the API's pods in one."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self.synced.set()

    @property
    def store(self) -> "FakePods":
        return self

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    async def run(self) -> None:
        await asyncio.Event().wait()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.items.get(key)

    def list(self) -> list[dict[str, Any]]:
        return list(self.items.values())

    def keys(self) -> list[str]:
        return list(self.items)


class FakeClient:
    def __init__(self, pods: FakePods) -> None:
        self.pods = pods
        self.status_patches: list[dict[str, Any]] = []
        self.deletes: list[tuple[str, str, dict[str, Any]]] = []
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}  # (plural, name) -> what a GET finds
        self.next_rv = 1

    async def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        found = self.objects.get((res.plural, name))
        if found is None:
            raise ApiError({"code": 404, "reason": "NotFound", "message": f"{res.plural} {name!r} not found"})
        return copy.deepcopy(found)

    async def patch(self, res: Any, name: str, body: dict[str, Any], namespace: str | None = None,
                    subresource: str | None = None) -> dict[str, Any]:
        assert subresource == "status"
        self.status_patches.append(copy.deepcopy(body["status"]))
        pod = self.pods.items[f"{namespace}/{name}"]
        status = {**(pod.get("status") or {}), **body["status"]}
        pod = self.pods.items[f"{namespace}/{name}"] = copy.deepcopy(pod)
        pod["status"] = {k: v for k, v in status.items() if v is not None}
        pod["metadata"]["resourceVersion"] = str(self.next_rv)
        self.next_rv += 1
        return pod

    async def delete(self, res: Any, name: str, namespace: str | None = None, **kw: Any) -> dict[str, Any]:
        self.deletes.append((namespace or "", name, kw))
        self.pods.items.pop(f"{namespace}/{name}", None)
        return {}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def normal(self, obj: dict[str, Any], reason: str, message: str) -> None:
        self.events.append((reason, message))

    def warning(self, obj: dict[str, Any], reason: str, message: str) -> None:
        self.events.append((reason, message))

    async def run(self) -> None:
        await asyncio.Event().wait()


class Node:
    def __init__(self, tmp: Path) -> None:
        self.pods = FakePods()
        self.client = FakeClient(self.pods)
        self.runtime = FakeRuntime("10.244.1.0/24")
        self.recorder = Recorder()
        self.workers = PodWorkers(
            self.client, "192.0.2.10", self.runtime, VolumeManager(tmp),  # type: ignore[arg-type]
            PodWorkerConfig(node_name=NODE, backoff_base=0.3, backoff_max=1.0, pod=PodConfigOptions()),
            pods=self.pods, recorder=self.recorder, services=self.services)

    async def services(self, namespace: str) -> list[dict[str, Any]]:
        return []  # the Service lister (the kubelet's informer, not run here)

    def add(self, name: str, image: str = "busybox:1.36", policy: str = "Always") -> str:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
               "spec": {"nodeName": NODE, "restartPolicy": policy, "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": image}]},
               "status": {"phase": "Pending"}}
        self.pods.items[f"default/{name}"] = pod
        return f"default/{name}"

    def status(self, key: str) -> dict[str, Any]:
        return self.pods.items[key]["status"]

    def containers(self, state: ContainerState | None = None) -> list[str]:
        return [cid for cid, c in self.runtime.containers.items() if state is None or c.status.state == state]


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def _waiting_reason(status: dict[str, Any]) -> str | None:
    return ((status["containerStatuses"][0].get("state") or {}).get("waiting") or {}).get("reason")


async def test_a_new_pod_gets_a_sandbox_and_running_containers_and_a_running_status(node: Node) -> None:
    key = node.add("web")
    await node.workers.sync(key)
    assert len(node.runtime.sandboxes) == 1
    [cid] = node.containers(ContainerState.RUNNING)
    assert node.runtime.containers[cid].config.image == "busybox:1.36"
    status = node.status(key)
    assert status["phase"] == "Running" and status["podIP"] == "10.244.1.2" and status["hostIP"] == "192.0.2.10"
    assert status["containerStatuses"][0]["ready"] is True
    assert [r for r, _ in node.recorder.events] == ["Created", "Started"]
    # nothing changed: a second sync writes no status
    writes = len(node.client.status_patches)
    await node.workers.sync(key)
    assert len(node.client.status_patches) == writes


async def test_an_exited_container_of_an_always_pod_restarts_after_a_back_off(node: Node) -> None:
    key = node.add("crash")
    await node.workers.sync(key)
    [first] = node.containers(ContainerState.RUNNING)
    node.runtime.finish(first, 1)
    await node.workers.sync(key)
    assert node.containers(ContainerState.RUNNING) == []  # still in its back-off
    assert _waiting_reason(node.status(key)) == "CrashLoopBackOff"

    async def restarted() -> list[str]:
        await node.workers.sync(key)
        return node.containers(ContainerState.RUNNING)

    [second] = await wait_for(restarted, 5, message="container restarted")
    assert second != first
    assert node.runtime.containers[second].status.labels["pkube.io/attempt"] == "1"
    assert node.status(key)["containerStatuses"][0]["restartCount"] == 1
    assert node.workers._delays[("uid-crash", "c")] == 0.6  # the next restart waits twice as long


async def test_a_deleted_pod_is_killed_torn_down_and_its_deletion_finished(node: Node) -> None:
    key = node.add("gone")
    await node.workers.sync(key)
    [cid] = node.containers(ContainerState.RUNNING)
    node.pods.items[key]["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z", deletionGracePeriodSeconds=1)
    await node.workers.sync(key)
    stops = [args for method, args in node.runtime.calls if method == "stop_container"]
    assert len(stops) == 1 and stops[0][0] == cid and 0.5 < stops[0][1] <= 1.0  # the grace period, what is left
    assert node.runtime.sandboxes == {} and node.runtime.containers == {}
    assert node.client.deletes == [("default", "gone", {"grace_period_seconds": 0,
                                                        "preconditions": {"uid": "uid-gone"}})]
    assert ("Killing", "Stopping container c") in node.recorder.events


async def test_a_failed_pull_shows_err_image_pull_then_image_pull_back_off(node: Node) -> None:
    node.runtime.images.missing.add("nosuch:1")
    node.runtime.images.pull_errors["nosuch:1"] = "manifest unknown"
    key = node.add("pull", image="nosuch:1")
    await node.workers.sync(key)
    assert _waiting_reason(node.status(key)) == "ErrImagePull"
    assert node.status(key)["containerStatuses"][0]["state"]["waiting"]["message"] == "manifest unknown"
    await node.workers.sync(key)
    assert _waiting_reason(node.status(key)) == "ImagePullBackOff"
    assert node.runtime.images.pulls == ["nosuch:1"]  # no second pull inside the back-off
    assert node.containers() == [] and node.status(key)["phase"] == "Pending"
    # the registry has it now: after the back-off the pull succeeds and the container runs
    del node.runtime.images.pull_errors["nosuch:1"]

    async def running() -> bool:
        await node.workers.sync(key)
        return node.status(key)["phase"] == "Running"

    await wait_for(running, 5, message="pod running after the pull back-off")


async def test_one_plan_per_sync(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    plans: list[str] = []
    real = podworkers.compute_pod_actions

    def counting(pod: dict[str, Any], *args: Any, **kw: Any) -> Any:
        plans.append(pod["metadata"]["name"])
        return real(pod, *args, **kw)

    monkeypatch.setattr(podworkers, "compute_pod_actions", counting)
    key = node.add("once")
    await node.workers.sync(key)   # acts (sandbox + container) and writes status
    assert plans == ["once"]
    [cid] = node.containers(ContainerState.RUNNING)
    node.runtime.finish(cid, 0)
    await node.workers.sync(key)   # plans a back-off
    assert plans == ["once", "once"]


async def test_the_relist_requeues_a_pod_whose_container_exited_and_tears_down_pods_that_are_gone(
        node: Node) -> None:
    key = node.add("relisted")
    await node.workers.sync(key)
    await node.workers.relister.relist()
    while len(node.workers.queue):
        node.workers.queue.done(await node.workers.queue.get())
    [cid] = node.containers(ContainerState.RUNNING)
    node.runtime.finish(cid, 0)
    await node.workers.relister.relist()
    assert await node.workers.queue.get() == key
    del node.pods.items[key]
    await node.workers.relister.relist()
    assert node.runtime.sandboxes == {}


async def test_a_container_exit_and_a_pod_leaving_wake_the_relist_long_before_its_period(node: Node) -> None:
    assert node.workers.relister.relist_period >= 10  # the default: the period only catches what no event tells
    key = node.add("woken")
    await node.workers.sync(key)
    relist = asyncio.create_task(node.workers.relister.run())
    try:
        async def queue_empty() -> bool:
            while len(node.workers.queue):  # the first relist queues the pod, as it is new to it
                node.workers.queue.done(await node.workers.queue.get())
            await asyncio.sleep(0.3)  # past the first relist (and its minimum gap to the next)
            return not len(node.workers.queue)
        await wait_for(queue_empty, 5, message="the first relist over")
        [cid] = node.containers(ContainerState.RUNNING)
        node.runtime.finish(cid, 0)
        assert await asyncio.wait_for(node.workers.queue.get(), 2) == key
        # the pod informer reports the pod deleted: its sandbox goes at once, not at the next period
        pod = node.pods.items.pop(key)
        for handler in node.pods.handlers:
            if handler.on_delete:
                handler.on_delete(pod)

        async def torn_down() -> bool:
            return node.runtime.sandboxes == {}
        await wait_for(torn_down, 2, message="the deleted pod's sandbox removed")
    finally:
        relist.cancel()


async def test_a_pod_whose_volume_is_not_there_yet_is_tried_again_soon_then_less_often(node: Node) -> None:
    """A claim being bound, a ConfigMap applied just after the pod: the first retry comes after 0.3 s (Kubernetes'
    kubelet checks every 300 ms), later ones back off, up to 2 s."""
    key = node.add("mounts")
    node.pods.items[key]["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": "late"}}]
    loop = asyncio.get_running_loop()
    waits = []
    for _ in range(2):
        await node.workers.sync(key)
        assert _waiting_reason(node.status(key)) == "CreateContainerConfigError"
        began = loop.time()
        assert await asyncio.wait_for(node.workers.queue.get(), 3) == key
        node.workers.queue.done(key)
        waits.append(loop.time() - began)
    assert 0.25 <= waits[0] < 1.0 and waits[1] >= 0.55, waits
    assert ("FailedMount", 'Error: configmap "late" not found') in node.recorder.events
    node.client.objects[("configmaps", "late")] = {"metadata": {"name": "late", "namespace": "default"},
                                                   "data": {"k": "v"}}
    await node.workers.sync(key)
    assert node.status(key)["phase"] == "Running"
    assert "uid-mounts" not in node.workers._mount_retry  # the next wait starts short again


async def test_a_sync_before_the_cache_saw_our_status_write_writes_nothing_again(node: Node) -> None:
    key = node.add("stale")
    node.pods.items[key]["metadata"]["resourceVersion"] = "5"
    stale = copy.deepcopy(node.pods.items[key])
    node.client.next_rv = 7
    await node.workers.sync(key)
    assert len(node.client.status_patches) == 1
    fresh = node.pods.items[key]
    node.pods.items[key] = stale                  # the watch has not brought our write back yet
    await node.workers.sync(key)
    assert len(node.client.status_patches) == 1
    node.pods.items[key] = fresh


async def test_pods_starting_together_build_a_bundled_image_once_at_a_time() -> None:
    """Every pod that finds the bundled image missing asks for it; two builds at once in one store race (they
    share the build cache), so the pull manager runs them one after the other and later ones find the image."""
    import threading
    import time as _time

    from kubelet.pullmanager import LocalImages, PullManager
    from kubelet.recorder import NullRecorder
    from kubelet.runtime.fake import FakeImageStore

    ref = "pkube.local/busybox:latest"
    store = FakeImageStore()
    store.missing.add(ref)
    running, most, builds = 0, 0, 0
    lock = threading.Lock()

    def build() -> None:
        nonlocal running, most, builds
        with lock:
            if ref not in store.missing:
                return  # what ensure_busybox does once the image is there
            running += 1
            most = max(most, running)
        _time.sleep(0.05)
        with lock:
            builds += 1
            running -= 1
            store.missing.discard(ref)

    pulls = PullManager(store, NullRecorder(), LocalImages(bundled={ref: build}), 1.0, 8.0)
    pods = [{"metadata": {"uid": f"u{i}", "name": f"p{i}", "namespace": "ns"}} for i in range(5)]
    outcomes = await asyncio.gather(*(pulls.ensure(p, {"name": "c", "image": ref}) for p in pods))
    assert all(o.ready for o in outcomes)
    assert (most, builds) == (1, 1)


def test_pull_secret_credentials_and_clear_errors_for_unusable_secrets() -> None:
    import base64
    import json

    from images.auth import Credentials
    from images.errors import RegistryError
    from kubelet.pullmanager import secret_auths

    def secret(type_: str, key: str, value: bytes) -> dict[str, Any]:
        return {"metadata": {"name": "s"}, "type": type_, "data": {key: base64.b64encode(value).decode()}}
    config = {"auths": {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"u:p").decode()}}}
    assert secret_auths(secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson",
                               json.dumps(config).encode())) == {"docker.io": Credentials("u", "p")}
    assert secret_auths(secret("kubernetes.io/dockercfg", ".dockercfg",
                               json.dumps(config["auths"]).encode())) == {"docker.io": Credentials("u", "p")}
    with pytest.raises(RegistryError, match="secret s is of type Opaque, not kubernetes.io/dockerconfigjson"):
        secret_auths(secret("", "x", b"{}"))
    with pytest.raises(RegistryError, match="secret s: .dockerconfigjson is not base64-encoded JSON"):
        secret_auths(secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", b"not json"))
