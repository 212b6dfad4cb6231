"""Jobs end to end on a real node: busybox pods in runc run to completion, fail, see their index, time out and
are cleaned up after their TTL; driven and checked with the real kubectl v1.32.

The private control plane of the kubelet tests (tests/support/node.py) with its apiserver on TLS (kubectl sends
its token only over TLS), each component with its own identity, so the default RBAC roles are what they use.
"""
from __future__ import annotations

import shutil
from typing import Any, AsyncIterator, Iterator

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import JOBS, PODS
from tests.support.batch import condition, job_body
from tests.support.controlplane import Etcd
from tests.support.kubectl import Kubectl
from tests.support.node import BUSYBOX, Node, pod_namespace, private_node
from tests.util import wait_for

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def jobs_node(etcd: Etcd) -> Iterator[Node]:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: the compatibility suite needs the real kubectl v1.32 on PATH")
    with private_node(etcd, tls=True, own_identities=True) as n:
        yield n


@pytest.fixture
def kubectl(jobs_node: Node) -> Kubectl:
    return Kubectl(str(jobs_node.api.kubeconfig))


@pytest.fixture
async def kc(jobs_node: Node) -> AsyncIterator[Client]:
    c = jobs_node.client()
    yield c
    await c.close()


@pytest.fixture
async def ns(kc: Client) -> AsyncIterator[str]:
    async with pod_namespace(kc, "jobs") as name:
        yield name


def busybox_job(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return job_body(name, ["sh", "-c", script], image=BUSYBOX, **spec)


async def job_pods(kc: Client, ns: str, name: str) -> list[dict[str, Any]]:
    return list((await kc.list(PODS, ns, label_selector=f"batch.kubernetes.io/job-name={name}"))["items"])


async def test_parallel_job_completes_and_kubectl_wait_returns(kc: Client, ns: str, kubectl: Kubectl) -> None:
    await kc.create(JOBS, busybox_job("count", "echo done by $HOSTNAME", completions=3, parallelism=2), ns)
    r = kubectl("wait", "-n", ns, "--for=condition=complete", "job/count", "--timeout=90s", timeout=100)
    assert r.stdout.strip() == "job.batch/count condition met"
    job = await kc.get(JOBS, "count", ns)
    assert job["status"]["succeeded"] == 3 and job["status"]["completionTime"]
    pods = await job_pods(kc, ns, "count")
    assert len(pods) == 3 and {p["status"]["phase"] for p in pods} == {"Succeeded"}
    # finished pods are kept with their logs
    for p in pods:
        out = kubectl("logs", "-n", ns, p["metadata"]["name"]).stdout.strip()
        assert out == f"done by {p['metadata']['name']}"
    table = kubectl("get", "-n", ns, "jobs").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert table[1].split()[:3] == ["count", "Complete", "3/3"]


async def test_failing_job_hits_its_backoff_limit(kc: Client, ns: str, kubectl: Kubectl) -> None:
    await kc.create(JOBS, busybox_job("doomed", "echo trying; exit 3", backoffLimit=1), ns)
    kubectl("wait", "-n", ns, "--for=condition=failed", "job/doomed", "--timeout=90s", timeout=100)
    job = await kc.get(JOBS, "doomed", ns)
    failed = condition(job, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 2
    pods = sorted(await job_pods(kc, ns, "doomed"), key=lambda p: p["metadata"]["creationTimestamp"])
    assert [p["status"]["phase"] for p in pods] == ["Failed", "Failed"]
    exit_codes = [p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods]
    assert exit_codes == [3, 3]
    events = kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=doomed").stdout
    assert "BackoffLimitExceeded" in events


async def test_indexed_job_pods_see_their_index(kc: Client, ns: str, kubectl: Kubectl) -> None:
    await kc.create(JOBS, busybox_job("idx", "echo index=$JOB_COMPLETION_INDEX host=$(hostname)", completions=3,
                                      parallelism=3, completionMode="Indexed"), ns)
    kubectl("wait", "-n", ns, "--for=condition=complete", "job/idx", "--timeout=90s", timeout=100)
    seen = {}
    for p in await job_pods(kc, ns, "idx"):
        index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        seen[index] = kubectl("logs", "-n", ns, p["metadata"]["name"]).stdout.strip()
    assert seen == {i: f"index={i} host=idx-{i}" for i in ("0", "1", "2")}
    assert (await kc.get(JOBS, "idx", ns))["status"]["completedIndexes"] == "0-2"


async def test_active_deadline_fails_the_job_and_stops_its_pods(kc: Client, ns: str, kubectl: Kubectl) -> None:
    await kc.create(JOBS, busybox_job("slow", "sleep 300", activeDeadlineSeconds=3, parallelism=2,
                                      completions=2), ns)
    kubectl("wait", "-n", ns, "--for=condition=failed", "job/slow", "--timeout=90s", timeout=100)
    job = await kc.get(JOBS, "slow", ns)
    assert condition(job, "Failed")["reason"] == "DeadlineExceeded"  # type: ignore[index]
    assert not job["status"].get("active")

    async def stopped() -> bool:
        return not await job_pods(kc, ns, "slow")  # the controller deleted them: the kubelet stopped them
    await wait_for(stopped, 30, message="the running pods stopped and removed")


async def test_ttl_deletes_the_finished_job_and_its_pods(kc: Client, ns: str) -> None:
    await kc.create(JOBS, busybox_job("brief", "true", ttlSecondsAfterFinished=2), ns)

    async def completed() -> bool:
        return condition(await kc.get(JOBS, "brief", ns), "Complete") is not None
    await wait_for(completed, 60, 0.2, message="job Complete")

    async def gone() -> bool:
        try:
            await kc.get(JOBS, "brief", ns)
            return False
        except ApiError as e:
            return e.code == 404 and not await job_pods(kc, ns, "brief")
    await wait_for(gone, 60, 0.2, message="job and its pod deleted after the TTL")
