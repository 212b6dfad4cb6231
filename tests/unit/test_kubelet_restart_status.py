"""What a restarted kubelet writes about pods that kept running: readiness kept from the API's status for the very
same container, and a status change written even while the informer's cache still shows the older status."""
from __future__ import annotations

import copy
from typing import Any

from kubelet.plan import PodRuntime, RuntimeContainer
from kubelet.probes import _was_ready
from kubelet.runtime.interface import ContainerState
from kubelet.status import ProbeView, StatusInputs
from kubelet.statusmanager import StatusManager


class FakeClient:
    """The status subresource's merge patch, with resourceVersions counting up."""

    def __init__(self, pod: dict[str, Any]) -> None:
        self.pod, self.patches = copy.deepcopy(pod), 0

    async def patch(self, res: Any, name: str, body: dict[str, Any], namespace: str, subresource: str
                    ) -> dict[str, Any]:
        self.patches += 1
        for k, v in body["status"].items():
            if v is None:
                self.pod["status"].pop(k, None)
            else:
                self.pod["status"][k] = v
        self.pod["metadata"]["resourceVersion"] = str(int(self.pod["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(self.pod)


async def no_image_id(image: str) -> str:
    return ""


def running_pod() -> tuple[dict[str, Any], PodRuntime]:
    pod = {"metadata": {"name": "p", "namespace": "d", "uid": "u", "resourceVersion": "10"},
           "spec": {"containers": [{"name": "a", "image": "i", "readinessProbe": {"exec": {"command": ["true"]}}}]},
           "status": {}}
    rt = PodRuntime(sandbox_id="sb", sandbox_ready=True, ip="10.0.0.2",
                    containers=[RuntimeContainer(id="c1", name="a", init=False, attempt=0,
                                                 state=ContainerState.RUNNING)])
    return pod, rt


def inputs(ready: bool) -> StatusInputs:
    return StatusInputs(host_ip="192.0.2.1", probes=ProbeView(ready={"a": ready}))


def container_ready(pod: dict[str, Any]) -> bool:
    return bool(pod["status"]["containerStatuses"][0]["ready"])


async def test_a_change_back_is_written_while_the_cache_lags() -> None:
    pod, rt = running_pod()
    client = FakeClient(pod)
    sm = StatusManager(client, no_image_id)  # type: ignore[arg-type]
    assert await sm.write(pod, rt, inputs(True))
    cached = copy.deepcopy(client.pod)  # the informer caught up: Ready
    assert await sm.write(cached, rt, inputs(False))  # written; the cache still says Ready
    assert not container_ready(client.pod)
    # the probe passes again before the cache has seen the write above: the API must say Ready again
    assert await sm.write(cached, rt, inputs(True))
    assert container_ready(client.pod)
    # nothing new: no write, whether the cache lags or not
    assert not await sm.write(cached, rt, inputs(True))
    assert not await sm.write(copy.deepcopy(client.pod), rt, inputs(True))
    assert client.patches == 3


def test_readiness_is_kept_only_for_the_same_container() -> None:
    pod, _ = running_pod()
    pod["status"] = {"containerStatuses": [{"name": "a", "ready": True, "containerID": "runc://c1"}]}
    assert _was_ready(pod, "a", "c1")
    assert not _was_ready(pod, "a", "c2")  # a new container starts unready
    assert not _was_ready(pod, "b", "c1")
    pod["status"]["containerStatuses"][0]["ready"] = False
    assert not _was_ready(pod, "a", "c1")
