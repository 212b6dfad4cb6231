"""ControllerRevisions of StatefulSets and DaemonSets, kept by the real controllers against the real apiserver:
one revision per template with growing numbers, reuse when a template comes back, the pods' revision labels,
the partition's pods recreated at the current revision, revisionHistoryLimit, and no rollout on restart."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pklib.resources import must_lookup
from pklib.client import Client
from pklib.errors import ApiError
from tests.controllers.helpers import FakeKubelet, list_pods
from tests.support.workloads import Nodes, ds_body
from tests.support.workloads import sts_body
from tests.util import unique, wait_for

STS = must_lookup("statefulsets")
DS = must_lookup("daemonsets")
PODS = must_lookup("pods")
REVISIONS = must_lookup("controllerrevisions")
CAUSE = "kubernetes.io/change-cause"


async def revisions(client: Client, ns: str) -> list[dict[str, Any]]:
    items = (await client.list(REVISIONS, ns))["items"]
    return sorted(items, key=lambda r: r["revision"])


async def set_image(client: Client, res: Any, name: str, ns: str, image: str, cause: str) -> None:
    await client.patch(res, name, {"metadata": {"annotations": {CAUSE: cause}}, "spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": image}]}}}}, ns, patch_type="strategic")


def image_of(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["containers"][0]["image"])


async def sts_settled(client: Client, ns: str, name: str, replicas: int, image: str) -> Any:
    """The set's status once every pod runs `image` at the update revision and the rollout is complete."""
    s = await client.get(STS, name, ns)
    st = s.get("status") or {}
    pods = [p for p in await list_pods(client, ns) if not p["metadata"].get("deletionTimestamp")]
    done = (st.get("observedGeneration") == s["metadata"]["generation"] and st.get("readyReplicas") == replicas
            and st.get("updatedReplicas") == replicas and st.get("currentRevision") == st.get("updateRevision")
            and len(pods) == replicas and all(image_of(p) == image for p in pods))
    return st if done else None


