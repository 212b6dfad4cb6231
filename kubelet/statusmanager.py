"""Pod status: computed from the runtime's state (kubelet.status) and written to the API only when it changed,
as a merge patch of the status subresource. It remembers what it wrote, so the echo of its own write (a watch
event with nothing else new) does not sync the pod again."""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from pklib.client import Client
from pklib.errors import ApiError, is_not_found
from pklib.resources import PODS

from kubelet.plan import PodRuntime, pod_finished
from kubelet.status import OWNED_STATUS, StatusInputs, compute_status, same_status



def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "managedFields", "generation")}


class StatusManager:
    def __init__(self, client: Client, image_id: Callable[[str], Awaitable[str]]) -> None:
        self.client = client
        self.image_id = image_id
        self._written: dict[str, dict[str, Any]] = {}   # uid -> the status we last wrote
        self._written_rv: dict[str, int] = {}           # uid -> the resourceVersion that write made

    def is_own_echo(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        """The update only brings back the status we wrote (spec and metadata unchanged)."""
        uid = new["metadata"].get("uid", "")
        echo = (old.get("spec") == new.get("spec") and _meta(old) == _meta(new)
                and self._written.get(uid) == new.get("status"))
        self._caught_up(new)
        return echo

    async def image_ids(self, pod: dict[str, Any]) -> dict[str, str]:
        out = {}
        for s in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]:
            image_id = await self.image_id(s.get("image", ""))
            if image_id:
                out[s["image"]] = image_id
        return out

    async def write(self, pod: dict[str, Any], rt: PodRuntime, inputs: StatusInputs) -> bool:
        """Write the pod's status if it differs from the one the pod has; True when it was written."""
        uid = pod["metadata"]["uid"]
        self._caught_up(pod)
        status = compute_status(pod, rt, inputs, pod_finished(pod, rt))
        # Until the cache has seen our last write (_caught_up forgets it then), the API holds that write, not
        # the cache's older status: compare with it. Comparing with the cache would drop a change back to
        # what the cache still shows (a readiness probe passing right after we wrote Ready=False), and the
        # echo of our write would then not sync the pod again: the status would stay wrong for good.
        if same_status(self._written.get(uid, pod.get("status") or {}), status):
            return False
        # a merge patch: keys we own that are gone now must be nulled explicitly
        patch = {**{k: None for k in OWNED_STATUS if k in (pod.get("status") or {}) and k not in status}, **status}
        try:
            written = await self.client.patch(PODS, pod["metadata"]["name"], {"status": patch},
                                              pod["metadata"]["namespace"], subresource="status")
            self._written[uid] = written.get("status") or {}
            self._written_rv[uid] = _rv(written)
        except ApiError as e:
            if not is_not_found(e):
                raise
        return True

    def _caught_up(self, pod: dict[str, Any]) -> None:
        """The cache has seen our last write: what it wrote is no longer needed (a node with thousands of pods,
        or a hollow process with thousands of nodes, would otherwise keep a second copy of every pod's status)."""
        uid = pod["metadata"].get("uid", "")
        if uid in self._written_rv and _rv(pod) >= self._written_rv[uid]:
            self.forget(uid)

    def forget(self, uid: str) -> None:
        self._written.pop(uid, None)
        self._written_rv.pop(uid, None)


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0
