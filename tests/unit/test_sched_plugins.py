"""Each scheduler plugin as a pure function over hand-built pods and nodes."""
from __future__ import annotations

from typing import Any

import pytest

from scheduler.framework import PodInfo, pod_info
from scheduler.plugins import (nodeaffinity, nodeports, noderesources, nodeunschedulable, podtopologyspread,
                               tainttoleration, volumebinding)
from tests.support.scheduling import FakeListers, make_node, make_pod


# -- resources ---------------------------------------------------------------------------------

def test_pod_requests_sum_containers_and_take_the_largest_init_container() -> None:
    p = pod_info({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
        "containers": [{"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                       {"name": "b", "resources": {"requests": {"cpu": "0.5"}}}],
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "1Mi"}}}]}})
    assert p.cpu == 2000
    assert p.memory == 64 * 1024 * 1024
    # Container b has no memory request: scoring assumes the default 200Mi for it.
    assert p.nonzero_memory == 64 * 1024 * 1024 + 200 * 1024 * 1024


def test_fit_sums_requests_already_on_the_node() -> None:
    node = make_node(cpu="1", memory="1Gi")
    node.add_pod(make_pod("a", cpu="600m", memory="512Mi"))
    assert noderesources.fit(make_pod("b", cpu="400m", memory="512Mi"), node) is None
    assert noderesources.fit(make_pod("b", cpu="401m"), node) == ["Insufficient cpu"]
    assert noderesources.fit(make_pod("b", cpu="500m", memory="600Mi"), node) == \
        ["Insufficient cpu", "Insufficient memory"]


def test_fit_frees_resources_when_a_pod_leaves() -> None:
    node = make_node(cpu="1")
    a = make_pod("a", cpu="1")
    node.add_pod(a)
    assert noderesources.fit(make_pod("b", cpu="1"), node) == ["Insufficient cpu"]
    node.remove_pod(a)
    assert noderesources.fit(make_pod("b", cpu="1"), node) is None


def test_fit_counts_pods_against_allocatable_pods() -> None:
    node = make_node(pods="2")
    node.add_pod(make_pod("a"))
    assert noderesources.fit(make_pod("b"), node) is None
    node.add_pod(make_pod("b"))
    assert noderesources.fit(make_pod("c"), node) == ["Too many pods"]


def test_least_allocated_prefers_the_emptier_node() -> None:
    busy, idle = make_node("busy"), make_node("idle")
    busy.add_pod(make_pod("a", cpu="3", memory="12Gi"))
    pod = make_pod("p", cpu="500m", memory="1Gi")
    busy_score, idle_score = noderesources.least_allocated(pod, [busy, idle])
    assert idle_score > busy_score
    assert 0 <= busy_score <= 100 and idle_score <= 100


def test_balanced_allocation_prefers_even_cpu_and_memory_use() -> None:
    cpu_heavy, balanced = make_node("cpu-heavy"), make_node("balanced")
    cpu_heavy.add_pod(make_pod("a", cpu="3", memory="1Gi"))
    balanced.add_pod(make_pod("b", cpu="2", memory="8Gi"))
    pod = make_pod("p", cpu="100m", memory="100Mi")
    heavy_score, balanced_score = noderesources.balanced_allocation(pod, [cpu_heavy, balanced])
    assert balanced_score > heavy_score


# -- node affinity -----------------------------------------------------------------------------

def test_node_selector_needs_every_label() -> None:
    node = make_node(labels={"disk": "ssd", "zone": "a"})
    assert nodeaffinity.filter(make_pod(nodeSelector={"disk": "ssd"}), node) is None
    assert nodeaffinity.filter(make_pod(nodeSelector={"disk": "ssd", "zone": "b"}), node) == \
        [nodeaffinity.REASON]


