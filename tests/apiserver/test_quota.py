"""LimitRange and ResourceQuota admission against the real apiserver: defaults applied to pods, min/max/ratio
refusals worded as Kubernetes words them, quota refusals (403 exceeded quota / must specify), the charge to
status.used, and concurrent creates that cannot overshoot a quota."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.controlplane import ApiServer, Etcd, _stop, etcd_prefix, start_apiserver

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import CONFIGMAPS, LIMITRANGES, PODS, PVCS, RESOURCEQUOTAS
from tests.support.samples import sample


def pod(name: str, **resources: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "busybox:1.36"}
    if resources:
        container["resources"] = resources
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [container]}}


def limit_range(name: str, *limits: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name}, "spec": {"limits": list(limits)}}


def quota(name: str, **hard: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
            "spec": {"hard": {k.replace("_", "."): v for k, v in hard.items()}}}


async def refused(coro: Any) -> ApiError:
    with pytest.raises(ApiError) as e:
        await coro
    return e.value


async def test_limit_range_defaults_and_bounds(client: Client, namespace: str) -> None:
    created = await client.create(LIMITRANGES, limit_range(
        "cpu", {"type": "Container", "max": {"cpu": "800m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"},
                "maxLimitRequestRatio": {"cpu": "10"}},
        {"type": "Pod", "max": {"memory": "300Mi"}}), namespace)
    item = created["spec"]["limits"][0]
    # Kubernetes' defaults: the default limit is the max, the default request the default limit.
    assert item["default"] == {"cpu": "800m", "memory": "256Mi"}
    assert item["defaultRequest"] == {"cpu": "100m", "memory": "256Mi"}

    p = await client.create(PODS, pod("plain"), namespace)
    assert p["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                                       "limits": {"cpu": "800m", "memory": "256Mi"}}
    assert p["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == \
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"

    e = await refused(client.create(PODS, pod("big", limits={"cpu": "1", "memory": "128Mi"}), namespace))
    assert e.code == 403 and e.reason == "Forbidden"
    assert e.message == 'pods "big" is forbidden: maximum cpu usage per Container is 800m, but limit is 1'

    e = await refused(client.create(PODS, pod("bursty", requests={"cpu": "50m"}, limits={"cpu": "800m"}),
                                    namespace))
    assert e.message == ('pods "bursty" is forbidden: cpu max limit to request ratio per Container is 10, but '
                         'provided ratio is 16.000000')

    two = pod("two", limits={"memory": "200Mi"})
    two["spec"]["containers"].append({"name": "side", "image": "busybox:1.36",
                                      "resources": {"limits": {"memory": "200Mi"}}})
    e = await refused(client.create(PODS, two, namespace))
    assert e.message == 'pods "two" is forbidden: maximum memory usage per Pod is 300Mi, but limit is 400Mi'

    # Claims: min/max of their storage request. One created before the range still gets its status written.
    early = sample(PVCS, "early", namespace)
    early["spec"]["resources"]["requests"]["storage"] = "5Gi"
    early = await client.create(PVCS, early, namespace)
    await client.create(LIMITRANGES, limit_range("storage", {"type": "PersistentVolumeClaim",
                                                             "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}}),
                        namespace)
    claim = sample(PVCS, "huge", namespace)
    claim["spec"]["resources"]["requests"]["storage"] = "5Gi"
    e = await refused(client.create(PVCS, claim, namespace))
    assert e.message == ('persistentvolumeclaims "huge" is forbidden: maximum storage usage per '
                         'PersistentVolumeClaim is 2Gi, but request is 5Gi')
    await client.create(PVCS, sample(PVCS, "fits", namespace), namespace)
    early["status"] = {"phase": "Bound"}
    assert (await client.update_status(PVCS, early))["status"]["phase"] == "Bound"


async def test_limit_range_validation(client: Client, namespace: str) -> None:
    e = await refused(client.create(LIMITRANGES, limit_range(
        "bad", {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
        {"type": "Pod", "default": {"cpu": "1"}}, {"type": "Node"}), namespace))
    assert e.code == 422
    causes = {(c["field"], c["message"]) for c in e.causes}
    assert ("spec.limits[0][cpu].min", 'Invalid value: "2": min value 2 is greater than max value 1') in causes
    assert ("spec.limits[1].default", "Forbidden: may not be specified when `type` is 'Pod'") in causes
    assert ("spec.limits[2].type", 'Unsupported value: "Node": supported values: "Pod", "Container", '
                                   '"PersistentVolumeClaim"') in causes


async def test_quota_refuses_and_charges(client: Client, namespace: str) -> None:
    await client.create(RESOURCEQUOTAS, quota("compute", pods="2", requests_cpu="1", limits_memory="1Gi"), namespace)
    await client.create(RESOURCEQUOTAS, quota("objects", configmaps="1", **{"count/secrets": "0"}), namespace)

    e = await refused(client.create(PODS, pod("naked"), namespace))
    assert e.code == 403 and e.message == ('pods "naked" is forbidden: failed quota: compute: must specify '
                                           'limits.memory for: app; requests.cpu for: app')
    sized = {"requests": {"cpu": "600m"}, "limits": {"memory": "256Mi"}}
    await client.create(PODS, pod("first", **sized), namespace)
    used = (await client.get(RESOURCEQUOTAS, "compute", namespace))["status"]
    assert used == {"hard": {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"},
                    "used": {"pods": "1", "requests.cpu": "600m", "limits.memory": "256Mi"}}

    e = await refused(client.create(PODS, pod("second", **sized), namespace))
    assert e.code == 403 and e.reason == "Forbidden"
    assert e.message == ('pods "second" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, '
                         'used: requests.cpu=600m, limited: requests.cpu=1')

    await client.create(CONFIGMAPS, sample(CONFIGMAPS, "one", namespace), namespace)
    e = await refused(client.create(CONFIGMAPS, sample(CONFIGMAPS, "two", namespace), namespace))
    assert e.message == ('configmaps "two" is forbidden: exceeded quota: objects, requested: configmaps=1, '
                         'used: configmaps=1, limited: configmaps=1')
    e = await refused(client.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}))
    assert e.message == ('secrets "s" is forbidden: exceeded quota: objects, requested: count/secrets=1, '
                         'used: count/secrets=0, limited: count/secrets=0')

    # A dry run is checked but not charged.
    await client.request("POST", f"/api/v1/namespaces/{namespace}/pods", params={"dryRun": "All"},
                         body=pod("dry", requests={"cpu": "100m"}, limits={"memory": "1Mi"}))
    assert (await client.get(RESOURCEQUOTAS, "compute", namespace))["status"]["used"]["pods"] == "1"


async def test_quota_status_and_scopes_validated(client: Client, namespace: str) -> None:
    body = quota("bad", pods="-1")
    body["spec"]["scopes"] = ["Sometimes"]
    e = await refused(client.create(RESOURCEQUOTAS, body, namespace))
    assert e.code == 422
    assert {(c["field"], c["message"]) for c in e.causes} == {
        ("spec.hard[pods]", 'Invalid value: "-1": must be greater than or equal to 0'),
        ("spec.scopes[0]", 'Unsupported value: "Sometimes": supported values: "Terminating", "NotTerminating", '
                           '"BestEffort", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity"')}


async def test_concurrent_creates_never_overshoot(client: Client, namespace: str) -> None:
    """Twenty creates at once against a quota of five: exactly five get in, and status.used says five."""
    await client.create(RESOURCEQUOTAS, quota("few", configmaps="5"), namespace)

    async def create(i: int) -> bool:
        try:
            await client.create(CONFIGMAPS, sample(CONFIGMAPS, f"cm-{i}", namespace), namespace)
            return True
        except ApiError as e:
            assert e.code == 403 and "exceeded quota: few" in e.message
            return False

    results = await asyncio.gather(*(create(i) for i in range(20)))
    assert sum(results) == 5
    assert len((await client.list(CONFIGMAPS, namespace))["items"]) == 5
    assert (await client.get(RESOURCEQUOTAS, "few", namespace))["status"]["used"] == {"configmaps": "5"}


async def test_two_api_servers_share_the_quota(client: Client, namespace: str, apiserver: ApiServer,
                                              session_tmp: str, etcd: Etcd) -> None:
    """Creates racing through two API servers of the same etcd: the revision-checked charge still lets in exactly
    what the quota allows."""
    second = start_apiserver(session_tmp, etcd.url, ["--etcd-prefix", etcd_prefix(apiserver)])  # the same data
    try:
        async with Client(second.url, second.token) as other:
            created = await client.create(RESOURCEQUOTAS, quota("shared", configmaps="6"), namespace)
            # A list at the quota's revision returns once the second server's cache holds it.
            await other.list(RESOURCEQUOTAS, namespace, resource_version=created["metadata"]["resourceVersion"])

            async def create(c: Client, i: int) -> bool:
                try:
                    await c.create(CONFIGMAPS, sample(CONFIGMAPS, f"cm-{i}", namespace), namespace)
                    return True
                except ApiError as e:
                    assert e.code == 403, e.message
                    return False

            results = await asyncio.gather(*(create(client if i % 2 else other, i) for i in range(24)))
            assert sum(results) == 6
            assert len((await client.list(CONFIGMAPS, namespace))["items"]) == 6
    finally:
        _stop(second.proc)


async def test_best_effort_scope_counts_only_best_effort_pods(client: Client, namespace: str) -> None:
    body = quota("besteffort", pods="1")
    body["spec"]["scopes"] = ["BestEffort"]
    await client.create(RESOURCEQUOTAS, body, namespace)
    await client.create(PODS, pod("be-1"), namespace)
    e = await refused(client.create(PODS, pod("be-2"), namespace))
    assert "exceeded quota: besteffort, requested: pods=1, used: pods=1, limited: pods=1" in e.message
    await client.create(PODS, pod("burstable", requests={"cpu": "10m"}), namespace)  # not in the scope


async def test_update_charged_what_it_adds(client: Client, namespace: str) -> None:
    """A claim asking for more storage is charged the difference; past the quota the update is refused."""
    await client.create(RESOURCEQUOTAS, quota("storage", requests_storage="3Gi"), namespace)
    claim = await client.create(PVCS, sample(PVCS, "data", namespace), namespace)
    claim["spec"]["resources"]["requests"]["storage"] = "2Gi"
    await client.update(PVCS, claim)
    assert (await client.get(RESOURCEQUOTAS, "storage", namespace))["status"]["used"] == {"requests.storage": "2Gi"}
    e = await refused(client.patch(PVCS, "data", {"spec": {"resources": {"requests": {"storage": "4Gi"}}}},
                                   namespace))
    assert e.message == ('persistentvolumeclaims "data" is forbidden: exceeded quota: storage, requested: '
                         'requests.storage=2Gi, used: requests.storage=2Gi, limited: requests.storage=3Gi')
