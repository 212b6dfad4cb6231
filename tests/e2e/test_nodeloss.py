"""End to end: a node of a 3-node cluster (`pkctl cluster up --nodes 3`) is lost and comes back.

The node "dies" as a machine does: its kubelet and proxy stop (frozen by SIGSTOP, so the supervisor does not
restart them yet), its pods' processes are killed, its network namespace is unplugged from the cluster bridge.
With a short `--node-monitor-grace-period` and `--default-unreachable-toleration-seconds`, the node goes
Ready=Unknown, its Deployment pods are evicted and run again on the other nodes, its DaemonSet pod stays bound
to it (not evicted, not moved). A StatefulSet pod whose claim is bound to a local PersistentVolume on that node
is evicted but stays Terminating (its kubelet cannot confirm it stopped: a StatefulSet never runs two pods of
one ordinal), and once the admin force-deletes it, as Kubernetes' docs say, its replacement stays Pending with
the scheduler's reason (volume node affinity conflict) rather than running elsewhere. When it comes back (the
supervisor restarts its killed kubelet and proxy, the link is plugged back), it is Ready again, the evicted pods'
leftovers are cleaned up and nothing runs twice; the StatefulSet pod runs there."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from pkctl.cluster.components import BY_NAME
from tests.e2e.helpers import Cluster, NodeLoss, local_cluster, make_namespace
from tests.util import wait_for_sync as wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler")),
                       reason="the control plane has not landed in this build"),
]

GRACE, TOLERATION = 6, 4
REPLICAS = 3
IMAGE = "pkube.local/busybox:latest"


@pytest.fixture(scope="module")
def three() -> Iterator[Cluster]:
    with local_cluster("--nodes", "3", "--node-monitor-grace-period", str(GRACE),
                       "--default-unreachable-toleration-seconds", str(TOLERATION)) as c:
        yield c


def _pods(c: Cluster, ns: str, app: str) -> list[dict[str, Any]]:
    code, body = c.api(f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3D{app}")
    assert code == 200, body
    items: list[dict[str, Any]] = body["items"]
    return items


def _running(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods running and Ready (not being deleted)."""
    return [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]


def _ready(c: Cluster, node: str) -> str | None:
    code, body = c.api(f"/api/v1/nodes/{node}")
    assert code == 200, body
    return next((x["status"] for x in body["status"].get("conditions", []) if x["type"] == "Ready"), None)