async def test_statefulset_history_reuse_and_restart(client: Client, namespace: str, start_manager: Any) -> None:
    manager = await start_manager("statefulset")
    async with FakeKubelet(client, namespace):
        body = sts_body("db", 2, image="busybox:1", podManagementPolicy="Parallel")
        body["metadata"]["annotations"] = {CAUSE: "first"}
        sts = await client.create(STS, body, namespace)
        st = await wait_for(lambda: sts_settled(client, namespace, "db", 2, "busybox:1"), timeout=20,
                            message="2 pods of revision 1")
        [first] = await revisions(client, namespace)
        assert first["revision"] == 1 and st["updateRevision"] == first["metadata"]["name"]
        assert first["metadata"]["name"].startswith("db-")
        assert first["metadata"]["labels"]["app"] == "db", "template labels: the set's selector finds it"
        assert first["metadata"]["labels"]["controller.kubernetes.io/hash"] == first["metadata"]["name"][3:]
        assert first["metadata"]["annotations"][CAUSE] == "first"
        [ref] = first["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("StatefulSet", sts["metadata"]["uid"], True)
        template = first["data"]["spec"]["template"]
        assert template["$patch"] == "replace" and image_of(template) == "busybox:1"
        assert {p["metadata"]["labels"]["controller-revision-hash"] for p in await list_pods(client, namespace)} \
            == {first["metadata"]["name"]}

        await set_image(client, STS, "db", namespace, "busybox:2", "second")
        st = await wait_for(lambda: sts_settled(client, namespace, "db", 2, "busybox:2"), timeout=30,
                            message="rolled to revision 2")
        first_again, second = await revisions(client, namespace)
        assert (first_again["metadata"]["name"], second["revision"]) == (first["metadata"]["name"], 2)
        assert st["currentRevision"] == st["updateRevision"] == second["metadata"]["name"]
        assert second["metadata"]["annotations"][CAUSE] == "second"

        # Back to the first template: its revision is reused with the next number, no third one appears.
        await set_image(client, STS, "db", namespace, "busybox:1", "third")
        st = await wait_for(lambda: sts_settled(client, namespace, "db", 2, "busybox:1"), timeout=30,
                            message="rolled back to the first template")
        listed = await revisions(client, namespace)
        assert [(r["metadata"]["name"], r["revision"]) for r in listed] == [
            (second["metadata"]["name"], 2), (first["metadata"]["name"], 3)]
        assert st["updateRevision"] == first["metadata"]["name"]

        # A restarted controller finds the same revisions: no pod is replaced, nothing new is written.
        uids = {p["metadata"]["uid"] for p in await list_pods(client, namespace)}
        manager.cancel()
        await asyncio.gather(manager, return_exceptions=True)
        await start_manager("statefulset")
        await client.patch(STS, "db", {"metadata": {"labels": {"poke": "1"}}}, namespace)  # a sync for sure

        async def resynced() -> Any:
            s = await client.get(STS, "db", namespace)
            return s["metadata"]["labels"].get("poke") == "1" and await sts_settled(client, namespace, "db", 2,
                                                                                    "busybox:1")
        await wait_for(resynced, timeout=20, message="the restarted controller synced the set")
        assert {p["metadata"]["uid"] for p in await list_pods(client, namespace)} == uids
        assert [r["metadata"]["resourceVersion"] for r in await revisions(client, namespace)] == \
            [r["metadata"]["resourceVersion"] for r in listed]


async def test_statefulset_partition_recreates_at_current_revision(client: Client, namespace: str,
                                                                   start_manager: Any) -> None:
    await start_manager("statefulset")
    async with FakeKubelet(client, namespace):
        await client.create(STS, sts_body("web", 3, podManagementPolicy="Parallel", updateStrategy={
            "type": "RollingUpdate", "rollingUpdate": {"partition": 2}}), namespace)
        await wait_for(lambda: sts_settled(client, namespace, "web", 3, "busybox:1"), timeout=20, message="3 pods")
        await set_image(client, STS, "web", namespace, "busybox:2", "two")

        async def images() -> dict[str, str]:
            return {p["metadata"]["name"]: image_of(p) for p in await list_pods(client, namespace)
                    if not p["metadata"].get("deletionTimestamp")}

        async def partitioned() -> Any:
            return await images() == {"web-0": "busybox:1", "web-1": "busybox:1", "web-2": "busybox:2"}
        await wait_for(partitioned, timeout=20, message="only the ordinal at the partition updated")
        old = await client.get(PODS, "web-0", namespace)
        await client.delete(PODS, "web-0", namespace)

        async def recreated() -> Any:
            pods = {p["metadata"]["name"]: p for p in await list_pods(client, namespace)}
            p = pods.get("web-0")
            return p if p and p["metadata"]["uid"] != old["metadata"]["uid"] else None
        pod = await wait_for(recreated, timeout=20, message="web-0 recreated")
        st = (await client.get(STS, "web", namespace))["status"]
        assert image_of(pod) == "busybox:1", "below the partition a pod comes back at the current revision"
        assert pod["metadata"]["labels"]["controller-revision-hash"] == st["currentRevision"] != st["updateRevision"]


async def test_statefulset_history_limit(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("statefulset")
    async with FakeKubelet(client, namespace):
        await client.create(STS, sts_body("lim", 1, revisionHistoryLimit=1), namespace)
        for image in ("busybox:1", "busybox:2", "busybox:3", "busybox:4"):
            if image != "busybox:1":
                await set_image(client, STS, "lim", namespace, image, image)
            await wait_for(lambda: sts_settled(client, namespace, "lim", 1, image), timeout=20, message=image)

        async def trimmed() -> Any:
            listed = await revisions(client, namespace)
            return listed if [r["revision"] for r in listed] == [3, 4] else None
        listed = await wait_for(trimmed, message="only the live revision and one more kept")
        assert image_of(listed[-1]["data"]["spec"]["template"]) == "busybox:4"


async def test_daemonset_history_labels_and_limit(client: Client, namespace: str, start_manager: Any,
                                                  nodes: Nodes) -> None:
    group = unique("g")
    names = [await nodes.add({"pkt-group": group}) for _ in range(2)]
    await start_manager("daemonset")
    async with FakeKubelet(client, namespace):
        body = ds_body("agent", group)
        body["spec"]["revisionHistoryLimit"] = 1
        ds = await client.create(DS, body, namespace)

        async def settled(image: str) -> Any:
            d = await client.get(DS, "agent", namespace)
            st = d.get("status") or {}
            pods = [p for p in await list_pods(client, namespace) if not p["metadata"].get("deletionTimestamp")]
            return pods if (st.get("observedGeneration") == d["metadata"]["generation"]
                            and st.get("updatedNumberScheduled") == st.get("numberAvailable") == 2
                            and sorted(p["spec"]["nodeName"] for p in pods) == sorted(names)
                            and all(image_of(p) == image for p in pods)) else None
        pods = await wait_for(lambda: settled("busybox:1"), timeout=20, message="a pod per node")
        [first] = await revisions(client, namespace)
        hash_ = first["metadata"]["labels"]["controller-revision-hash"]
        assert (first["metadata"]["name"], first["revision"]) == (f"agent-{hash_}", 1)
        assert first["metadata"]["ownerReferences"][0]["uid"] == ds["metadata"]["uid"]
        assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == {hash_}

        for n, image in enumerate(("busybox:2", "busybox:3"), start=2):
            await set_image(client, DS, "agent", namespace, image, image)
            pods = await wait_for(lambda: settled(image), timeout=30, message=f"rolled to {image}")
            newest = (await revisions(client, namespace))[-1]
            assert newest["revision"] == n and newest["metadata"]["annotations"][CAUSE] == image
            assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == \
                {newest["metadata"]["labels"]["controller-revision-hash"]}

        async def trimmed() -> Any:
            listed = await revisions(client, namespace)
            return listed if [r["revision"] for r in listed] == [2, 3] else None
        await wait_for(trimmed, message="revision 1 trimmed by revisionHistoryLimit 1")
        # Back to busybox:2: its revision returns as number 4.
        await set_image(client, DS, "agent", namespace, "busybox:2", "back")
        await wait_for(lambda: settled("busybox:2"), timeout=30, message="rolled back to busybox:2")
        assert [image_of(r["data"]["spec"]["template"]) for r in await revisions(client, namespace)] == \
            ["busybox:3", "busybox:2"]
        assert [r["revision"] for r in await revisions(client, namespace)] == [3, 4]


async def test_revision_data_is_immutable(client: Client, namespace: str) -> None:
    body = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r1"},
            "data": {"spec": {"template": {"$patch": "replace"}}}, "revision": 1}
    created = await client.create(REVISIONS, body, namespace)
    created["revision"] = 2
    assert (await client.update(REVISIONS, created))["revision"] == 2, "the number may change"
    with pytest.raises(ApiError) as e:
        await client.patch(REVISIONS, "r1", {"data": {"other": 1}}, namespace)
    assert e.value.code == 422 and [c["field"] for c in e.value.causes] == ["data"]
    with pytest.raises(ApiError) as e:
        await client.create(REVISIONS, {**body, "metadata": {"name": "r2"}, "revision": -1}, namespace)
    assert e.value.code == 422 and [c["field"] for c in e.value.causes] == ["revision"]
    with pytest.raises(ApiError) as e:
        await client.create(REVISIONS, {"apiVersion": "apps/v1", "kind": "ControllerRevision",
                                        "metadata": {"name": "r3"}, "revision": 1}, namespace)
    assert e.value.code == 422 and [c["field"] for c in e.value.causes] == ["data"]
    assert [r["metadata"]["name"] for r in await revisions(client, namespace)] == ["r1"], "nothing half-written"


async def test_statefulset_pods_from_before_revisions_are_kept(client: Client, namespace: str,
                                                               start_manager: Any) -> None:
    """A pod an earlier pkube made (labelled `<set>-<template hash>`) of the current template is relabelled
    with the update revision, not replaced."""
    from controllers.util import pod_from_template, template_hash
    from tests.controllers.helpers import set_pod_ready
    sts = await client.create(STS, sts_body("old", 1), namespace)
    pod = pod_from_template(sts["spec"]["template"], sts, name="old-0")
    pod["metadata"]["labels"]["controller-revision-hash"] = f"old-{template_hash(sts['spec']['template'])}"
    pod = await set_pod_ready(client, await client.create(PODS, pod, namespace))
    await start_manager("statefulset")

    async def relabelled() -> Any:
        st = (await client.get(STS, "old", namespace)).get("status") or {}
        p = await client.get(PODS, "old-0", namespace)
        return st if st.get("updateRevision") and \
            p["metadata"]["labels"]["controller-revision-hash"] == st["updateRevision"] else None
    st = await wait_for(relabelled, timeout=20, message="the old pod joined the update revision")
    assert (st["updatedReplicas"], st["currentRevision"]) == (1, st["updateRevision"])
    assert (await client.get(PODS, "old-0", namespace))["metadata"]["uid"] == pod["metadata"]["uid"]


async def test_orphaned_revisions_are_adopted(client: Client, namespace: str, start_manager: Any) -> None:
    """A revision left by an earlier set of the same selector (no controller) joins the new set's history."""
    orphan = await client.create(REVISIONS, {
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": "keep-old", "labels": {"app": "keep"}},
        "data": {"spec": {"template": {"$patch": "replace", "metadata": {"labels": {"app": "keep"}},
                                       "spec": {"containers": [{"name": "c", "image": "busybox:0"}]}}}},
        "revision": 1}, namespace)
    await client.create(REVISIONS, {**orphan, "metadata": {"name": "other-old", "labels": {"app": "other"}}},
                        namespace)
    await start_manager("statefulset")
    sts = await client.create(STS, sts_body("keep", 1), namespace)

    async def adopted() -> Any:
        listed = await revisions(client, namespace)
        mine = [r for r in listed if any(ref["uid"] == sts["metadata"]["uid"]
                                         for ref in r["metadata"].get("ownerReferences") or [])]
        return mine if len(mine) == 2 else None
    old, new = await wait_for(adopted, message="the orphan adopted next to the set's own revision")
    assert (old["metadata"]["name"], old["revision"], new["revision"]) == ("keep-old", 1, 2)
    assert old["metadata"]["ownerReferences"][0]["controller"] is True
    assert "ownerReferences" not in (await client.get(REVISIONS, "other-old", namespace))["metadata"], \
        "a revision the selector does not match stays alone"


async def test_name_collision_counts_and_renames(client: Client, namespace: str, start_manager: Any) -> None:
    """Another owner's revision holding the name the set's template hashes to: the set counts a collision
    and names its revision with the next hash, as Kubernetes does."""
    from controllers.history import hash_data, revision_name, template_patch
    sts = await client.create(STS, sts_body("col", 1), namespace)  # stored with defaults; no controller yet
    taken = revision_name("col", hash_data(template_patch(sts), 0))
    await client.create(REVISIONS, {
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": taken, "labels": {"app": "col"}, "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "gone",
             "uid": "9f0c0a4e-0000-4000-8000-000000000001", "controller": True}]},
        "data": {"something": "else"}, "revision": 1}, namespace)
    await start_manager("statefulset")

    async def renamed() -> Any:
        st = (await client.get(STS, "col", namespace)).get("status") or {}
        return st if st.get("updateRevision") else None
    st = await wait_for(renamed, message="the set's revision written")
    assert st["collisionCount"] == 1
    assert st["updateRevision"] == revision_name("col", hash_data(template_patch(sts), 1)) != taken
    mine = await client.get(REVISIONS, st["updateRevision"], namespace)
    assert mine["data"] == template_patch(sts) and mine["revision"] == 1
    assert (await client.get(REVISIONS, taken, namespace))["data"] == {"something": "else"}, "the other one is kept"