def _affinity(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


@pytest.mark.parametrize("expr,fits", [
    ({"key": "zone", "operator": "In", "values": ["a", "b"]}, True),
    ({"key": "zone", "operator": "In", "values": ["c"]}, False),
    ({"key": "zone", "operator": "NotIn", "values": ["c"]}, True),
    ({"key": "missing", "operator": "NotIn", "values": ["c"]}, True),
    ({"key": "zone", "operator": "Exists"}, True),
    ({"key": "missing", "operator": "Exists"}, False),
    ({"key": "missing", "operator": "DoesNotExist"}, True),
    ({"key": "cores", "operator": "Gt", "values": ["8"]}, True),
    ({"key": "cores", "operator": "Gt", "values": ["16"]}, False),
    ({"key": "cores", "operator": "Lt", "values": ["17"]}, True),
    ({"key": "zone", "operator": "Lt", "values": ["17"]}, False),  # not an integer: no match
])
def test_required_affinity_operators(expr: dict[str, Any], fits: bool) -> None:
    node = make_node(labels={"zone": "a", "cores": "16"})
    pod = make_pod(affinity=_affinity({"matchExpressions": [expr]}))
    assert (nodeaffinity.filter(pod, node) is None) is fits


def test_affinity_terms_are_ored_and_expressions_anded() -> None:
    node = make_node("n7", labels={"zone": "a"})
    both = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                 {"key": "gpu", "operator": "Exists"}]}
    assert nodeaffinity.filter(make_pod(affinity=_affinity(both)), node) == [nodeaffinity.REASON]
    by_name = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}
    assert nodeaffinity.filter(make_pod(affinity=_affinity(both, by_name)), node) is None
    other = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n8"]}]}
    assert nodeaffinity.filter(make_pod(affinity=_affinity(other)), node) == [nodeaffinity.REASON]


def test_empty_term_matches_nothing() -> None:
    assert nodeaffinity.filter(make_pod(affinity=_affinity({})), make_node()) == [nodeaffinity.REASON]


# -- taints ------------------------------------------------------------------------------------

