"""Cascading deletion in the three propagation modes, and namespace deletion, against the real apiserver."""
from __future__ import annotations

from typing import Any

from pklib.resources import must_lookup
from pklib.client import Client
from pklib.errors import ApiError
from tests.controllers.helpers import list_pods
from tests.support.crds import create_crd, delete_crd, row as crd_row, widget, widget_crd
from tests.support.workloads import deploy_body
from tests.util import unique, wait_for

DEPLOY = must_lookup("deployments")
RS = must_lookup("replicasets")
PODS = must_lookup("pods")
CM = must_lookup("configmaps")
NS = must_lookup("namespaces")


async def _exists(client: Client, res: Any, name: str, ns: str | None) -> bool:
    try:
        await client.get(res, name, ns)
        return True
    except ApiError as e:
        if e.code == 404:
            return False
        raise


async def _deploy_with_pods(client: Client, ns: str, name: str) -> dict[str, Any]:
    d = await client.create(DEPLOY, deploy_body(name, 2), ns)

    async def up() -> Any:
        return len(await list_pods(client, ns)) == 2 and len((await client.list(RS, ns))["items"]) == 1
    await wait_for(up, message="deployment with 2 pods")
    return d


async def test_background_deletion_removes_the_whole_tree(client: Client, namespace: str,
                                                           start_manager: Any) -> None:
    await start_manager("replicaset,deployment,garbagecollector")
    await _deploy_with_pods(client, namespace, "bg")
    await client.delete(DEPLOY, "bg", namespace, propagation_policy="Background")

    async def gone() -> Any:
        return not (await client.list(RS, namespace))["items"] and not await list_pods(client, namespace)
    await wait_for(gone, message="ReplicaSet and pods collected")


async def test_foreground_owner_waits_for_dependents(client: Client, namespace: str, start_manager: Any) -> None:
    # Only the collector runs: nothing recreates what it deletes.
    await start_manager("replicaset,deployment,garbagecollector")
    await _deploy_with_pods(client, namespace, "fg")
    # A dependent with a finalizer of its own holds the owner in foreground deletion.
    owner = await client.get(DEPLOY, "fg", namespace)
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "held", "finalizers": ["example.com/hold"],
                       "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "fg",
                                            "uid": owner["metadata"]["uid"], "blockOwnerDeletion": True}]}}
    await client.create(CM, cm, namespace)
    await client.delete(DEPLOY, "fg", namespace, propagation_policy="Foreground")

    async def rest_gone() -> Any:
        return not (await client.list(RS, namespace))["items"] and not await list_pods(client, namespace)
    await wait_for(rest_gone, message="ReplicaSets and pods deleted first")
    d = await client.get(DEPLOY, "fg", namespace)
    assert d["metadata"].get("deletionTimestamp") and "foregroundDeletion" in d["metadata"]["finalizers"], \
        "the owner must wait while a blocking dependent exists"

    held = await client.get(CM, "held", namespace)
    held["metadata"]["finalizers"] = []
    await client.update(CM, held)
    await wait_for(lambda: _not(_exists(client, DEPLOY, "fg", namespace)), message="owner removed last")


async def test_orphan_keeps_dependents_without_owner(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("replicaset,deployment,garbagecollector")
    await _deploy_with_pods(client, namespace, "orph")
    await client.delete(DEPLOY, "orph", namespace, propagation_policy="Orphan")
    await wait_for(lambda: _not(_exists(client, DEPLOY, "orph", namespace)), message="owner deleted")
    rss = (await client.list(RS, namespace))["items"]
    assert len(rss) == 1 and not rss[0]["metadata"].get("ownerReferences"), "the ReplicaSet was orphaned"
    pods = await list_pods(client, namespace)
    assert len(pods) == 2, "the pods stay, still owned by the ReplicaSet"
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == rss[0]["metadata"]["uid"] for p in pods)


