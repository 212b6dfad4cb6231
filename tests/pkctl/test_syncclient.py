"""pklib.syncclient.SyncClient, pkctl's blocking client for one-shot requests, against the real apiserver:
the typed verbs give what the async client gives, errors carry the server's Status, TLS verifies the cluster CA."""
from __future__ import annotations

import pytest

from pklib.client import Client
from pklib.errors import ApiError, ConnectionFailed
from pklib.syncclient import SyncClient
from tests.support.controlplane import ApiServer
from tests.support.pkctl import kind

CONFIGMAPS = kind("configmaps")
DEPLOYMENTS = kind("deployments")
NAMESPACES = kind("namespaces")


def configmap(name: str, **labels: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "1"}}


async def test_typed_verbs_answer_as_the_async_client_does(apiserver: ApiServer, client: Client,
                                                           namespace: str) -> None:
    with SyncClient.from_kubeconfig(apiserver.kubeconfig) as api:
        for i in range(5):
            created = api.create(CONFIGMAPS, configmap(f"cm-{i}", app="a" if i % 2 else "b"), namespace)
            assert created["metadata"]["namespace"] == namespace and created["metadata"]["uid"]
        # Pages of two, followed to the end; the same list the async client reads.
        listed = api.list_all(CONFIGMAPS, namespace, page=2)
        assert [o["metadata"]["name"] for o in listed["items"]] == [f"cm-{i}" for i in range(5)]
        theirs = await client.list_all(CONFIGMAPS, namespace)
        assert listed["items"] == theirs["items"]
        # A selector with spaces and parentheses survives the query string.
        picked = api.list_all(CONFIGMAPS, namespace, label_selector="app in (a, c)")
        assert [o["metadata"]["name"] for o in picked["items"]] == ["cm-1", "cm-3"]
        assert api.get(CONFIGMAPS, "cm-0", namespace) == await client.get(CONFIGMAPS, "cm-0", namespace)

        patched = api.patch(CONFIGMAPS, "cm-0", {"data": {"k": "2"}}, namespace)
        assert patched["data"] == {"k": "2"}
        patched["data"]["extra"] = "x"
        assert api.update(CONFIGMAPS, patched)["data"] == {"k": "2", "extra": "x"}

        deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}},
                                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
        api.create(DEPLOYMENTS, deploy, namespace)
        scale = api.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 3}}, namespace, subresource="scale")
        assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 3)
        strategic = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}}
        patched_deploy = api.patch(DEPLOYMENTS, "web", strategic, namespace, patch_type="strategic")
        assert patched_deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2"

        with pytest.raises(ApiError) as conflict:
            api.delete(CONFIGMAPS, "cm-1", namespace, preconditions={"uid": "not-its-uid"})
        assert (conflict.value.code, conflict.value.reason) == (409, "Conflict")
        api.delete(CONFIGMAPS, "cm-1", namespace)
        with pytest.raises(ApiError) as missing:
            api.get(CONFIGMAPS, "cm-1", namespace)
        assert (missing.value.code, missing.value.reason) == (404, "NotFound")
        assert missing.value.status["kind"] == "Status" and 'configmaps "cm-1" not found' in missing.value.message
        with pytest.raises(ApiError) as invalid:
            api.create(CONFIGMAPS, configmap("Not_A_Name"), namespace)
        assert invalid.value.reason == "Invalid" and invalid.value.causes[0]["field"] == "metadata.name"


def test_tls_trusts_the_kubeconfig_ca_only(tls_api: ApiServer) -> None:
    with SyncClient.from_kubeconfig(tls_api.kubeconfig) as api:
        assert any(ns["metadata"]["name"] == "default" for ns in api.list(NAMESPACES)["items"])
    # The test CA is nobody's default trust: without the kubeconfig's CA the server is not believed.
    with SyncClient(tls_api.url, tls_api.token, ssl=None) as untrusting:
        with pytest.raises(ConnectionFailed) as failed:
            untrusting.list(NAMESPACES)
        assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value) and not failed.value.refused
    # insecure-skip-tls-verify (ssl=False) talks to it all the same; a wrong token is the server's 401 Status.
    with SyncClient(tls_api.url, "wrong-token", ssl=False) as insecure:
        with pytest.raises(ApiError) as unauthorized:
            insecure.list(NAMESPACES)
        assert unauthorized.value.code == 401
