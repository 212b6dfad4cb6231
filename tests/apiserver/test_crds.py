"""CustomResourceDefinitions: the CRD kind, then its custom resources served like any kind (CRUD, watch,
patch, schema validation, defaulting, pruning, status and scale, several versions, deletion)."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import CRDS, lookup
from tests.support.controlplane import Etcd, _stop, start_apiserver
from tests.support.crds import create_crd, delete_crd, row, widget, widget_crd
from tests.util import unique, wait_for


@pytest.fixture
async def crds(client: Client) -> AsyncIterator[list[str]]:
    """Names of the CRDs a test creates, deleted (with their objects) afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        await delete_crd(client, name)


async def _install(client: Client, crds: list[str], crd: dict[str, Any]) -> dict[str, Any]:
    crds.append(crd["metadata"]["name"])
    return await create_crd(client, crd)


async def test_crd_is_established_with_accepted_names_and_a_finalizer(client: Client, crds: list[str]) -> None:
    crd = await _install(client, crds, widget_crd())
    status = crd["status"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["NamesAccepted"]["status"] == "True" and conds["NamesAccepted"]["reason"] == "NoConflicts"
    assert conds["Established"]["reason"] == "InitialNamesAccepted"
    assert status["acceptedNames"]["plural"] == "widgets" and status["acceptedNames"]["listKind"] == "WidgetList"
    assert status["storedVersions"] == ["v1"]
    assert crd["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]
    assert crd["spec"]["conversion"] == {"strategy": "None"}


async def test_crd_validation_names_the_fields(client: Client) -> None:
    bad = widget_crd()
    bad["metadata"]["name"] = "wrong.example.com"
    bad["spec"]["scope"] = "Galaxy"
    bad["spec"]["versions"][0]["storage"] = False
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["x"] = {}
    bad["spec"]["versions"][0]["selectableFields"] = [{"jsonPath": ".spec.labels"}, {"jsonPath": ".spec.nope"}]
    bad["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {"clientConfig": {}}}
    with pytest.raises(ApiError) as e:
        await client.create(CRDS, bad)
    assert e.value.code == 422
    fields = {c["field"]: c["message"] for c in e.value.causes}
    assert fields["metadata.name"].startswith('Invalid value: "wrong.example.com": must be spec.names.plural')
    assert fields["spec.scope"].startswith('Unsupported value: "Galaxy"')
    assert "must have exactly one version marked as storage version" in fields["spec.versions"]
    assert fields["spec.conversion.webhook.clientConfig"] == "Required value: exactly one of url or service is required"
    assert fields["spec.conversion.webhook.conversionReviewVersions"].startswith("Required value")
    assert fields["spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[x].type"] == \
        "Required value: must not be empty for specified object fields"
    assert [c["message"] for c in e.value.causes if c["field"].startswith("spec.versions[0].selectableFields")] == [
        'Invalid value: ".spec.labels": must point to a field of type string, boolean or integer',
        'Invalid value: ".spec.nope": is an invalid path: does not refer to a valid field']


async def test_name_conflict_in_a_group_is_not_accepted(client: Client, crds: list[str]) -> None:
    first = await _install(client, crds, widget_crd())
    group = first["spec"]["group"]
    clash = widget_crd(group, plural="gadgets", kind="Widget", short_names=("gd",),
                       singular="gadget")
    crds.append(clash["metadata"]["name"])
    await client.create(CRDS, clash)

    async def not_accepted() -> dict[str, Any] | None:
        got = await client.get(CRDS, clash["metadata"]["name"])
        conds = {c["type"]: c for c in (got.get("status") or {}).get("conditions") or []}
        return conds if "NamesAccepted" in conds else None

    conds = await wait_for(not_accepted, 10)
    assert conds["NamesAccepted"]["status"] == "False" and conds["NamesAccepted"]["reason"] == "NameConflict"
    assert conds["NamesAccepted"]["message"] == '"Widget" is already in use'
    assert conds["Established"]["status"] == "False"
    with pytest.raises(ApiError) as e:
        await client.request("GET", f"/apis/{group}/v1/gadgets")
    assert e.value.code == 404


async def test_crud_list_selectors_watch_and_patch(client: Client, namespace: str, crds: list[str]) -> None:
    definition = widget_crd()
    definition["spec"]["versions"][0]["selectableFields"] = [{"jsonPath": ".spec.size"}]
    crd = await _install(client, crds, definition)
    res = row(crd)
    created = await client.create(res, dict(widget("a", namespace, res.api_version), metadata={
        "name": "a", "namespace": namespace, "labels": {"tier": "x"}}))
    assert created["apiVersion"] == res.api_version and created["metadata"]["generation"] == 1
    await client.create(res, widget("b", namespace, res.api_version, size="large"))
    assert [o["metadata"]["name"] for o in (await client.list(res, namespace))["items"]] == ["a", "b"]
    labelled = await client.list(res, namespace, label_selector="tier=x")
    assert [o["metadata"]["name"] for o in labelled["items"]] == ["a"]
    by_name = await client.request("GET", res.path(namespace), params={"fieldSelector": "metadata.name=b"})
    assert [o["metadata"]["name"] for o in by_name["items"]] == ["b"]
    by_size = await client.request("GET", res.path(namespace), params={"fieldSelector": "spec.size=large"})
    assert [o["metadata"]["name"] for o in by_size["items"]] == ["b"]  # a selectableField
    with pytest.raises(ApiError) as e:
        await client.request("GET", res.path(namespace), params={"fieldSelector": "spec.color=blue"})
    assert e.value.code == 400 and "field label not supported: spec.color" in e.value.message

    events: list[tuple[str, str]] = []

    async def watch() -> None:
        async for ev in client.watch(res, namespace, resource_version=created["metadata"]["resourceVersion"]):
            events.append((ev["type"], ev["object"]["metadata"]["name"]))
            if len(events) == 3:
                return

    task = asyncio.create_task(watch())
    merged = await client.patch(res, "a", {"spec": {"color": "red"}}, namespace)
    assert merged["spec"]["color"] == "red" and merged["metadata"]["generation"] == 2
    jsonp = await client.patch(res, "a", [{"op": "replace", "path": "/spec/replicas", "value": 3}], namespace,
                               patch_type="json")
    assert jsonp["spec"]["replicas"] == 3
    with pytest.raises(ApiError) as e:
        await client.patch(res, "a", {"spec": {"color": "green"}}, namespace, patch_type="strategic")
    assert e.value.code == 415 and "application/merge-patch+json" in e.value.message
    await asyncio.wait_for(task, 10)
    assert events == [("ADDED", "b"), ("MODIFIED", "a"), ("MODIFIED", "a")]
    await client.delete(res, "a", namespace)
    with pytest.raises(ApiError) as e:
        await client.get(res, "a", namespace)
    assert e.value.code == 404 and e.value.message == f'widgets.{res.group} "a" not found'


async def test_schema_validation_defaulting_and_pruning(client: Client, namespace: str, crds: list[str]) -> None:
    crd = await _install(client, crds, widget_crd())
    res = row(crd)
    with pytest.raises(ApiError) as e:
        await client.create(res, widget("bad", namespace, res.api_version, size="huge", replicas="three",
                                        color="a-very-long-color"))
    assert e.value.code == 422
    assert e.value.message.startswith(f'Widget.{res.group} "bad" is invalid: [')
    fields = {c["field"]: c["message"] for c in e.value.causes}
    assert fields["spec.size"] == 'Unsupported value: "huge": supported values: "small", "large"'
    assert fields["spec.replicas"] == \
        'Invalid value: "three": spec.replicas in body must be of type integer: "three"'
    assert fields["spec.color"] == "Too long: may not be more than 10 bytes"
    with pytest.raises(ApiError) as e:
        await client.create(res, widget("big", namespace, res.api_version, replicas=11))
    assert [c["message"] for c in e.value.causes] == \
        ["Invalid value: 11: spec.replicas in body should be less than or equal to 10"]
    with pytest.raises(ApiError) as e:
        await client.create(res, {"apiVersion": res.api_version, "kind": "Widget",
                                  "metadata": {"name": "nospec", "namespace": namespace}, "spec": {}})
    assert [(c["field"], c["message"]) for c in e.value.causes] == [("spec.size", "Required value")]

    obj = widget("w", namespace, res.api_version, port="http", unknown=1, extra={"free": {"form": True}},
                 labels={"a": "b"}, items=[{"name": "i", "junk": 2}])
    obj["topLevelJunk"] = True
    created = await client.create(res, obj)
    spec = created["spec"]
    assert spec["replicas"] == 1 and spec["color"] == "blue"  # defaults
    assert "unknown" not in spec and "topLevelJunk" not in created  # pruned
    assert spec["extra"] == {"free": {"form": True}} and spec["items"] == [{"name": "i", "weight": 5}]
    assert spec["port"] == "http"
    with pytest.raises(ApiError) as e:  # what pruning would drop is an error when the client asks for Strict
        await client.request("POST", res.path(namespace), params={"fieldValidation": "Strict"},
                             body=dict(widget("strict", namespace, res.api_version, sizee="x"),
                                       metadata={"name": "strict", "labelz": {}}))
    assert e.value.code == 400
    assert 'unknown field "metadata.labelz"' in e.value.message and 'unknown field "spec.sizee"' in e.value.message
    assert (await client.patch(res, "w", {"spec": {"port": 8080}}, namespace))["spec"]["port"] == 8080
    with pytest.raises(ApiError) as e:
        await client.patch(res, "w", {"spec": {"port": 1.5}}, namespace)
    assert e.value.causes[0]["field"] == "spec.port"


async def test_status_and_scale_subresources(client: Client, namespace: str, crds: list[str]) -> None:
    crd = await _install(client, crds, widget_crd())
    res = row(crd)
    created = await client.create(res, dict(widget("s", namespace, res.api_version, replicas=2),
                                            status={"phase": "ignored"}))
    assert "status" not in created
    status = await client.patch(res, "s", {"status": {"phase": "Ready", "replicas": 2, "selector": "app=s"}},
                                namespace, subresource="status")
    assert status["status"]["phase"] == "Ready" and status["metadata"]["generation"] == 1
    # The main resource ignores status.
    main = await client.patch(res, "s", {"status": {"phase": "Lost"}, "spec": {"color": "red"}}, namespace)
    assert main["status"]["phase"] == "Ready" and main["spec"]["color"] == "red"
    scale = await client.get(res, "s", namespace, subresource="scale")
    assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 2, "selector": "app=s"}
    scaled = await client.patch(res, "s", {"spec": {"replicas": 5}}, namespace, subresource="scale")
    assert scaled["spec"]["replicas"] == 5
    assert (await client.get(res, "s", namespace))["spec"]["replicas"] == 5
    with pytest.raises(ApiError) as e:
        await client.patch(res, "s", {"spec": {"replicas": -1}}, namespace, subresource="scale")
    assert e.value.code == 422


async def test_two_versions_are_served_and_stored_at_the_storage_version(
        client: Client, namespace: str, crds: list[str]) -> None:
    crd = await _install(client, crds, widget_crd(versions=("v1beta1", "v1"), storage="v1"))
    v1, beta = row(crd, "v1"), row(crd, "v1beta1")
    created = await client.create(beta, widget("m", namespace, beta.api_version))
    assert created["apiVersion"] == beta.api_version
    assert (await client.get(v1, "m", namespace))["apiVersion"] == v1.api_version
    assert (await client.get(beta, "m", namespace))["apiVersion"] == beta.api_version
    listed = await client.list(beta, namespace)
    assert [o["apiVersion"] for o in listed["items"]] == [beta.api_version]
    patched = await client.patch(beta, "m", {"spec": {"color": "red"}}, namespace)
    assert patched["apiVersion"] == beta.api_version
    group = await client.request("GET", f"/apis/{v1.group}")
    assert group["preferredVersion"]["version"] == "v1"
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    # served: false → 404
    current = await client.get(CRDS, crd["metadata"]["name"])
    current["spec"]["versions"][0]["served"] = False
    await client.update(CRDS, current)

    async def unserved() -> bool:
        try:
            await client.get(beta, "m", namespace)
        except ApiError as e:
            return e.code == 404
        return False

    await wait_for(unserved, 10)
    assert (await client.get(v1, "m", namespace))["spec"]["color"] == "red"


async def test_deleting_the_crd_deletes_its_objects(client: Client, namespace: str, crds: list[str]) -> None:
    crd = await _install(client, crds, widget_crd())
    res = row(crd)
    for name in ("x", "y"):
        await client.create(res, widget(name, namespace, res.api_version))
    events: list[tuple[str, str]] = []

    async def watch() -> None:
        async for ev in client.watch(res, namespace):
            events.append((ev["type"], ev["object"]["metadata"]["name"]))

    watching = asyncio.create_task(watch())
    await wait_for(lambda: _true(len(events) == 2), 10)
    await client.delete(CRDS, crd["metadata"]["name"])

    async def gone() -> bool:
        try:
            await client.get(CRDS, crd["metadata"]["name"])
        except ApiError as e:
            return e.code == 404
        return False

    await wait_for(gone, 15)
    # The kind's watches end with it, having seen its objects deleted.
    await asyncio.wait_for(watching, 10)
    assert sorted(events) == [("ADDED", "x"), ("ADDED", "y"), ("DELETED", "x"), ("DELETED", "y")]
    with pytest.raises(ApiError) as e:
        await client.list(res, namespace)
    assert e.value.code == 404
    # Re-created, the kind is empty: the objects were deleted, not hidden.
    again = await create_crd(client, widget_crd(res.group))
    assert (await client.list(row(again), namespace))["items"] == []


async def test_discovery_and_openapi_follow_crds(client: Client, crds: list[str]) -> None:
    crd = await _install(client, crds, widget_crd(scope="Cluster"))
    group = crd["spec"]["group"]
    doc = await client.request("GET", f"/apis/{group}/v1")
    widgets = next(r for r in doc["resources"] if r["name"] == "widgets")
    assert widgets["namespaced"] is False and widgets["shortNames"] == ["wd"] and widgets["kind"] == "Widget"
    assert widgets["categories"] == ["pktest"] and widgets["singularName"] == "widget"
    assert {r["name"] for r in doc["resources"]} == {"widgets", "widgets/status", "widgets/scale"}
    groups = await client.request("GET", "/apis")
    assert group in [g["name"] for g in groups["groups"]]
    index = await client.request("GET", "/openapi/v3")
    assert f"apis/{group}/v1" in index["paths"]
    openapi = await client.request("GET", f"/openapi/v3/apis/{group}/v1")
    schema = next(s for s in openapi["components"]["schemas"].values()
                  if s.get("x-kubernetes-group-version-kind") == [{"group": group, "version": "v1", "kind": "Widget"}])
    assert schema["properties"]["spec"]["properties"]["size"]["enum"] == ["small", "large"]
    await client.delete(CRDS, crd["metadata"]["name"])

    async def undiscovered() -> bool:
        groups = await client.request("GET", "/apis")
        return group not in [g["name"] for g in groups["groups"]]

    await wait_for(undiscovered, 15)
    assert f"apis/{group}/v1" not in (await client.request("GET", "/openapi/v3"))["paths"]


async def test_every_apiserver_learns_crds_from_its_watch(session_tmp: str, etcd: Etcd) -> None:
    """Two API servers on one etcd (HA): a CRD created through one is served by the other, and its deletion
    through the other ends the kind on both."""
    prefix = "/" + unique("reg")
    first = start_apiserver(session_tmp, etcd.url, ["--etcd-prefix", prefix])
    second = start_apiserver(session_tmp, etcd.url, ["--etcd-prefix", prefix])
    try:
        async with Client(first.url, first.token) as a, Client(second.url, second.token) as b:
            ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": unique("ha")}}
            await a.create(lookup("namespaces"), ns)
            crd = await create_crd(a, widget_crd())
            res = row(crd)
            # The very next request to the other server: it has caught up with the CRD before answering.
            created = await b.create(res, widget("w", ns["metadata"]["name"], res.api_version, replicas=2))
            assert created["spec"]["color"] == "blue"  # the other server defaults from the CRD's schema too
            with pytest.raises(ApiError) as e:
                await b.create(res, widget("bad", ns["metadata"]["name"], res.api_version, replicas=99))
            assert e.value.code == 422
            discovered = await b.request("GET", f"/apis/{res.group}/v1")
            assert [r["name"] for r in discovered["resources"]][0] == "widgets"
            assert (await a.get(res, "w", ns["metadata"]["name"]))["metadata"]["uid"] == created["metadata"]["uid"]
            await b.delete(CRDS, crd["metadata"]["name"])

            async def unserved() -> bool:
                for c in (a, b):
                    try:
                        await c.request("GET", f"/apis/{res.group}/v1")
                        return False
                    except ApiError as err:
                        if err.code != 404:
                            raise
                return True

            await wait_for(unserved, 15)
    finally:
        _stop(second.proc)
        _stop(first.proc)


async def test_crd_waits_for_objects_with_finalizers_and_refuses_new_ones(
        client: Client, namespace: str, crds: list[str]) -> None:
    crd = await _install(client, crds, widget_crd())
    res = row(crd)
    held = widget("held", namespace, res.api_version)
    held["metadata"]["finalizers"] = ["example.com/hold"]
    await client.create(res, held)
    await client.delete(CRDS, crd["metadata"]["name"])

    async def terminating() -> dict[str, Any] | None:
        got = await client.get(CRDS, crd["metadata"]["name"])
        conds = {c["type"]: c for c in got["status"]["conditions"]}
        return got if "Terminating" in conds else None

    marked = await wait_for(terminating, 10)
    assert marked["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]
    # Its objects are being deleted; new ones are refused while the definition goes.
    await wait_for(lambda: _deleting(client, res, "held", namespace), 10)
    with pytest.raises(ApiError) as e:
        await client.create(res, widget("new", namespace, res.api_version))
    assert e.value.code == 405 and "terminating" in e.value.message
    await client.patch(res, "held", {"metadata": {"finalizers": None}}, namespace)

    async def gone() -> bool:
        try:
            await client.get(CRDS, crd["metadata"]["name"])
        except ApiError as err:
            return err.code == 404
        return False

    await wait_for(gone, 15)


async def _true(value: bool) -> bool:
    return value


async def _deleting(client: Client, res: Any, name: str, namespace: str) -> bool:
    obj = await client.get(res, name, namespace)
    return bool(obj["metadata"].get("deletionTimestamp"))


async def test_cel_validation_rules(client: Client, namespace: str, crds: list[str]) -> None:
    definition = widget_crd()
    spec_schema = definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["x-kubernetes-validations"] = [
        {"rule": "self.size == 'large' || self.replicas <= 5", "message": "small widgets have at most 5 replicas"}]
    spec_schema["properties"]["size"]["x-kubernetes-validations"] = [
        {"rule": "self == oldSelf", "message": "size is immutable"}]
    broken = widget_crd(definition["spec"]["group"], plural="brokens", kind="Broken", short_names=())
    broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] = [{"rule": "self.("}]
    with pytest.raises(ApiError) as e:
        await client.create(CRDS, broken)
    assert e.value.code == 422
    assert e.value.causes[0]["field"] == "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[0].rule"
    assert "compilation failed" in e.value.causes[0]["message"]

    res = row(await _install(client, crds, definition))
    await client.create(res, widget("ok", namespace, res.api_version, replicas=5))
    with pytest.raises(ApiError) as e:
        await client.create(res, widget("many", namespace, res.api_version, replicas=6))
    assert e.value.code == 422 and [(c["field"], c["message"]) for c in e.value.causes] == [
        ("spec", 'Invalid value: "object": small widgets have at most 5 replicas')]
    with pytest.raises(ApiError) as e:
        await client.patch(res, "ok", {"spec": {"size": "large"}}, namespace)
    assert [(c["field"], c["message"]) for c in e.value.causes] == [
        ("spec.size", 'Invalid value: "string": size is immutable')]
    assert (await client.patch(res, "ok", {"spec": {"replicas": 4}}, namespace))["spec"]["replicas"] == 4


async def test_generation_counts_what_the_stored_object_changes(client: Client, namespace: str,
                                                                crds: list[str]) -> None:
    plain = widget_crd()
    del plain["spec"]["versions"][0]["subresources"]  # no status subresource: status is part of the object
    res = row(await _install(client, crds, plain))
    created = await client.create(res, widget("g", namespace, res.api_version))
    assert created["metadata"]["generation"] == 1
    # A field the schema prunes, or a default put back, changes nothing.
    same = await client.patch(res, "g", {"spec": {"unknown": 1, "color": None}}, namespace)
    assert same["metadata"]["generation"] == 1 and same["spec"]["color"] == "blue"
    status = await client.patch(res, "g", {"status": {"phase": "Ready"}}, namespace)
    assert status["status"]["phase"] == "Ready" and status["metadata"]["generation"] == 2


async def test_crd_with_a_conversion_webhook_is_served(client: Client, namespace: str, crds: list[str]) -> None:
    """Charts ship CRDs naming a conversion webhook; pkube serves them (a single version needs no conversion)."""
    definition = widget_crd()
    definition["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
        "clientConfig": {"service": {"name": "webhook", "namespace": "default", "path": "/convert"}},
        "conversionReviewVersions": ["v1"]}}
    res = row(await _install(client, crds, definition))
    assert (await client.create(res, widget("w", namespace, res.api_version)))["spec"]["replicas"] == 1
