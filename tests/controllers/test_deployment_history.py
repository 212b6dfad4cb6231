"""What a Deployment's revision history keeps, against the real apiserver and controller-manager (with a fake
kubelet marking pods ready): the Deployment's annotations on each revision's ReplicaSet, and a rollback to a
template that differs only by empty fields reusing the old ReplicaSet, also across a controller restart."""
from __future__ import annotations

import asyncio
import copy
import sys
from typing import Any

from pklib.client import Client
from tests.controllers.helpers import FakeKubelet, images, list_pods
from pklib.resources import DEPLOYMENTS as DEPLOY
from pklib.resources import REPLICASETS as RS
from tests.support.controlplane import ROOT, ApiServer
from tests.support.workloads import deploy_body, status_is
from tests.util import wait_for

CAUSE = "kubernetes.io/change-cause"
REVISION = "deployment.kubernetes.io/revision"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


async def replicasets(client: Client, namespace: str) -> list[dict[str, Any]]:
    return (await client.list(RS, namespace))["items"]


def ann_of(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


async def rs_at_revision(client: Client, namespace: str, revision: str) -> dict[str, Any] | None:
    return next((rs for rs in await replicasets(client, namespace) if ann_of(rs).get(REVISION) == revision),
                None)


async def pkctl(apiserver: ApiServer, namespace: str, *args: str) -> tuple[int, str, str]:
    # A subprocess, so that the controllers in this event loop keep running meanwhile.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pkctl.main", "--kubeconfig", apiserver.kubeconfig, "-n", namespace, *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_change_cause_is_kept_per_revision(client: Client, namespace: str, apiserver: ApiServer,
                                                 start_manager: Any) -> None:
    await start_manager("replicaset,deployment")
    async with FakeKubelet(client, namespace):
        body = deploy_body("web", 2)
        body["metadata"]["annotations"] = {CAUSE: "create with busybox:1", "team": "shop", LAST_APPLIED: "{}"}
        await client.create(DEPLOY, body, namespace)
        first = await wait_for(lambda: rs_at_revision(client, namespace, "1"), message="revision 1")
        assert ann_of(first)[CAUSE] == "create with busybox:1" and ann_of(first)["team"] == "shop"
        assert LAST_APPLIED not in ann_of(first), "the apply bookkeeping stays on the Deployment"

        await client.patch(DEPLOY, "web", {"metadata": {"annotations": {CAUSE: "image busybox:2"}}, "spec": {
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}}, namespace)
        second = await wait_for(lambda: rs_at_revision(client, namespace, "2"), message="revision 2")
        assert ann_of(second)[CAUSE] == "image busybox:2"
        await wait_for(lambda: status_is(client, namespace, "web", updatedReplicas=2, availableReplicas=2,
                                         replicas=2), timeout=30, message="revision 2 rolled out")

        # Annotating afterwards (`kubectl annotate ... change-cause=`) reaches the current revision only.
        await client.patch(DEPLOY, "web", {"metadata": {"annotations": {CAUSE: "image busybox:2, hotfix"}}},
                           namespace)

        async def synced() -> Any:
            rs = await client.get(RS, second["metadata"]["name"], namespace)
            return rs if ann_of(rs).get(CAUSE) == "image busybox:2, hotfix" else None
        await wait_for(synced, message="the new cause copied onto the current ReplicaSet")
        old = await client.get(RS, first["metadata"]["name"], namespace)
        assert ann_of(old)[CAUSE] == "create with busybox:1", "an old revision keeps the cause it had"
        assert (old["spec"]["replicas"], len(await replicasets(client, namespace))) == (0, 2), \
            "an annotation alone rolls nothing out"

        code, out, err = await pkctl(apiserver, namespace, "rollout", "history", "deployment/web")
        assert (code, err) == (0, ""), err
        assert out == ("deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         create with busybox:1\n"
                       "2         image busybox:2, hotfix\n\n")


async def test_rollback_with_empty_fields_reuses_the_old_replicaset_across_restarts(
        client: Client, namespace: str, start_manager: Any) -> None:
    manager = await start_manager("replicaset,deployment")
    async with FakeKubelet(client, namespace):
        await client.create(DEPLOY, deploy_body("web", 2), namespace)
        v1 = await wait_for(lambda: rs_at_revision(client, namespace, "1"), message="revision 1")
        await client.patch(DEPLOY, "web", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox:2"}]}}}}, namespace)
        await wait_for(lambda: status_is(client, namespace, "web", updatedReplicas=2, availableReplicas=2,
                                         replicas=2), timeout=30, message="revision 2 rolled out")
        # Go's encoder writes empty structs and null timestamps: the template `kubectl rollout undo` sends.
        template = copy.deepcopy(v1["spec"]["template"])
        del template["metadata"]["labels"]["pod-template-hash"]
        template["metadata"]["creationTimestamp"] = None
        template["spec"]["containers"][0]["resources"] = {}
        await client.patch(DEPLOY, "web", [{"op": "replace", "path": "/spec/template", "value": template}],
                           namespace, patch_type="json")
        stored = (await client.get(DEPLOY, "web", namespace))["spec"]["template"]
        assert stored["spec"]["containers"][0].get("resources") == {}, "the empty field is really there"

        async def rolled_back() -> Any:
            d = await status_is(client, namespace, "web", updatedReplicas=2, availableReplicas=2, replicas=2)
            live = [p for p in await list_pods(client, namespace) if not p["metadata"].get("deletionTimestamp")]
            return d if d and images(live) == ["busybox:1"] * 2 and ann_of(d)[REVISION] == "3" else None
        await wait_for(rolled_back, timeout=30, message="rollback to busybox:1 as revision 3")
        rss = await replicasets(client, namespace)
        assert len(rss) == 2, "the old ReplicaSet is reused, not copied"
        back = await client.get(RS, v1["metadata"]["name"], namespace)
        assert back["metadata"]["uid"] == v1["metadata"]["uid"]
        assert (ann_of(back)[REVISION], ann_of(back)["deployment.kubernetes.io/revision-history"],
                back["spec"]["replicas"]) == ("3", "1", 2)
        pods = {p["metadata"]["uid"] for p in await list_pods(client, namespace)}

        # A restarted controller-manager still sees that ReplicaSet as the Deployment's current one.
        manager.cancel()
        await asyncio.gather(manager, return_exceptions=True)
        await start_manager("replicaset,deployment")
        await client.patch(DEPLOY, "web", {"metadata": {"annotations": {CAUSE: "after restart"}}}, namespace)

        async def synced() -> Any:
            rs = await client.get(RS, v1["metadata"]["name"], namespace)
            return rs if ann_of(rs).get(CAUSE) == "after restart" else None
        after = await wait_for(synced, message="the restarted controller synced the Deployment")
        assert ann_of(after)[REVISION] == "3" and after["spec"]["replicas"] == 2
        assert {rs["metadata"]["uid"] for rs in await replicasets(client, namespace)} == \
            {rs["metadata"]["uid"] for rs in rss}, "no new ReplicaSet after the restart"
        assert {p["metadata"]["uid"] for p in await list_pods(client, namespace)} == pods, "no pod replaced"