def test_lost_node_pods_move_daemon_pod_stays_and_the_node_comes_back_clean(three: Cluster) -> None:
    cfg = three.config()
    ns = make_namespace(three)
    spec = {"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
                  "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}}, "template": {
                      "metadata": {"labels": {"app": "web"}},
                      "spec": {**spec, "affinity": {"podAntiAffinity": {
                          "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
                              "labelSelector": {"matchLabels": {"app": "web"}},
                              "topologyKey": "kubernetes.io/hostname"}}]}}}}}}
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": ns},
                 "spec": {"selector": {"matchLabels": {"app": "agent"}},
                          "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}}}
    for path, obj in ((f"/apis/apps/v1/namespaces/{ns}/deployments", deployment),
                      (f"/apis/apps/v1/namespaces/{ns}/daemonsets", daemonset)):
        code, body = three.api(path, obj)
        assert code == 201, body
    web = wait_for(lambda: r if len(r := _running(_pods(three, ns, "web"))) == REPLICAS else None, timeout=90,
                   message="the Deployment's pods running")
    agents = wait_for(lambda: r if len(r := _running(_pods(three, ns, "agent"))) == 3 else None, timeout=60,
                      message="a DaemonSet pod running on each node")
    # the victim: a worker running one of the Deployment's pods (the host runs the first node)
    workers = {w["name"]: w for w in cfg["workers"]}
    victim_name = next((p["spec"]["nodeName"] for p in web if p["spec"]["nodeName"] in workers), None)
    assert victim_name, [p["spec"]["nodeName"] for p in web]
    evicted = {p["metadata"]["uid"] for p in web if p["spec"]["nodeName"] == victim_name}
    agent_uid = next(p["metadata"]["uid"] for p in agents if p["spec"]["nodeName"] == victim_name)
    db_uid = _statefulset_on_local_pv(three, ns, victim_name, spec)
    loss = NodeLoss(three.home, victim_name)
    try:
        # the node dies: its kubelet and proxy stop, its pods' processes die, its link goes
        loss.die()
        wait_for(lambda: not loss.container_pod_uids(running_only=True), timeout=10,
                 message="no container running on the lost node")

        wait_for(lambda: _ready(three, victim_name) == "Unknown", timeout=GRACE + 20,
                 message="the lost node's Ready condition Unknown")
        # its Deployment pods are evicted and the replicas run on the other nodes
        moved = wait_for(lambda: r if len(r := _running(_pods(three, ns, "web"))) == REPLICAS
                         and all(p["spec"]["nodeName"] != victim_name for p in r) else None,
                         timeout=TOLERATION + 60, message="the Deployment's replicas running on the other nodes")
        assert not evicted & {p["metadata"]["uid"] for p in moved}
        # its DaemonSet pod stays bound to it, not evicted, and none is started elsewhere in its place
        agents_now = [p for p in _pods(three, ns, "agent") if not p["metadata"].get("deletionTimestamp")]
        assert sorted(p["spec"]["nodeName"] for p in agents_now) == sorted(p["spec"]["nodeName"] for p in agents)
        assert agent_uid in {p["metadata"]["uid"] for p in agents_now}
        _statefulset_pod_waits_for_its_node(three, ns, db_uid)

        # the node comes back: the supervisor restarts its killed kubelet and proxy, its link is plugged back
        loss.come_back()
        wait_for(lambda: _ready(three, victim_name) == "True", timeout=60, message="the node Ready again")
    finally:
        loss.come_back()  # after a failure too: `cluster down` must find the node whole

    # its stale pods are cleaned up: the evicted ones are gone from the API and from the node
    wait_for(lambda: not evicted & {p["metadata"]["uid"] for p in _pods(three, ns, "web")}, timeout=60,
             message="the evicted pods finished and removed")
    # the daemon pod runs again on its node, as the same pod, its container restarted by the kubelet
    agent = wait_for(lambda: next((p for p in _running(_pods(three, ns, "agent"))
                                   if p["metadata"]["uid"] == agent_uid), None),
                     timeout=60, message="the daemon pod Running and Ready again")
    assert agent["status"]["containerStatuses"][0]["restartCount"] >= 1, agent["status"]

    # nothing runs twice: each workload's live pods are its replicas, and the node keeps containers of its own
    # live pods only (none of the evicted ones, running or not)
    def settled() -> bool:
        web_now = _pods(three, ns, "web")
        agents_now = _pods(three, ns, "agent")
        live_ids = {p["metadata"]["uid"] for p in web_now + agents_now + _pods(three, ns, "db")
                    if p["spec"].get("nodeName") == victim_name}
        return (len(web_now) == REPLICAS and len(_running(web_now)) == REPLICAS and len(agents_now) == 3
                and all(uid in live_ids for uid in loss.container_pod_uids()))
    wait_for(settled, timeout=60, message="one copy of each pod")
    # the StatefulSet pod runs on its volume's node once it is back
    db = wait_for(lambda: r[0] if len(r := _running(_pods(three, ns, "db"))) == 1 else None, timeout=60,
                  message="the StatefulSet pod running on its node again")
    assert db["spec"]["nodeName"] == victim_name and db["metadata"]["uid"] != db_uid


def _statefulset_on_local_pv(c: Cluster, ns: str, node: str, spec: dict[str, Any]) -> str:
    """A one-replica StatefulSet whose claim binds a local PV on `node` (Kubernetes' local volumes: a class with
    no provisioner that binds once the pod is scheduled); returns the uid of its pod, once Running there."""
    sc = f"local-{ns}"
    storage_class = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": sc},
                     "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"}
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{ns}-data"},
          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": sc,
                   "persistentVolumeReclaimPolicy": "Retain", "local": {"path": str(c.home / f"pv-{ns}")},
                   "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                       {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": ns},
           "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "db"}}, "spec": {**spec, "containers": [
                        {**spec["containers"][0], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                        "storageClassName": sc, "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}]}}
    (c.home / f"pv-{ns}").mkdir()
    for path, obj in (("/apis/storage.k8s.io/v1/storageclasses", storage_class), ("/api/v1/persistentvolumes", pv),
                      (f"/apis/apps/v1/namespaces/{ns}/statefulsets", sts)):
        code, body = c.api(path, obj)
        assert code == 201, body
    db = wait_for(lambda: r[0] if len(r := _running(_pods(c, ns, "db"))) == 1 else None, timeout=60,
                  message="the StatefulSet pod running on its volume's node")
    assert db["spec"]["nodeName"] == node, db["spec"]
    uid: str = db["metadata"]["uid"]
    return uid


def _statefulset_pod_waits_for_its_node(c: Cluster, ns: str, uid: str) -> None:
    """The StatefulSet pod on the lost node: evicted, not replaced while it may still run there; force-deleted,
    its replacement stays Pending, unschedulable for its volume, with Kubernetes' FailedScheduling message."""
    old = wait_for(lambda: next((p for p in _pods(c, ns, "db") if p["metadata"].get("deletionTimestamp")), None),
                   timeout=30, message="the StatefulSet pod evicted")
    assert old["metadata"]["uid"] == uid and [p["metadata"]["uid"] for p in _pods(c, ns, "db")] == [uid]
    code, body = c.api(f"/api/v1/namespaces/{ns}/pods/db-0", {"gracePeriodSeconds": 0}, method="DELETE")
    assert code == 200, body

    def unschedulable() -> str | None:
        pods = _pods(c, ns, "db")
        if len(pods) != 1 or pods[0]["metadata"]["uid"] == uid:
            return None
        cond = next((x for x in pods[0]["status"].get("conditions") or [] if x["type"] == "PodScheduled"), {})
        return cond.get("message") if cond.get("reason") == "Unschedulable" else None
    message = wait_for(unschedulable, timeout=30, message="the new StatefulSet pod unschedulable")
    print("the StatefulSet pod while its node is lost:", message)
    assert message.startswith("0/3 nodes are available: ") and \
        "2 node(s) had volume node affinity conflict" in message, message
    (pod,) = _pods(c, ns, "db")
    assert pod["status"].get("phase") == "Pending" and not pod["spec"].get("nodeName"), pod
    code, events = c.api(f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3Ddb-0")
    assert code == 200, events
    assert any(e["reason"] == "FailedScheduling" and "volume node affinity conflict" in e["message"]
               for e in events["items"]), [(e["reason"], e["message"]) for e in events["items"]]


def test_partitioned_node_stops_its_evicted_pods_when_it_comes_back(three: Cluster) -> None:
    """Cut off rather than dead (its pods keep running): the node that comes back stops the evicted pods'
    containers; their replacements, bound to that node by a nodeSelector, wait (Pending: the node is tainted)
    and then run there, each replica once."""
    ns = make_namespace(three)
    worker = three.config()["workers"][0]["name"]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cut", "namespace": ns},
                  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "cut"}}, "template": {
                      "metadata": {"labels": {"app": "cut"}},
                      "spec": {"terminationGracePeriodSeconds": 1,
                               "nodeSelector": {"kubernetes.io/hostname": worker}, "containers": [
                                   {"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]}}}}
    code, body = three.api(f"/apis/apps/v1/namespaces/{ns}/deployments", deployment)
    assert code == 201, body
    first = wait_for(lambda: r if len(r := _running(_pods(three, ns, "cut"))) == 2 else None, timeout=60,
                     message="the Deployment's pods running on the worker")
    cut = {p["metadata"]["uid"] for p in first}
    loss = NodeLoss(three.home, worker)
    try:
        loss.die(kill_pods=False)
        wait_for(lambda: _ready(three, worker) == "Unknown", timeout=GRACE + 20, message="the node Unknown")
        wait_for(lambda: all(p["metadata"].get("deletionTimestamp") for p in _pods(three, ns, "cut")
                             if p["metadata"]["uid"] in cut), timeout=TOLERATION + 30, message="the pods evicted")
        assert cut <= set(loss.container_pod_uids(running_only=True))  # cut off, they still run
        assert not _running([p for p in _pods(three, ns, "cut") if p["metadata"]["uid"] not in cut])
        loss.come_back()
        wait_for(lambda: _ready(three, worker) == "True", timeout=60, message="the node Ready again")
    finally:
        loss.come_back()
    wait_for(lambda: not cut & set(loss.container_pod_uids()), timeout=60,
             message="the evicted pods' containers stopped and removed on the node")
    wait_for(lambda: not cut & {p["metadata"]["uid"] for p in _pods(three, ns, "cut")}, timeout=60,
             message="the evicted pods removed from the API")

    def settled() -> bool:
        pods = _pods(three, ns, "cut")
        live = {p["metadata"]["uid"] for p in pods}
        ours = [uid for uid in loss.container_pod_uids(running_only=True) if uid in live | cut]
        return len(_running(pods)) == 2 == len(pods) and sorted(ours) == sorted(live)
    wait_for(settled, timeout=60, message="two replicas, each running once on the node")
