"""`pkctl rollout` as a user runs it: the real pkctl process against the real apiserver, with the real
deployment and replicaset controllers (in this event loop) and a stand-in kubelet that marks pods ready
through the API, so that a rollout really progresses, stalls or completes."""
from __future__ import annotations

import asyncio
import json
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from tests.controllers.helpers import FakeKubelet, list_pods
from tests.support.controlplane import ROOT, ApiServer
from tests.support.pkctl import kind
from tests.util import unique, wait_for

DEPLOY = kind("deployments")
RS = kind("replicasets")
DS = kind("daemonsets")
STS = kind("statefulsets")
CONFIGMAPS = kind("configmaps")
CONTROLLERS = "replicaset,deployment"
PKCTL = (sys.executable, "-m", "pkctl.main")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


class Running:
    """A pkctl process whose output is read line by line while it runs (`rollout status` waiting)."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.seen: list[str] = []

    async def line(self, predicate: Callable[[str], bool], timeout: float = 20) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while raw := await self.proc.stdout.readline():
                self.seen.append(raw.decode().rstrip("\n"))
                if predicate(self.seen[-1]):
                    return self.seen[-1]
        raise AssertionError(f"pkctl ended without a matching line; printed {self.seen}")

    async def finish(self, timeout: float = 30) -> Result:
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        stdout = "".join(f"{line}\n" for line in self.seen) + out.decode()
        assert "Traceback" not in err.decode(), err.decode()
        return Result(int(self.proc.returncode or 0), stdout, err.decode())


class AsyncCli:
    """pkctl (or kubectl) as a subprocess that does not block the event loop the controllers run in."""

    def __init__(self, kubeconfig: str, namespace: str, program: tuple[str, ...] = PKCTL):
        self.base = [*program, "--kubeconfig", kubeconfig, "-n", namespace]
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, *args: str) -> Running:
        proc = await asyncio.create_subprocess_exec(*self.base, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        self.procs.append(proc)
        return Running(proc)

    async def __call__(self, *args: str, timeout: float = 60) -> Result:
        return await (await self.start(*args)).finish(timeout)

    async def stop_all(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def pk(apiserver: ApiServer, namespace: str) -> AsyncIterator[AsyncCli]:
    p = AsyncCli(apiserver.kubeconfig, namespace)
    yield p
    await p.stop_all()


def deployment(name: str, replicas: int, image: str = "busybox:1", **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}, **spec}}


def waiting(name: str, rest: str) -> str:
    return f'Waiting for deployment "{name}" rollout to finish: {rest}'


async def replicasets(client: Client, namespace: str) -> list[dict[str, Any]]:
    return (await client.list(RS, namespace))["items"]


def revision(obj: dict[str, Any]) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")


async def set_image(client: Client, namespace: str, name: str, image: str) -> None:
    await client.patch(DEPLOY, name, {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}},
                       namespace, patch_type="strategic")


async def test_status_waits_until_the_pods_are_available(pk: AsyncCli, client: Client, namespace: str,
                                                          start_manager: Any) -> None:
    await start_manager(CONTROLLERS)
    await client.create(DEPLOY, deployment("web", 3), namespace)
    status = await pk.start("rollout", "status", "deployment/web")
    # No kubelet yet: the pods exist but none is ready, and status keeps waiting.
    line = await status.line(lambda s: "available" in s)
    assert line == waiting("web", "0 of 3 updated replicas are available...")
    assert status.proc.returncode is None, "rollout status must wait while the pods are not available"
    async with FakeKubelet(client, namespace):
        done = await status.finish()
    assert (done.returncode, done.stderr) == (0, ""), done
    assert done.lines[-1] == 'deployment "web" successfully rolled out'
    # (until the controller has seen the new Deployment, kubectl's words for it come first)
    unseen = "Waiting for deployment spec update to be observed..."
    assert all(s.startswith('Waiting for deployment "web" rollout to finish: ') for s in done.lines[:-1]
               if s != unseen), done.lines
    assert unseen not in done.lines[done.lines.index(line):], done.lines
    d = await client.get(DEPLOY, "web", namespace)
    assert d["status"]["availableReplicas"] == 3, "success is only reported once all replicas are available"


async def test_status_timeout_deadline_revision_and_no_watch(pk: AsyncCli, client: Client, namespace: str,
                                                             start_manager: Any) -> None:
    await start_manager(CONTROLLERS)
    await client.create(DEPLOY, deployment("slow", 2), namespace)
    await wait_for(lambda: pods_exist(client, namespace, 2), message="2 pods created")
    once = await pk("rollout", "status", "deploy", "slow", "--watch=false")
    assert (once.returncode, once.stderr) == (0, ""), once
    assert once.lines == [waiting("slow", "0 of 2 updated replicas are available...")]

    timed_out = await pk("rollout", "status", "deployment/slow", "--timeout=1s")
    assert (timed_out.returncode, timed_out.stderr) == (1, "error: timed out waiting for the condition\n")
    assert timed_out.lines and all(s.startswith(waiting("slow", "")) for s in timed_out.lines)

    pinned = await pk("rollout", "status", "deployment/slow", "--revision", "7")
    assert (pinned.returncode, pinned.stderr) == (
        1, "error: desired revision (7) is different from the running revision (1)\n")

    # The deployment controller gives up after progressDeadlineSeconds: status fails instead of waiting on.
    await client.create(DEPLOY, deployment("stuck", 1, progressDeadlineSeconds=1), namespace)
    deadline = await pk("rollout", "status", "deployment/stuck", "--timeout=60s")
    assert (deadline.returncode, deadline.stderr) == (1, 'error: deployment "stuck" exceeded its progress deadline\n')


async def pods_exist(client: Client, namespace: str, n: int) -> bool:
    return len(await list_pods(client, namespace)) == n


async def test_restart_rolls_out_a_new_replicaset(pk: AsyncCli, client: Client, namespace: str,
                                                  start_manager: Any, tmp_path: Path) -> None:
    await start_manager(CONTROLLERS)
    async with FakeKubelet(client, namespace):
        await client.create(DEPLOY, deployment("web", 2), namespace)
        first = await pk("rollout", "status", "deployment/web", "--timeout=60s")
        assert first.returncode == 0 and first.lines[-1] == 'deployment "web" successfully rolled out', first
        [old] = await replicasets(client, namespace)

        before = datetime.now(timezone.utc).replace(microsecond=0)
        restarted = await pk("rollout", "restart", "deployment/web")
        assert (restarted.returncode, restarted.stdout) == (0, "deployment.apps/web restarted\n"), restarted
        stamp = (await client.get(DEPLOY, "web", namespace))["spec"]["template"]["metadata"]["annotations"][
            "kubectl.kubernetes.io/restartedAt"]
        at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert before <= at <= datetime.now(timezone.utc), stamp

        second = await pk("rollout", "status", "deployment/web", "--timeout=60s")
        assert second.returncode == 0 and second.lines[-1] == 'deployment "web" successfully rolled out', second
        rss = {rs["metadata"]["name"]: rs for rs in await replicasets(client, namespace)}
        assert len(rss) == 2, "the restart made a new ReplicaSet"
        new = next(rs for name, rs in rss.items() if name != old["metadata"]["name"])
        assert (revision(new), new["spec"]["replicas"]) == ("2", 2)
        assert rss[old["metadata"]["name"]]["spec"]["replicas"] == 0
        hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in await list_pods(client, namespace)
                  if not p["metadata"].get("deletionTimestamp")}
        assert hashes == {new["metadata"]["labels"]["pod-template-hash"]}, "every pod was replaced"

        history = await pk("rollout", "history", "deployment/web")
        assert (history.returncode, history.stdout) == (
            0, "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"), history
        # The objects may also be named by the manifest that made them.
        manifest = tmp_path / "web.yaml"
        manifest.write_text(json.dumps(deployment("web", 2)))
        by_file = await pk("rollout", "status", "-f", str(manifest))
        assert (by_file.returncode, by_file.stdout) == (0, 'deployment "web" successfully rolled out\n'), by_file


async def test_undo_goes_back_to_the_previous_template(pk: AsyncCli, client: Client, namespace: str,
                                                       start_manager: Any) -> None:
    await start_manager(CONTROLLERS)
    async with FakeKubelet(client, namespace):
        await client.create(DEPLOY, deployment("web", 2, image="busybox:1"), namespace)
        assert (await pk("rollout", "status", "deployment/web", "--timeout=60s")).returncode == 0
        await set_image(client, namespace, "web", "busybox:2")
        assert (await pk("rollout", "status", "deployment/web", "--timeout=60s")).returncode == 0
        v1 = next(rs for rs in await replicasets(client, namespace)
                  if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1")

        shown = await pk("rollout", "history", "deployment/web", "--revision=2")
        assert shown.returncode == 0, shown
        assert shown.lines[:2] == ["deployment.apps/web with revision #2", "Pod Template:"]
        assert "    Image:\tbusybox:2" in shown.lines

        undone = await pk("rollout", "undo", "deployment/web")
        assert (undone.returncode, undone.stdout) == (0, "deployment.apps/web rolled back\n"), undone
        d = await client.get(DEPLOY, "web", namespace)
        assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
        assert "pod-template-hash" not in d["spec"]["template"]["metadata"]["labels"]
        back = await pk("rollout", "status", "deployment/web", "--timeout=60s")
        assert back.returncode == 0 and back.lines[-1] == 'deployment "web" successfully rolled out', back
        pods = [p for p in await list_pods(client, namespace) if not p["metadata"].get("deletionTimestamp")]
        assert sorted(p["spec"]["containers"][0]["image"] for p in pods) == ["busybox:1", "busybox:1"]
        rss = await replicasets(client, namespace)
        assert len(rss) == 2, "the old ReplicaSet is reused, not copied"
        reused = next(rs for rs in rss if rs["metadata"]["uid"] == v1["metadata"]["uid"])
        assert (revision(reused), reused["spec"]["replicas"]) == ("3", 2)

        same = await pk("rollout", "undo", "deployment/web", "--to-revision=3")
        assert (same.returncode, same.stdout) == (
            0, "deployment.apps/web skipped rollback (current template already matches revision 3)\n")
        generation = (await client.get(DEPLOY, "web", namespace))["metadata"]["generation"]
        missing = await pk("rollout", "undo", "deployment/web", "--to-revision=9")
        assert (missing.returncode, missing.stderr) == (1, "error: unable to find specified revision 9 in history\n")
        assert (await client.get(DEPLOY, "web", namespace))["metadata"]["generation"] == generation, "nothing changed"
        gone = await pk("rollout", "history", "deployment/web", "--revision=1")
        assert (gone.returncode, gone.stderr) == (1, "error: unable to find the specified revision\n")

        assert (await pk("rollout", "pause", "deployment/web")).returncode == 0
        refused = await pk("rollout", "undo", "deployment/web")
        assert (refused.returncode, refused.stderr) == (
            1, "error: you cannot rollback a paused deployment; resume it first with 'pkctl rollout resume' and "
               "try again\n")


async def test_pause_holds_the_rollout_until_resume(pk: AsyncCli, client: Client, namespace: str,
                                                    start_manager: Any) -> None:
    await start_manager(CONTROLLERS)
    async with FakeKubelet(client, namespace):
        await client.create(DEPLOY, deployment("web", 2, image="busybox:1"), namespace)
        assert (await pk("rollout", "status", "deployment/web", "--timeout=60s")).returncode == 0
        paused = await pk("rollout", "pause", "deployment/web")
        assert (paused.returncode, paused.stdout) == (0, "deployment.apps/web paused\n"), paused
        again = await pk("rollout", "pause", "deployment/web")
        assert (again.returncode, again.stderr) == (1, 'error: deployments.apps "web" is already paused\n')

        await set_image(client, namespace, "web", "busybox:2")

        async def observed() -> bool:
            d = await client.get(DEPLOY, "web", namespace)
            return bool(d["status"].get("observedGeneration") == d["metadata"]["generation"])
        await wait_for(observed, message="the controller saw the new template")
        assert len(await replicasets(client, namespace)) == 1, "a paused deployment rolls nothing out"
        held = await pk("rollout", "status", "deployment/web", "--watch=false")
        assert (held.returncode, held.lines) == (0, [waiting("web", "0 out of 2 new replicas have been updated...")])
        refused = await pk("rollout", "restart", "deployment/web")
        assert (refused.returncode, refused.stderr) == (
            1, 'error: deployments.apps "web" can\'t restart paused deployment (run rollout resume first)\n')

        resumed = await pk("rollout", "resume", "deployment/web")
        assert (resumed.returncode, resumed.stdout) == (0, "deployment.apps/web resumed\n"), resumed
        assert "paused" not in (await client.get(DEPLOY, "web", namespace))["spec"]
        done = await pk("rollout", "status", "deployment/web", "--timeout=60s")
        assert done.returncode == 0 and done.lines[-1] == 'deployment "web" successfully rolled out', done
        pods = [p for p in await list_pods(client, namespace) if not p["metadata"].get("deletionTimestamp")]
        assert sorted(p["spec"]["containers"][0]["image"] for p in pods) == ["busybox:2", "busybox:2"]
        not_paused = await pk("rollout", "resume", "deploy", "web")
        assert (not_paused.returncode, not_paused.stderr) == (1, 'error: deployments.apps "web" is not paused\n')


async def test_statefulset_status_and_restart(pk: AsyncCli, client: Client, namespace: str,
                                              start_manager: Any) -> None:
    await start_manager("statefulset")
    labels = {"app": "db"}
    async with FakeKubelet(client, namespace):
        await client.create(STS, {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                                  "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": labels},
                                           "template": {"metadata": {"labels": labels}, "spec": {
                                               "containers": [{"name": "c", "image": "busybox"}]}}}}, namespace)
        ready = await pk("rollout", "status", "statefulset/db", "--timeout=60s")
        assert (ready.returncode, ready.lines[-1]) == (0, "partitioned roll out complete: 2 new pods have been "
                                                          "updated..."), ready
        restarted = await pk("rollout", "restart", "sts/db")
        assert (restarted.returncode, restarted.stdout) == (0, "statefulset.apps/db restarted\n"), restarted
        assert "kubectl.kubernetes.io/restartedAt" in \
            (await client.get(STS, "db", namespace))["spec"]["template"]["metadata"]["annotations"]
        again = await pk("rollout", "status", "statefulset/db", "--timeout=60s")
        assert again.returncode == 0, again
        history = await pk("rollout", "history", "statefulset/db")
        assert (history.returncode, history.stdout) == (
            0, "statefulset.apps/db \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"), history


async def test_bad_input_gives_one_line_errors_and_changes_nothing(pk: AsyncCli, client: Client,
                                                                   namespace: str) -> None:
    ds = await client.create(DS, {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                                  "spec": {"selector": {"matchLabels": {"app": "agent"}},
                                           "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                                               "containers": [{"name": "c", "image": "busybox"}]}}}}, namespace)
    await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}, namespace)
    cases = [
        (["status"], "error: required resource not specified\n"),
        (["undo"], "error: required resource not specified\n"),
        (["status", "foo/web"], 'error: the server doesn\'t have a resource type "foo"\n'),
        (["status", "deployment/nope"], 'Error from server (NotFound): deployments.apps "nope" not found\n'),
        (["restart", "deploy", "nope"], 'Error from server (NotFound): deployments.apps "nope" not found\n'),
        (["status", "configmap/cfg"], "error: no status viewer has been implemented for ConfigMap\n"),
        (["undo", "configmap/cfg"], 'error: error retrieving rollbacker for "ConfigMap", no visitor method exists '
                                    "for { ConfigMap}\n"),
        (["pause", "daemonset/agent"], 'error: daemonsets.apps "agent" pausing is not supported\n'),
        (["restart", "cm/cfg"], 'error: configmaps "cfg" restarting is not supported\n'),
        (["status", "deploy/web", "--timeout=5"],
         'error: invalid argument "5" for "--timeout" flag: time: missing unit in duration "5"\n'),
        (["history", "deploy/web", "--revision=-1"], "error: revision must be a positive integer: -1\n"),
    ]
    for args, stderr in cases:
        out = await pk("rollout", *args)
        assert (out.returncode, out.stdout, out.stderr) == (1, "", stderr), args
    # No daemonset controller runs here: the DaemonSet has no revisions to go back to.
    undo_ds = await pk("rollout", "undo", "ds/agent")
    assert (undo_ds.returncode, undo_ds.stdout, undo_ds.stderr) == (1, "", "error: no last revision to roll back to\n")
    empty = await pk("rollout", "history", "ds/agent")
    assert (empty.returncode, empty.stdout) == (0, "daemonset.apps/agent \nNo rollout history found.\n"), empty
    # A kind with no objects: nothing to do, said the way kubectl says it.
    none = await pk("rollout", "restart", "deployment")
    assert (none.returncode, none.stdout, none.stderr) == (0, "", f"No resources found in {namespace} namespace.\n")
    after = await client.get(DS, "agent", namespace)
    assert after["metadata"]["resourceVersion"] == ds["metadata"]["resourceVersion"], "nothing was written"


async def test_same_output_and_exit_codes_as_kubectl(tls_api: ApiServer) -> None:
    """Each command run by pkctl in one namespace and by kubectl in another holding the same objects."""
    from controllers.main import build_parser, run as run_controllers
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: this comparison needs the real kubectl v1.32 on PATH")
    ours_ns, theirs_ns = unique("ns"), unique("ns")
    client = Client.from_kubeconfig(tls_api.kubeconfig)
    pkctl = AsyncCli(tls_api.kubeconfig, ours_ns)
    kubectl = AsyncCli(tls_api.kubeconfig, theirs_ns, ("kubectl",))
    ready = asyncio.Event()
    manager = asyncio.create_task(run_controllers(
        build_parser().parse_args(["--kubeconfig", tls_api.kubeconfig, "--controllers", CONTROLLERS]), ready))

    async def rolled_out(ns: str, rev: str) -> bool:
        d = await client.get(DEPLOY, "web", ns)
        s = d.get("status") or {}
        return bool(revision(d) == rev and s.get("observedGeneration") == d["metadata"]["generation"]
                    and s.get("updatedReplicas") == s.get("availableReplicas") == s.get("replicas") == 2)

    async def compare(*cases: list[str]) -> None:
        for args in cases:
            ours, theirs = await pkctl("rollout", *args), await kubectl("rollout", *args)
            # The only difference allowed: the advice names the tool the user runs.
            theirs_err = theirs.stderr.replace(theirs_ns, ours_ns).replace("'kubectl rollout", "'pkctl rollout")
            assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs_err), args

    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with FakeKubelet(client, ours_ns), FakeKubelet(client, theirs_ns):
            for ns in (ours_ns, theirs_ns):
                await client.create(kind("namespaces"), {"apiVersion": "v1", "kind": "Namespace",
                                                         "metadata": {"name": ns}})
                await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "cfg"}}, ns)
                await client.create(DEPLOY, deployment("web", 2, image="busybox:1"), ns)
                await set_image(client, ns, "web", "busybox:2")
            for ns in (ours_ns, theirs_ns):
                await wait_for(lambda: rolled_out(ns, "2"), timeout=30, message=f"revision 2 rolled out in {ns}")
            await compare(
                ["status", "deployment/web"], ["status", "deploy", "web", "--watch=false"], ["status", "deployment"],
                ["status", "deployment/web", "--revision=9"], ["status", "deployment/web", "--revision=-1"],
                ["status"], ["status", "foo/web"], ["status", "deployment/nope"], ["status", "configmap/cfg"],
                ["history", "deployment/web"], ["history", "deploy/web", "--revision=1"],
                ["history", "deploy/web", "--revision=5"], ["history", "deploy/nope"],
                ["undo", "deployment/web", "--to-revision=2"], ["undo", "deployment/web", "--to-revision=7"],
                ["resume", "deployment/web"], ["pause", "configmap/cfg"], ["restart", "cm/cfg"],
                ["history", "configmap/cfg"], ["undo", "cm/cfg"], ["restart", "statefulset"],
                # Writes, the same sequence on both sides.
                ["pause", "deployment/web"], ["pause", "deploy/web"], ["restart", "deployment/web"],
                ["undo", "deployment/web"], ["resume", "deployment/web"], ["undo", "deployment/web"],
            )
            for ns in (ours_ns, theirs_ns):
                await wait_for(lambda: rolled_out(ns, "3"), timeout=30, message=f"undo rolled out in {ns}")
                d = await client.get(DEPLOY, "web", ns)
                assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
            # As in Kubernetes, the undo brought revision 1's ReplicaSet back as revision 3, on both sides
            # (kubectl's undo sends the template with `resources: {}`, which is no change).
            history = await pkctl("rollout", "history", "deployment/web")
            assert history.stdout == ("deployment.apps/web \nREVISION  CHANGE-CAUSE\n"
                                      "2         <none>\n3         <none>\n\n")
            for ns in (ours_ns, theirs_ns):
                assert len((await client.list(RS, ns))["items"]) == 2, f"a third ReplicaSet in {ns}"
            await compare(["history", "deployment/web"], ["status", "deployment/web"], ["restart", "deployment/web"])
    finally:
        manager.cancel()
        await asyncio.gather(manager, return_exceptions=True)
        await pkctl.stop_all()
        await kubectl.stop_all()
        await client.close()


def statefulset(name: str, image: str, cause: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "annotations": {"kubernetes.io/change-cause": cause}},
            "spec": {"replicas": 1, "serviceName": name, "selector": {"matchLabels": labels},
                     "podManagementPolicy": "Parallel",
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


def daemonset(name: str, image: str, cause: str, group: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "annotations": {"kubernetes.io/change-cause": cause}},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"nodeSelector": {"pkt-group": group},
                                           "containers": [{"name": "c", "image": image}]}}}}


async def set_workload_image(client: Client, res: Any, name: str, ns: str, image: str, cause: str) -> None:
    await client.patch(res, name, {"metadata": {"annotations": {"kubernetes.io/change-cause": cause}},
                                   "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}},
                       ns, patch_type="strategic")


async def settled(client: Client, res: Any, name: str, ns: str, image: str, revisions: int) -> bool:
    """The workload's pods all run `image`, as the newest of `revisions` ControllerRevisions."""
    obj = await client.get(res, name, ns)
    status = obj.get("status") or {}
    pods = [p for p in await list_pods(client, ns, f"app={name}") if not p["metadata"].get("deletionTimestamp")]
    listed = (await client.list(kind("controllerrevisions"), ns, label_selector=f"app={name}"))["items"]
    updated = status.get("updatedReplicas", status.get("updatedNumberScheduled"))
    return bool(status.get("observedGeneration") == obj["metadata"]["generation"] and pods
                and updated == len(pods) and len(listed) == revisions
                and all(p["spec"]["containers"][0]["image"] == image for p in pods))


