"""Create / get / list / update / patch / delete for every kind, and optimistic concurrency."""
from __future__ import annotations

import asyncio
import copy

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import APISERVICES, CRDS, RESOURCES, VIRTUAL, Resource, lookup
from tests.support.samples import apiservice, sample
from tests.util import unique


# Access reviews are answered, not stored: they have no round trip (tests/apiserver/test_rbac.py). A CRD's name
# is its plural.group and its deletion waits for its objects: tests/apiserver/test_crds.py has its round trip.
@pytest.mark.parametrize("res", [r for r in RESOURCES if r not in VIRTUAL and r is not CRDS], ids=lambda r: r.kind)
async def test_crud_round_trip(client: Client, namespace: str, res: Resource) -> None:
    ns = namespace if res.namespaced else None
    name = unique(res.singular[:10])
    body = sample(res, name, ns) if res is not APISERVICES else apiservice(name)  # named version.group
    name = body["metadata"]["name"]
    created = await client.create(res, body, namespace=ns)
    meta = created["metadata"]
    assert meta["name"] == name and meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    assert created["kind"] == res.kind and created["apiVersion"] == res.api_version

    got = await client.get(res, name, ns)
    assert got["metadata"]["uid"] == meta["uid"] and got["metadata"]["resourceVersion"] == meta["resourceVersion"]

    listed = await client.list(res, ns)
    assert listed["kind"] == res.list_kind
    assert name in [i["metadata"]["name"] for i in listed["items"]]

    edited = copy.deepcopy(got)
    edited["metadata"]["labels"] = {"edited": "yes"}
    updated = await client.update(res, edited)
    assert updated["metadata"]["labels"] == {"edited": "yes"}
    assert int(updated["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    patched = await client.patch(res, name, {"metadata": {"annotations": {"note": "hi"}}}, ns)
    assert patched["metadata"]["annotations"] == {"note": "hi"} and patched["metadata"]["labels"] == {"edited": "yes"}

    deleted = await client.delete(res, name, ns)
    assert deleted["metadata"]["name"] == name
    if res.kind == "Namespace":
        # A namespace is only marked: the namespace controller empties and finalizes it.
        assert (await client.get(res, name))["status"]["phase"] == "Terminating"
    else:
        with pytest.raises(ApiError) as e:
            await client.get(res, name, ns)
        assert e.value.code == 404 and e.value.reason == "NotFound"


async def test_create_existing_name_is_409_already_exists(client: Client, namespace: str) -> None:
    cm = lookup("configmaps")
    await client.create(cm, sample(cm, "dup", namespace))
    with pytest.raises(ApiError) as e:
        await client.create(cm, sample(cm, "dup", namespace))
    assert e.value.code == 409 and e.value.reason == "AlreadyExists"
    assert e.value.message == 'configmaps "dup" already exists'


async def test_generate_name(client: Client, namespace: str) -> None:
    cm = lookup("configmaps")
    body = sample(cm, "", namespace)
    body["metadata"] = {"generateName": "web-", "namespace": namespace}
    a = await client.create(cm, body)
    b = await client.create(cm, body)
    assert a["metadata"]["name"].startswith("web-") and len(a["metadata"]["name"]) == len("web-") + 5
    assert a["metadata"]["name"] != b["metadata"]["name"]
    del body["metadata"]["generateName"]
    with pytest.raises(ApiError) as e:
        await client.create(cm, body)
    assert e.value.code == 422 and e.value.causes[0]["field"] == "metadata.name"


async def test_stale_resource_version_is_409_conflict(client: Client, namespace: str) -> None:
    cm = lookup("configmaps")
    first = await client.create(cm, sample(cm, "cfg", namespace))
    newer = copy.deepcopy(first)
    newer["data"] = {"key": "v2"}
    await client.update(cm, newer)
    stale = copy.deepcopy(first)
    stale["data"] = {"key": "stale"}
    with pytest.raises(ApiError) as e:
        await client.update(cm, stale)
    assert e.value.code == 409 and e.value.reason == "Conflict"
    assert e.value.message == ('Operation cannot be fulfilled on configmaps "cfg": the object has been modified; '
                               'please apply your changes to the latest version and try again')
    assert (await client.get(cm, "cfg", namespace))["data"] == {"key": "v2"}
    # An update without resourceVersion is unconditional.
    del stale["metadata"]["resourceVersion"]
    assert (await client.update(cm, stale))["data"] == {"key": "stale"}


async def test_racing_updates_exactly_one_wins(client: Client, namespace: str) -> None:
    cm = lookup("configmaps")
    base = await client.create(cm, sample(cm, "race", namespace))

    async def write(i: int) -> dict | ApiError:
        body = copy.deepcopy(base)
        body["data"] = {"writer": str(i)}
        try:
            return await client.update(cm, body)
        except ApiError as e:
            return e

    results = await asyncio.gather(*(write(i) for i in range(8)))
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, ApiError)]
    assert len(wins) == 1 and all(e.code == 409 for e in losses)
    assert (await client.get(cm, "race", namespace))["data"] == wins[0]["data"]


async def test_generation_bumps_only_on_spec_change(client: Client, namespace: str) -> None:
    deploy = lookup("deployments")
    d = await client.create(deploy, sample(deploy, "gen", namespace))
    assert d["metadata"]["generation"] == 1
    d = await client.patch(deploy, "gen", {"metadata": {"labels": {"x": "y"}}}, namespace)
    assert d["metadata"]["generation"] == 1
    d = await client.patch(deploy, "gen", {"spec": {"replicas": 5}}, namespace)
    assert d["metadata"]["generation"] == 2