def test_untolerated_noschedule_taint_rejects_with_the_taint_in_the_reason() -> None:
    node = make_node(taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    assert tainttoleration.filter(make_pod(), node) == ["node(s) had untolerated taint {dedicated: db}"]
    equal = [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]
    assert tainttoleration.filter(make_pod(tolerations=equal), node) is None
    wrong_value = [{"key": "dedicated", "value": "web"}]
    assert tainttoleration.filter(make_pod(tolerations=wrong_value), node) is not None
    exists_all = [{"operator": "Exists"}]
    assert tainttoleration.filter(make_pod(tolerations=exists_all), node) is None


def test_noexecute_rejects_and_prefernoschedule_only_scores() -> None:
    node = make_node(taints=[{"key": "k", "effect": "NoExecute"}])
    assert tainttoleration.filter(make_pod(), node) == ["node(s) had untolerated taint {k: }"]
    wrong_effect = [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]
    assert tainttoleration.filter(make_pod(tolerations=wrong_effect), node) is not None
    soft = make_node(taints=[{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}])
    assert tainttoleration.filter(make_pod(), soft) is None
    assert tainttoleration.intolerable_preferences(make_pod(), [soft, node]) == [2, 0]
    assert tainttoleration.intolerable_preferences(make_pod(tolerations=[{"key": "a", "operator": "Exists"}]),
                                                   [soft]) == [1]


def test_unschedulable_node_rejects_unless_tolerated() -> None:
    node = make_node(unschedulable=True)
    assert nodeunschedulable.filter(make_pod(), node) == [nodeunschedulable.REASON]
    tol = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    assert nodeunschedulable.filter(make_pod(tolerations=tol), node) is None
    assert nodeunschedulable.filter(make_pod(), make_node()) is None


# -- host ports --------------------------------------------------------------------------------

def test_host_ports_conflict_per_ip_and_protocol() -> None:
    node = make_node()
    node.add_pod(make_pod("a", ports=[{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]))
    same = make_pod("b", ports=[{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}])
    other_ip = make_pod("c", ports=[{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}])
    any_ip = make_pod("d", ports=[{"containerPort": 80, "hostPort": 8080}])
    udp = make_pod("e", ports=[{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}])
    assert nodeports.filter(same, node) == [nodeports.REASON]
    assert nodeports.filter(other_ip, node) is None
    assert nodeports.filter(any_ip, node) == [nodeports.REASON]
    assert nodeports.filter(udp, node) is None


def test_host_port_is_free_again_after_the_pod_leaves() -> None:
    node = make_node()
    a = make_pod("a", ports=[{"containerPort": 80, "hostPort": 80}])
    node.add_pod(a)
    node.remove_pod(a)
    assert nodeports.filter(make_pod("b", ports=[{"containerPort": 80, "hostPort": 80}]), node) is None


# -- volumes -----------------------------------------------------------------------------------

def test_volume_node_affinity() -> None:
    pod = make_pod()
    pod.volume_node_affinities = [{"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}]
    assert volumebinding.filter(pod, make_node("n1", labels={"kubernetes.io/hostname": "n1"})) is None
    assert volumebinding.filter(pod, make_node("n2", labels={"kubernetes.io/hostname": "n2"})) == \
        [volumebinding.REASON]
    missing = make_pod()
    missing.volume_problem = 'persistentvolumeclaim "data" not found'
    assert volumebinding.filter(missing, make_node()) == ['persistentvolumeclaim "data" not found']


def _claim_pod(*claims: str) -> PodInfo:
    return make_pod(volumes=[{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims])


def test_volume_prefilter_resolves_claims_and_reserve_picks_the_unbound_ones() -> None:
    on_n1 = {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}
    listers = FakeListers(
        {"ns/bound": {"spec": {"volumeName": "pv1"}}, "ns/later": {"spec": {}},
         "ns/gone": {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}},
         "ns/dangling": {"spec": {"volumeName": "nope"}},
         "ns/placed": {"metadata": {"annotations": {volumebinding.SELECTED_NODE_ANNOTATION: "n1"}}, "spec": {}}},
        {"pv1": {"spec": {"nodeAffinity": {"required": on_n1}}}})
    pod = _claim_pod("bound", "later", "placed")
    volumebinding.pre_filter(pod, listers)
    assert (pod.volume_node_affinities, pod.volume_problem) == ([on_n1], None)
    assert volumebinding.relevant(pod)
    volumebinding.reserve(pod, "n1", listers)
    assert pod.claims_to_select == ["later"], "bound claims and claims already placed on n1 need no write"
    volumebinding.reserve(pod, "n2", listers)
    assert pod.claims_to_select == ["later", "placed"]
    volumebinding.unreserve(pod)
    assert pod.claims_to_select == []
    for claim, problem in (("missing", 'persistentvolumeclaim "missing" not found'),
                           ("gone", 'persistentvolumeclaim "gone" is being deleted'),
                           ("dangling", 'persistentvolumeclaim "dangling" bound to non-existent '
                                        'persistentvolume "nope"')):
        p = _claim_pod(claim)
        volumebinding.pre_filter(p, listers)
        assert volumebinding.filter(p, make_node()) == [problem]
    plain = make_pod()
    volumebinding.pre_filter(plain, listers)
    assert not volumebinding.relevant(plain)


def test_volume_prefilter_waits_for_the_binder_of_an_immediate_claim() -> None:
    """An unbound claim whose class binds at once (Immediate, or no class) may get a volume with a node affinity:
    the pod waits for the binder (Kubernetes: "pod has unbound immediate PersistentVolumeClaims"); a
    WaitForFirstConsumer claim is provisioned where the pod lands; a missing class is named."""
    classes = {"now": {"provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate"},
               "later": {"provisioner": "pkube.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"},
               "unset": {"provisioner": "kubernetes.io/no-provisioner"}}
    listers = FakeListers(claims={f"ns/{c or 'none'}": {"spec": {"storageClassName": c}}
                                  for c in ("now", "later", "unset", "", "gone")}, storage_classes=classes)
    for claim, problem in (("now", volumebinding.UNBOUND_IMMEDIATE), ("unset", volumebinding.UNBOUND_IMMEDIATE),
                           ("none", volumebinding.UNBOUND_IMMEDIATE),
                           ("gone", 'storageclass.storage.k8s.io "gone" not found'), ("later", None)):
        p = _claim_pod(claim)
        volumebinding.pre_filter(p, listers)
        assert p.volume_problem == problem, claim
        assert volumebinding.filter(p, make_node()) == (None if problem is None else [problem])


def test_volume_filter_finds_a_local_volume_for_a_wait_for_first_consumer_claim() -> None:
    """Kubernetes' local volumes: a class without a provisioner, WaitForFirstConsumer; the pod goes where one of
    the volumes its claim could bind is reachable (the binder then binds that one for the selected node)."""
    def local(name: str, node: str, size: str = "1Gi", **spec: object) -> dict:
        return {"metadata": {"name": name}, "spec": {
            "storageClassName": "local", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": size},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}, **spec}}
    classes = {"local": {"provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"},
               "later": {"provisioner": "pkube.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}}
    claim = {"metadata": {"name": "data", "namespace": "ns", "uid": "c1"},
             "spec": {"storageClassName": "local", "accessModes": ["ReadWriteOnce"],
                      "resources": {"requests": {"storage": "1Gi"}}}}
    volumes = {"small": local("small", "n1", "100Mi"), "taken": local("taken", "n2", claimRef={
        "namespace": "ns", "name": "other", "uid": "c2"}), "fits": local("fits", "n3")}
    listers = FakeListers(claims={"ns/data": claim, "ns/auto": {"spec": {"storageClassName": "later"}}},
                          volumes=volumes, storage_classes=classes)
    pod = _claim_pod("data")
    volumebinding.pre_filter(pod, listers)
    assert volumebinding.relevant(pod) and [[v["metadata"]["name"] for v in c] for c in pod.static_volume_choices] \
        == [["fits"]]
    nodes = {n: make_node(n, labels={"kubernetes.io/hostname": n}) for n in ("n1", "n2", "n3")}
    assert {n: volumebinding.filter(pod, node) for n, node in nodes.items()} == \
        {"n1": [volumebinding.NO_VOLUME], "n2": [volumebinding.NO_VOLUME], "n3": None}
    provisioned = _claim_pod("auto")  # a provisioner makes the volume wherever the pod lands
    volumebinding.pre_filter(provisioned, listers)
    assert not volumebinding.relevant(provisioned)




# -- spreading ---------------------------------------------------------------------------------

def test_default_spreading_counts_only_pods_of_the_same_workload() -> None:
    # Owner spread became PodTopologySpread's system defaults: the pods a ReplicaSet's selector matches count.
    node = make_node("n1", labels={"kubernetes.io/hostname": "n1"})
    node.add_pod(make_pod("a", owner="rs1", labels={"app": "one"}))
    node.add_pod(make_pod("b", owner="rs1", labels={"app": "one"}))
    node.add_pod(make_pod("c", owner="rs2", labels={"app": "two"}))
    empty = make_node("n2", labels={"kubernetes.io/hostname": "n2"})
    listers = FakeListers(nodes=[node, empty], selectors=[{"matchLabels": {"app": "one"}},
                                                          {"matchLabels": {"app": "two"}}])
    x = make_pod("x", owner="rs1", labels={"app": "one"})
    podtopologyspread.pre_filter(x, listers)
    assert podtopologyspread.score_relevant(x) and not podtopologyspread.relevant(x)
    scores = podtopologyspread.score(x, [node, empty])
    assert scores[1] == 100 and scores[0] < scores[1]
    for lonely in (make_pod("y", owner="rs3", labels={"app": "three"}), make_pod("z")):
        podtopologyspread.pre_filter(lonely, listers)
        assert lonely.spread is None and not podtopologyspread.score_relevant(lonely)