async def test_statefulset_and_daemonset_history_and_undo(pk: AsyncCli, client: Client, namespace: str,
                                                          start_manager: Any) -> None:
    await start_manager("statefulset")
    async with FakeKubelet(client, namespace):
        await client.create(STS, statefulset("db", "busybox:1", "first"), namespace)
        await wait_for(lambda: settled(client, STS, "db", namespace, "busybox:1", 1), timeout=20, message="rev 1")
        await set_workload_image(client, STS, "db", namespace, "busybox:2", "second")
        await wait_for(lambda: settled(client, STS, "db", namespace, "busybox:2", 2), timeout=20, message="rev 2")

        history = await pk("rollout", "history", "statefulset/db")
        assert (history.returncode, history.stdout) == (
            0, "statefulset.apps/db \nREVISION  CHANGE-CAUSE\n1         first\n2         second\n\n"), history
        shown = await pk("rollout", "history", "sts/db", "--revision=1")
        assert shown.returncode == 0, shown
        assert shown.lines[:2] == ["statefulset.apps/db with revision #1", "Pod Template:"]
        assert "    Image:\tbusybox:1" in shown.lines and "    Image:\tbusybox:2" not in shown.lines

        same = await pk("rollout", "undo", "sts/db", "--to-revision=2")
        assert (same.returncode, same.stdout) == (
            0, "statefulset.apps/db skipped rollback (current template already matches revision 2)\n"), same
        generation = (await client.get(STS, "db", namespace))["metadata"]["generation"]
        missing = await pk("rollout", "undo", "sts/db", "--to-revision=9")
        assert (missing.returncode, missing.stderr) == (1, "error: unable to find specified revision 9 in history\n")
        assert (await client.get(STS, "db", namespace))["metadata"]["generation"] == generation, "nothing changed"

        undone = await pk("rollout", "undo", "statefulset/db")
        assert (undone.returncode, undone.stdout) == (0, "statefulset.apps/db rolled back\n"), undone
        sts = await client.get(STS, "db", namespace)
        assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
        assert "$patch" not in sts["spec"]["template"]
        await wait_for(lambda: settled(client, STS, "db", namespace, "busybox:1", 2), timeout=20,
                       message="undo rolled out, reusing revision 1")
        # Revision 1 came back as revision 3; its change-cause is the one recorded with it.
        after = await pk("rollout", "history", "statefulset/db")
        assert after.stdout == "statefulset.apps/db \nREVISION  CHANGE-CAUSE\n2         second\n3         first\n\n"
        gone = await pk("rollout", "history", "sts/db", "--revision=1")
        assert (gone.returncode, gone.stderr) == (1, "error: unable to find the specified revision\n")