async def test_dependent_of_missing_owner_is_collected(client: Client, namespace: str, start_manager: Any) -> None:
    await start_manager("garbagecollector")
    alive = await client.create(CM, {"metadata": {"name": "owner"}}, namespace)
    refs = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "00000000-dead-beef-0000-000000000000"}]
    await client.create(CM, {"metadata": {"name": "lonely", "ownerReferences": refs}}, namespace)
    both = refs + [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": alive["metadata"]["uid"]}]
    await client.create(CM, {"metadata": {"name": "shared", "ownerReferences": both}}, namespace)
    await wait_for(lambda: _not(_exists(client, CM, "lonely", namespace)), message="orphan of a ghost collected")

    async def pruned() -> Any:
        shared = await client.get(CM, "shared", namespace)
        return [r["name"] for r in shared["metadata"]["ownerReferences"]] == ["owner"]
    await wait_for(pruned, message="the missing owner dropped, the live one kept")


async def test_namespace_deletion_empties_it(client: Client, start_manager: Any) -> None:
    await start_manager("replicaset,deployment,garbagecollector,namespace")
    ns = unique("nsdel")
    await client.create(NS, {"metadata": {"name": ns}})
    await _deploy_with_pods(client, ns, "web")
    await client.create(CM, {"metadata": {"name": "conf"}}, ns)
    await client.delete(NS, ns)
    await wait_for(lambda: _not(_exists(client, NS, ns, None)), timeout=20, message="namespace removed")
    for res in (DEPLOY, RS, PODS, CM):
        assert (await client.list(res, ns))["items"] == [], f"{res.plural} left in the deleted namespace"


async def _not(coro: Any) -> bool:
    return not await coro


async def test_namespace_waits_for_finalizers_and_says_why(client: Client, start_manager: Any) -> None:
    await start_manager("namespace")
    ns = unique("nsfin")
    await client.create(NS, {"metadata": {"name": ns}})
    await client.create(CM, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}, ns)
    await client.delete(NS, ns)

    async def remaining() -> Any:
        status = (await client.get(NS, ns)).get("status") or {}
        conds = [c for c in status.get("conditions") or [] if c["type"] == "NamespaceContentRemaining"]
        return conds[0] if conds else None
    cond = await wait_for(remaining, message="NamespaceContentRemaining condition")
    assert cond["status"] == "True" and "configmaps has 1 resource instances" in cond["message"]
    assert (await client.get(NS, ns))["status"]["phase"] == "Terminating"

    held = await client.get(CM, "held", ns)
    held["metadata"]["finalizers"] = []
    await client.update(CM, held)
    await wait_for(lambda: _not(_exists(client, NS, ns, None)), timeout=20, message="namespace removed")


async def test_namespace_deletion_empties_custom_kinds(client: Client, start_manager: Any) -> None:
    await start_manager("namespace")
    crd = await create_crd(client, widget_crd())
    try:
        res = crd_row(crd)
        ns = unique("nscr")
        await client.create(NS, {"metadata": {"name": ns}})
        await client.create(res, widget("w", ns, res.api_version))
        await client.delete(NS, ns)
        await wait_for(lambda: _not(_exists(client, NS, ns, None)), timeout=20, message="namespace removed")
        assert (await client.list(res, ns))["items"] == []
    finally:
        await delete_crd(client, crd["metadata"]["name"])


async def test_objects_owned_by_a_custom_resource_are_collected(client: Client, namespace: str,
                                                                start_manager: Any) -> None:
    crd = await create_crd(client, widget_crd())
    try:
        await start_manager("garbagecollector")
        res = crd_row(crd)
        owner = await client.create(res, widget("owner", namespace, res.api_version))
        ref = {"apiVersion": res.api_version, "kind": "Widget", "name": "owner", "uid": owner["metadata"]["uid"]}
        await client.create(CM, {"metadata": {"name": "child", "ownerReferences": [ref]}}, namespace)
        await client.create(CM, {"metadata": {"name": "orphan", "ownerReferences": [
            dict(ref, name="never", uid="00000000-0000-0000-0000-000000000000")]}}, namespace)
        await wait_for(lambda: _not(_exists(client, CM, "orphan", namespace)), timeout=20,
                       message="dependent of a missing custom owner collected")
        assert await _exists(client, CM, "child", namespace)  # its owner exists: kept
        await client.delete(res, "owner", namespace)
        await wait_for(lambda: _not(_exists(client, CM, "child", namespace)), timeout=20,
                       message="dependent of a deleted custom owner collected")
    finally:
        await delete_crd(client, crd["metadata"]["name"])
