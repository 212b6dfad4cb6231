"""The official Python client (PyPI `kubernetes`) with CRDs: the typed ApiextensionsV1Api reads pkube's CRDs into
its models (required fields present), and CustomObjectsApi drives custom resources."""
from __future__ import annotations

import time
from typing import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes import config
from kubernetes.client.rest import ApiException

from tests.support.controlplane import ApiServer
from tests.support.crds import widget_crd
from tests.util import unique


@pytest.fixture(scope="module")
def api(tls_apiserver: ApiServer) -> Iterator[k8s.ApiClient]:
    c = config.new_client_from_config(config_file=tls_apiserver.kubeconfig)
    yield c
    c.close()


def test_typed_crd_and_custom_objects(api: k8s.ApiClient) -> None:
    ext = k8s.ApiextensionsV1Api(api)
    crd = widget_crd()
    group, name = crd["spec"]["group"], crd["metadata"]["name"]
    created = ext.create_custom_resource_definition(crd)
    assert isinstance(created, k8s.V1CustomResourceDefinition) and created.spec.names.list_kind == "WidgetList"
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            got = ext.read_custom_resource_definition(name)
            if any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []):
                break
            time.sleep(0.05)
        assert got.status.accepted_names.plural == "widgets" and got.status.stored_versions == ["v1"]
        assert name in [c.metadata.name for c in ext.list_custom_resource_definition().items]

        objects = k8s.CustomObjectsApi(api)
        ns = unique("py")
        k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
        body = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": "small"}}
        made = objects.create_namespaced_custom_object(group, "v1", ns, "widgets", body)
        assert made["spec"]["replicas"] == 1
        patched = objects.patch_namespaced_custom_object(group, "v1", ns, "widgets", "w", {"spec": {"replicas": 4}})
        assert patched["spec"]["replicas"] == 4
        status = objects.patch_namespaced_custom_object_status(group, "v1", ns, "widgets", "w",
                                                               {"status": {"phase": "Ready"}})
        assert status["status"]["phase"] == "Ready"
        scale = objects.get_namespaced_custom_object_scale(group, "v1", ns, "widgets", "w")
        assert scale["spec"]["replicas"] == 4
        listed = objects.list_namespaced_custom_object(group, "v1", ns, "widgets", label_selector="")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["w"]
        with pytest.raises(ApiException) as e:
            objects.create_namespaced_custom_object(group, "v1", ns, "widgets",
                                                    dict(body, metadata={"name": "bad"}, spec={"size": "huge"}))
        assert e.value.status == 422
        objects.delete_namespaced_custom_object(group, "v1", ns, "widgets", "w")
        assert objects.list_namespaced_custom_object(group, "v1", ns, "widgets")["items"] == []
    finally:
        ext.delete_custom_resource_definition(name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # gone (objects deleted) before the next test
            try:
                ext.read_custom_resource_definition(name)
            except ApiException as gone:
                if gone.status == 404:
                    break
                raise
            time.sleep(0.05)