async def test_history_and_undo_match_kubectl_for_revisioned_kinds(tls_api: ApiServer) -> None:
    """DaemonSet and StatefulSet history/undo, by pkctl in one namespace and kubectl in another."""
    from controllers.main import build_parser, run as run_controllers
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: this comparison needs the real kubectl v1.32 on PATH")
    ours_ns, theirs_ns = unique("ns"), unique("ns")
    group, node = unique("g"), unique("node")
    client = Client.from_kubeconfig(tls_api.kubeconfig)
    pkctl = AsyncCli(tls_api.kubeconfig, ours_ns)
    kubectl = AsyncCli(tls_api.kubeconfig, theirs_ns, ("kubectl",))
    ready = asyncio.Event()
    manager = asyncio.create_task(run_controllers(
        build_parser().parse_args(["--kubeconfig", tls_api.kubeconfig, "--controllers", "statefulset,daemonset"]),
        ready))

    async def compare(*cases: list[str]) -> None:
        for args in cases:
            ours, theirs = await pkctl("rollout", *args), await kubectl("rollout", *args)
            assert (ours.returncode, ours.stdout, ours.stderr) == \
                (theirs.returncode, theirs.stdout, theirs.stderr.replace(theirs_ns, ours_ns)), args

    try:
        await asyncio.wait_for(ready.wait(), 30)
        await client.create(kind("nodes"), {"apiVersion": "v1", "kind": "Node",
                                            "metadata": {"name": node, "labels": {"pkt-group": group}}})
        async with FakeKubelet(client, ours_ns), FakeKubelet(client, theirs_ns):
            for ns in (ours_ns, theirs_ns):
                await client.create(kind("namespaces"), {"apiVersion": "v1", "kind": "Namespace",
                                                         "metadata": {"name": ns}})
                await client.create(STS, statefulset("db", "busybox:1", "one"), ns)
                await client.create(DS, daemonset("agent", "busybox:1", "one", group), ns)
            for ns in (ours_ns, theirs_ns):
                for res, name in ((STS, "db"), (DS, "agent")):
                    await wait_for(lambda: settled(client, res, name, ns, "busybox:1", 1), timeout=30,
                                   message=f"{name} rev 1 in {ns}")
                    await set_workload_image(client, res, name, ns, "busybox:2", "two")
            for ns in (ours_ns, theirs_ns):
                for res, name in ((STS, "db"), (DS, "agent")):
                    await wait_for(lambda: settled(client, res, name, ns, "busybox:2", 2), timeout=30,
                                   message=f"{name} rev 2 in {ns}")
            await compare(
                ["history", "statefulset/db"], ["history", "sts/db", "--revision=1"],
                ["history", "sts/db", "--revision=5"], ["history", "daemonset/agent"],
                ["history", "ds/agent", "--revision=2"], ["history", "ds", "agent", "--revision=3"],
                ["undo", "sts/db", "--to-revision=7"], ["undo", "ds/agent", "--to-revision=-1"],
                ["history", "ds/nope"], ["undo", "sts/db", "--to-revision=2"], ["undo", "ds/agent", "--to-revision=2"],
                # Writes, the same on both sides.
                ["undo", "statefulset/db"], ["undo", "daemonset/agent", "--to-revision=1"],
            )
            for ns in (ours_ns, theirs_ns):
                for res, name in ((STS, "db"), (DS, "agent")):
                    await wait_for(lambda: settled(client, res, name, ns, "busybox:1", 2), timeout=30,
                                   message=f"{name} undone in {ns}")
            await compare(["history", "statefulset/db"], ["history", "daemonset/agent"],
                          ["history", "ds/agent", "--revision=3"])
    finally:
        manager.cancel()
        await asyncio.gather(manager, return_exceptions=True)
        await pkctl.stop_all()
        await kubectl.stop_all()
        try:
            await client.delete(kind("nodes"), node)
        except ApiError:
            pass  # never created: the manager did not start
        await client.close()