async def test_server_owned_metadata_is_kept_on_update(client: Client, namespace: str) -> None:
    cm = lookup("configmaps")
    created = await client.create(cm, sample(cm, "meta", namespace))
    body = copy.deepcopy(created)
    body["metadata"]["uid"] = "forged"
    body["metadata"]["creationTimestamp"] = "2000-01-01T00:00:00Z"
    updated = await client.update(cm, body)
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]


async def test_strategic_merge_patch_merges_containers_and_env(client: Client, namespace: str) -> None:
    deploy = lookup("deployments")
    body = sample(deploy, "smp", namespace)
    body["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox:1.36",
                                                           "env": [{"name": "A", "value": "1"}]})
    await client.create(deploy, body)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "side", "env": [{"name": "B", "value": "2"}]}]}}}}
    patched = await client.patch(deploy, "smp", patch, namespace, patch_type="strategic")
    containers = {c["name"]: c for c in patched["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"app", "side"}
    assert {e["name"]: e["value"] for e in containers["side"]["env"]} == {"A": "1", "B": "2"}
    assert patched["metadata"]["generation"] == 2


async def test_json_patch_and_patch_precondition(client: Client, namespace: str) -> None:
    cm = lookup("configmaps")
    created = await client.create(cm, sample(cm, "jp", namespace))
    patched = await client.patch(cm, "jp", [{"op": "add", "path": "/data/extra", "value": "x"}], namespace,
                                 patch_type="json")
    assert patched["data"] == {"key": "value", "extra": "x"}
    with pytest.raises(ApiError) as e:
        await client.patch(cm, "jp", {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
                                      "data": {"key": "late"}}, namespace)
    assert e.value.code == 409
    with pytest.raises(ApiError) as e:
        await client.patch(cm, "jp", [{"op": "test", "path": "/data/key", "value": "nope"}], namespace,
                           patch_type="json")
    assert e.value.code == 422
    assert (await client.get(cm, "jp", namespace))["data"] == {"key": "value", "extra": "x"}


async def test_yaml_body(client: Client, namespace: str) -> None:
    cm = lookup("configmaps")
    text = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n"
    created = await client.request("POST", cm.path(namespace), body=text, content_type="application/yaml")
    assert created["metadata"]["namespace"] == namespace and created["data"] == {"a": "b"}


async def test_put_creates_a_missing_lease_but_not_a_missing_configmap(client: Client, namespace: str) -> None:
    lease = lookup("leases")
    created = await client.update(lease, sample(lease, "leader", namespace))
    assert created["metadata"]["uid"] and created["spec"]["holderIdentity"] == "me"
    with pytest.raises(ApiError) as e:
        await client.update(lookup("configmaps"), sample(lookup("configmaps"), "nope", namespace))
    assert e.value.code == 404


async def test_failed_create_gives_back_what_it_allocated(client: Client, namespace: str) -> None:
    svc = lookup("services")

    def node_port_service(name: str, port: int) -> dict:
        body = sample(svc, name, namespace)
        body["spec"]["type"] = "NodePort"
        body["spec"]["ports"][0]["nodePort"] = port
        return body

    # two ports no Service of the shared apiserver holds (other tests' NodePorts are allocated at random)
    taken = {p.get("nodePort") for s in (await client.list(svc))["items"] for p in s["spec"].get("ports") or []}
    start = int(namespace[-4:], 16)
    port_a = next(p for i in range(2000) if (p := 30000 + (start + i) % 2000) not in taken)
    port_b = next(p for i in range(600) if (p := 32100 + (start + i) % 600) not in taken)
    await client.create(svc, node_port_service("a", port_a))
    with pytest.raises(ApiError) as e:  # the name is taken: port_b was reserved, then must be released
        await client.create(svc, node_port_service("a", port_b))
    assert e.value.reason == "AlreadyExists"
    other = await client.create(svc, node_port_service("b", port_b))
    assert other["spec"]["ports"][0]["nodePort"] == port_b
    for name in ("a", "b"):
        await client.delete(svc, name, namespace)


async def test_dry_run_checks_everything_and_stores_nothing(client: Client, namespace: str) -> None:
    cm = lookup("configmaps")
    dry = {"dryRun": "All"}
    created = await client.request("POST", cm.path(namespace), body=sample(cm, "dry", namespace), params=dry)
    assert created["metadata"]["name"] == "dry" and "resourceVersion" not in created["metadata"]
    with pytest.raises(ApiError) as e:
        await client.get(cm, "dry", namespace)
    assert e.value.code == 404
    real = await client.create(cm, sample(cm, "dry", namespace))
    with pytest.raises(ApiError) as e:  # a dry run still finds the conflict
        await client.request("POST", cm.path(namespace), body=sample(cm, "dry", namespace), params=dry)
    assert e.value.code == 409
    patched = await client.patch(cm, "dry", {"data": {"key": "new"}}, namespace, params=dry)
    assert patched["data"] == {"key": "new"}
    await client.request("DELETE", cm.path(namespace, "dry"), body={"kind": "DeleteOptions", "dryRun": ["All"]})
    after = await client.get(cm, "dry", namespace)
    assert after["data"] == {"key": "value"}
    assert after["metadata"]["resourceVersion"] == real["metadata"]["resourceVersion"]
