"""Deployment controller against the real apiserver, with a fake kubelet marking pods ready."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from typing import Any, Iterator

import pytest

from pklib.resources import must_lookup
from pklib import kubeconfig
from pklib.client import Client
from tests.controllers.helpers import PODS, FakeKubelet, PodWatcher, images, list_pods
from tests.support.controlplane import ROOT, Etcd, _stop, _wait_http
from tests.support.workloads import deploy_body, status_is
from tests.util import free_port, unique, wait_for

DEPLOY = must_lookup("deployments")
RS = must_lookup("replicasets")


def condition(d: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in d["status"]["conditions"] if c["type"] == type_)


async def test_rolling_update_respects_surge_and_unavailability(client: Client, namespace: str,
                                                                start_manager: Any) -> None:
    await start_manager("replicaset,deployment")
    async with FakeKubelet(client, namespace):
        await client.create(DEPLOY, deploy_body("web", 4), namespace)
        d = await wait_for(lambda: status_is(client, namespace, "web", replicas=4, availableReplicas=4,
                                             updatedReplicas=4), message="4 available")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        assert condition(d, "Available")["status"] == "True"
        rss = (await client.list(RS, namespace))["items"]
        assert len(rss) == 1 and rss[0]["metadata"]["name"].startswith("web-")
        assert rss[0]["metadata"]["labels"]["pod-template-hash"] in rss[0]["metadata"]["name"]

        watcher = PodWatcher(client, namespace)
        listed = await client.list(PODS, namespace)
        for p in listed["items"]:
            watcher.pods[p["metadata"]["name"]] = p
        await watcher.start(listed["metadata"]["resourceVersion"])
        await client.patch(DEPLOY, "web", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox:2"}]}}}}, namespace, patch_type="merge")

        async def rolled() -> Any:
            pods = await list_pods(client, namespace)
            d = await status_is(client, namespace, "web", replicas=4, updatedReplicas=4, availableReplicas=4)
            return d if d and images(pods) == ["busybox:2"] * 4 else None
        d = await wait_for(rolled, timeout=30, message="rollout to busybox:2")
        await watcher.stop()
        assert watcher.events > 8
        assert watcher.max_total <= 4 + 1, f"surge exceeded: {watcher.max_total} pods at once"
        assert watcher.min_ready is not None and watcher.min_ready >= 4 - 1, \
            f"availability dropped to {watcher.min_ready}"
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        assert condition(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
        rss = (await client.list(RS, namespace))["items"]
        assert sorted(rs["spec"]["replicas"] for rs in rss) == [0, 4], "the old ReplicaSet is kept, scaled to 0"

        # Rollback = the old template again: the old ReplicaSet comes back as revision 3.
        old_rs = next(rs for rs in rss if rs["spec"]["replicas"] == 0)
        await client.patch(DEPLOY, "web", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox:1"}]}}}}, namespace)

        async def rolled_back() -> Any:
            pods = await list_pods(client, namespace)
            d = await status_is(client, namespace, "web", updatedReplicas=4, availableReplicas=4, replicas=4)
            return d if d and images(pods) == ["busybox:1"] * 4 else None
        await wait_for(rolled_back, timeout=30, message="rollback to busybox:1")
        back = await client.get(RS, old_rs["metadata"]["name"], namespace)
        assert back["spec"]["replicas"] == 4
        assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        assert len((await client.list(RS, namespace))["items"]) == 2, "no third ReplicaSet for a rollback"


async def test_scale_and_recreate(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("replicaset,deployment")
    async with FakeKubelet(client, namespace):
        await client.create(DEPLOY, deploy_body("db", 2, strategy={"type": "Recreate"}), namespace)
        await wait_for(lambda: status_is(client, namespace, "db", availableReplicas=2), message="2 available")
        await client.patch(DEPLOY, "db", {"spec": {"replicas": 3}}, namespace)
        await wait_for(lambda: status_is(client, namespace, "db", availableReplicas=3, replicas=3),
                       message="scaled to 3")

        watcher = PodWatcher(client, namespace)
        listed = await client.list(PODS, namespace)
        for p in listed["items"]:
            watcher.pods[p["metadata"]["name"]] = p
        await watcher.start(listed["metadata"]["resourceVersion"])
        await client.patch(DEPLOY, "db", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox:2"}]}}}}, namespace)

        async def recreated() -> Any:
            imgs = images(await list_pods(client, namespace))
            d = await status_is(client, namespace, "db", updatedReplicas=3, availableReplicas=3, replicas=3)
            return d if d and imgs == ["busybox:2"] * 3 else None
        await wait_for(recreated, timeout=30, message="recreate to busybox:2")
        await watcher.stop()
        assert not watcher.mixed, "Recreate must kill all old pods before creating new ones"
        assert watcher.max_total <= 3


async def test_progress_deadline_and_pause(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("replicaset,deployment")
    # No kubelet: pods never become ready, so the rollout cannot progress.
    await client.create(DEPLOY, deploy_body("stuck", 2, progressDeadlineSeconds=2), namespace)

    async def timed_out() -> Any:
        d = await client.get(DEPLOY, "stuck", namespace)
        c = [c for c in (d.get("status") or {}).get("conditions") or [] if c["type"] == "Progressing"]
        return d if c and c[0]["reason"] == "ProgressDeadlineExceeded" and c[0]["status"] == "False" else None
    d = await wait_for(timed_out, timeout=15, message="ProgressDeadlineExceeded")
    assert condition(d, "Available")["status"] == "False"

    await client.patch(DEPLOY, "stuck", {"spec": {"paused": True}}, namespace)
    await client.patch(DEPLOY, "stuck", {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "busybox:2"}]}}}}, namespace)

    async def paused() -> Any:
        d = await client.get(DEPLOY, "stuck", namespace)
        c = [c for c in (d.get("status") or {}).get("conditions") or [] if c["type"] == "Progressing"]
        return c and c[0]["reason"] == "DeploymentPaused" and \
            d["status"]["observedGeneration"] == d["metadata"]["generation"]
    await wait_for(paused, message="DeploymentPaused")
    assert len((await client.list(RS, namespace))["items"]) == 1, "a paused Deployment rolls nothing out"
    await client.patch(DEPLOY, "stuck", {"spec": {"paused": False}}, namespace)

    async def two_rs() -> Any:
        return len((await client.list(RS, namespace))["items"]) == 2
    await wait_for(two_rs, message="rollout after resume")


async def test_restarted_at_and_history_limit(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("replicaset,deployment")
    async with FakeKubelet(client, namespace):
        await client.create(DEPLOY, deploy_body("api", 1, revisionHistoryLimit=1), namespace)
        await wait_for(lambda: status_is(client, namespace, "api", availableReplicas=1), message="available")
        for i in range(3):
            await client.patch(DEPLOY, "api", {"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": f"2026-01-01T00:00:0{i}Z"}}}}}, namespace)

            async def restarted() -> Any:
                d = await status_is(client, namespace, "api", updatedReplicas=1, availableReplicas=1, replicas=1)
                return d and d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == str(i + 2)
            await wait_for(restarted, timeout=20, message=f"restart {i}")

        async def pruned() -> Any:
            rss = (await client.list(RS, namespace))["items"]
            return rss if len(rss) == 2 else None
        rss = await wait_for(pruned, message="history pruned to 1 old ReplicaSet")
        revisions = sorted(int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for rs in rss)
        assert revisions == [3, 4]


async def test_scaling_mid_rollout_spreads_over_both_replicasets(client: Client, namespace: str,
                                                                 start_manager: Any) -> None:
    await start_manager("replicaset,deployment")
    # The new template's pods never become ready: the rollout stalls half-way.
    async with FakeKubelet(client, namespace, accept=lambda p: p["spec"]["containers"][0]["image"] == "busybox:1"):
        await client.create(DEPLOY, deploy_body("mid", 4), namespace)
        await wait_for(lambda: status_is(client, namespace, "mid", availableReplicas=4), message="4 available")
        await client.patch(DEPLOY, "mid", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox:2"}]}}}}, namespace)

        async def stalled() -> Any:
            rss = (await client.list(RS, namespace))["items"]
            sizes = sorted(rs["spec"]["replicas"] for rs in rss)
            return rss if sizes == [2, 3] else None
        await wait_for(stalled, message="rollout stalled at old 3 / new 2 (surge 1, unavailable 1)")

        await client.patch(DEPLOY, "mid", {"spec": {"replicas": 8}}, namespace)

        async def spread() -> Any:
            rss = (await client.list(RS, namespace))["items"]
            sizes = {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"] for rs in rss}
            return sizes if sum(sizes.values()) == 8 + 1 and sizes["busybox:1"] > 3 and sizes["busybox:2"] > 2 \
                else None
        sizes = await wait_for(spread, message="both ReplicaSets grow, within replicas + maxSurge")
        assert sizes["busybox:1"] >= sizes["busybox:2"], "the larger ReplicaSet gets the larger share"
        for rs in (await client.list(RS, namespace))["items"]:
            assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "8"


@pytest.fixture
def open_apiserver(session_tmp: str, etcd: Etcd) -> Iterator[str]:
    """An apiserver without token auth on the session's etcd: this kubectl build sends no token over HTTP."""
    port = free_port()
    log = os.path.join(session_tmp, f"apiserver-open-{port}.log")
    proc = subprocess.Popen([sys.executable, "-m", "launcher", "apiserver", "--etcd-servers", etcd.url,
                             "--port", str(port), "--etcd-prefix", "/" + unique("open")],
                            cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/readyz", proc, "apiserver", log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
async def test_kubectl_rollout_status_history_and_undo(open_apiserver: str, session_tmp: str) -> None:
    """What users run: kubectl reads our status/conditions and rolls back through the revision annotations."""
    from controllers.main import build_parser, run

    kc = os.path.join(session_tmp, unique("kubeconfig-open"))
    kubeconfig.write(kc, kubeconfig.build(open_apiserver, None))
    namespace = unique("ns")
    config = build_parser().parse_args(["--kubeconfig", kc, "--controllers", "replicaset,deployment"])
    ready = asyncio.Event()
    manager = asyncio.create_task(run(config, ready))
    client = Client(open_apiserver)
    kubectl = ["kubectl", "--kubeconfig", kc, "-n", namespace]
    try:
        await asyncio.wait_for(ready.wait(), 30)
        await client.create(must_lookup("namespaces"), {"metadata": {"name": namespace}})
        async with FakeKubelet(client, namespace):
            body = deploy_body("web", 2)
            body["metadata"]["annotations"] = {"kubernetes.io/change-cause": "first release"}
            await client.create(DEPLOY, body, namespace)
            status = await _run(*kubectl, "rollout", "status", "deployment/web", "--timeout=30s")
            assert status.returncode == 0, status.stderr
            assert 'deployment "web" successfully rolled out' in status.stdout
            await client.patch(DEPLOY, "web", {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "busybox:2"}]}}}}, namespace)
            status = await _run(*kubectl, "rollout", "status", "deployment/web", "--timeout=30s")
            assert status.returncode == 0, status.stderr
            annotate = await _run(*kubectl, "annotate", "--overwrite", "deployment/web",
                                  "kubernetes.io/change-cause=image busybox:2")
            assert annotate.returncode == 0, annotate.stderr

            async def history_shows(*rows: str) -> Any:
                history = await _run(*kubectl, "rollout", "history", "deployment/web")
                assert history.returncode == 0, history.stderr
                got = [" ".join(line.split()) for line in history.stdout.splitlines()[2:] if line.strip()]
                return got if got == list(rows) else None
            await wait_for(lambda: history_shows("1 first release", "2 image busybox:2"),
                           message="each revision with its change-cause in kubectl rollout history")
            v1 = next(rs for rs in (await client.list(RS, namespace))["items"]
                      if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1")

            # kubectl sends the old template with `resources: {}` and `creationTimestamp: null` in it.
            undo = await _run(*kubectl, "rollout", "undo", "deployment/web")
            assert undo.returncode == 0, undo.stderr

            async def back() -> Any:
                return images(await list_pods(client, namespace)) == ["busybox:1"] * 2
            await wait_for(back, timeout=20, message="kubectl rollout undo restored busybox:1")
            status = await _run(*kubectl, "rollout", "status", "deployment/web", "--timeout=30s")
            assert status.returncode == 0, status.stderr
            d = await client.get(DEPLOY, "web", namespace)
            assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
            rss = (await client.list(RS, namespace))["items"]
            assert [rs["metadata"]["uid"] for rs in rss if rs["spec"]["replicas"]] == [v1["metadata"]["uid"]]
            assert len(rss) == 2, "the undo reused revision 1's ReplicaSet instead of making a third"
            # As in Kubernetes, the undo also brought revision 1's change-cause back.
            await wait_for(lambda: history_shows("2 image busybox:2", "3 first release"),
                           message="revision 1 listed again as revision 3")
    finally:
        manager.cancel()
        await asyncio.gather(manager, return_exceptions=True)
        await client.close()


async def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return subprocess.CompletedProcess(argv, proc.returncode or 0, out.decode(), err.decode())
