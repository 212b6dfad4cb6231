"""Errors are Kubernetes Status objects with the right code; nothing is written when a request fails.
Also authentication, health endpoints and metrics."""
from __future__ import annotations

import aiohttp
import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.samples import sample
from tests.util import wait_for

CM = lookup("configmaps")


async def raw(apiserver, method: str, path: str, *, token: str | None = "default", data: bytes | None = None,
              content_type: str | None = None) -> tuple[int, dict | str]:
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {apiserver.token if token == 'default' else token}"
    if content_type:
        headers["Content-Type"] = content_type
    async with aiohttp.ClientSession() as s:
        async with s.request(method, apiserver.url + path, data=data, headers=headers) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body


async def _count(client: Client, namespace: str) -> int:
    return len((await client.list(CM, namespace))["items"])


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_requests_without_a_valid_token_are_401(apiserver, token: str | None) -> None:
    code, body = await raw(apiserver, "GET", "/api/v1/namespaces", token=token)
    assert code == 401 and body["kind"] == "Status" and body["reason"] == "Unauthorized"


async def test_health_endpoints_need_no_token(apiserver) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        code, body = await raw(apiserver, "GET", path, token=None)
        assert (code, body) == (200, "ok"), path


async def test_malformed_bodies_are_400_and_write_nothing(apiserver, client: Client, namespace: str) -> None:
    path = CM.path(namespace)
    for data, ctype in [(b'{"apiVersion": "v1", "kind": ', "application/json"),
                        (b"kind: [unclosed", "application/yaml"), (b"[1, 2]", "application/json"),
                        (b"", "application/json")]:
        code, body = await raw(apiserver, "POST", path, data=data, content_type=ctype)
        assert code == 400 and body["reason"] == "BadRequest", data
    assert await _count(client, namespace) == 0


async def test_unknown_content_type_is_415(apiserver, namespace: str) -> None:
    code, body = await raw(apiserver, "POST", CM.path(namespace), data=b"<xml/>", content_type="application/xml")
    assert code == 415 and body["reason"] == "UnsupportedMediaType"
    code, body = await raw(apiserver, "PATCH", CM.path(namespace, "x"), data=b"{}", content_type="application/json")
    assert code == 415


async def test_body_over_3mib_is_413(apiserver, client: Client, namespace: str) -> None:
    big = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"k":"' + b"x" * (3 * 1024 * 1024) + b'"}}'
    code, body = await raw(apiserver, "POST", CM.path(namespace), data=big, content_type="application/json")
    assert code == 413 and body["kind"] == "Status"
    assert await _count(client, namespace) == 0


async def test_kind_and_namespace_mismatches_are_400(client: Client, namespace: str) -> None:
    wrong_kind = sample(lookup("secrets"), "s", namespace)
    with pytest.raises(ApiError) as e:
        await client.request("POST", CM.path(namespace), body=wrong_kind)
    assert e.value.code == 400
    other_ns = sample(CM, "c", "some-other-namespace")
    with pytest.raises(ApiError) as e:
        await client.request("POST", CM.path(namespace), body=other_ns)
    assert e.value.code == 400 and "namespace" in e.value.message
    created = await client.create(CM, sample(CM, "named", namespace))
    created["metadata"]["name"] = "renamed"
    with pytest.raises(ApiError) as e:
        await client.request("PUT", CM.path(namespace, "named"), body=created)
    assert e.value.code == 400
    assert await _count(client, namespace) == 1


async def test_unknown_paths_and_methods(apiserver, namespace: str) -> None:
    for path in ("/api/v1/widgets", "/apis/apps/v2/deployments", "/api/v1/namespaces/x/pods/p/nonsense",
                 "/apis/example.com/v1/things", f"/api/v1/namespaces/{namespace}/configmaps/a/b/c/d"):
        code, body = await raw(apiserver, "GET", path)
        assert code == 404 and body["kind"] == "Status" and body["reason"] == "NotFound", path
    code, body = await raw(apiserver, "POST", CM.path(namespace, "x"), data=b"{}", content_type="application/json")
    assert code == 405 and body["reason"] == "MethodNotAllowed"
    code, body = await raw(apiserver, "GET", CM.path(namespace, "missing"))
    assert code == 404 and body["message"] == 'configmaps "missing" not found'
    assert body["details"] == {"kind": "configmaps", "name": "missing"}


async def test_missing_name_is_422_invalid(client: Client, namespace: str) -> None:
    body = sample(CM, "", namespace)
    body["metadata"] = {}
    with pytest.raises(ApiError) as e:
        await client.create(CM, body, namespace=namespace)
    assert e.value.code == 422 and e.value.reason == "Invalid"
    assert e.value.status["details"]["kind"] == "ConfigMap"
    assert e.value.causes == [{"reason": "FieldValueRequired", "field": "metadata.name",
                               "message": "Required value: name or generateName is required"}]


async def test_metrics(apiserver, client: Client, namespace: str) -> None:
    await client.create(CM, sample(CM, "m", namespace))
    with pytest.raises(ApiError):
        await client.get(CM, "absent", namespace)
    code, text = await raw(apiserver, "GET", "/metrics")
    assert code == 200
    assert 'apiserver_request_total{code="201",resource="configmaps",verb="POST"}' in text
    assert 'apiserver_request_total{code="404",resource="configmaps",verb="GET"}' in text
    assert "apiserver_request_duration_seconds_bucket" in text
    assert "apiserver_registered_watchers" in text


async def test_metrics_show_the_watch_cache_size(apiserver, client: Client, namespace: str) -> None:
    """What the soak bench samples: objects stored per resource, and the events/bytes of the cache's history."""
    async def figures() -> dict[str, float]:
        _, text = await raw(apiserver, "GET", "/metrics")
        out = {}
        for name in ("apiserver_storage_objects", "pkube_watch_cache_events", "pkube_watch_cache_bytes"):
            lines = [x for x in str(text).splitlines() if x.startswith(name + '{resource="configmaps"}')]
            out[name] = float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0
        return out
    before = await figures()
    await client.create(CM, sample(CM, "sized", namespace))
    await client.delete(CM, "sized", namespace)
    await client.create(CM, sample(CM, "kept", namespace))
    after: dict[str, float] = {}

    async def cached() -> bool:
        after.update(await figures())
        return after["pkube_watch_cache_events"] >= before["pkube_watch_cache_events"] + 3
    await wait_for(cached, timeout=10)
    assert after["pkube_watch_cache_bytes"] > before["pkube_watch_cache_bytes"]
    assert after["apiserver_storage_objects"] >= 1


@pytest.mark.parametrize("method,sub,body,content_type,params,code", [
    ("DELETE", "", {"kind": "DeleteOptions", "preconditions": "x"}, "application/json", None, 400),
    ("DELETE", "", {"kind": "DeleteOptions", "gracePeriodSeconds": "soon"}, "application/json", None, 400),
    ("DELETE", "", {"kind": "Pod"}, "application/json", None, 400),
    ("PATCH", "", [1], "application/merge-patch+json", None, 400),
    ("PATCH", "", {"op": "add"}, "application/json-patch+json", None, 400),
    ("PATCH", "", [{"op": "replace", "path": "/metadata/name", "value": "other"}], "application/json-patch+json",
     None, 400),
    ("PATCH", "", {"metadata": "flat"}, "application/merge-patch+json", None, 400),
    ("GET", "", None, None, {"limit": "many"}, 400),
    ("GET", "", None, None, {"watch": "1", "resourceVersion": "latest"}, 400),
    ("GET", "", None, None, {"resourceVersionMatch": "Sometimes", "resourceVersion": "1"}, 400),
])
async def test_bad_requests_are_4xx_and_change_nothing(client: Client, namespace: str, method: str, sub: str,
                                                       body, content_type, params, code: int) -> None:
    created = await client.create(CM, sample(CM, "target", namespace))
    path = CM.path(namespace, "target") if method != "GET" else CM.path(namespace)
    with pytest.raises(ApiError) as e:
        await client.request(method, path, body=body, content_type=content_type or "application/json",
                             params=params)
    assert e.value.code == code and e.value.status["kind"] == "Status"
    after = await client.get(CM, "target", namespace)
    assert after["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_bad_binding_and_scale_bodies(client: Client, namespace: str) -> None:
    pods, deploy = lookup("pods"), lookup("deployments")
    await client.create(pods, sample(pods, "p", namespace))
    await client.create(deploy, sample(deploy, "d", namespace))
    for body in ({"target": "node-1"}, {"kind": "Binding", "target": {}}):
        with pytest.raises(ApiError) as e:
            await client.request("POST", pods.path(namespace, "p", "binding"), body=body)
        assert e.value.code in (400, 422)
    with pytest.raises(ApiError) as e:
        await client.request("PUT", deploy.path(namespace, "d", "scale"), body={"spec": 3})
    assert e.value.code == 400
    assert "nodeName" not in (await client.get(pods, "p", namespace))["spec"]


async def test_object_too_large_for_etcd_is_413(client: Client, namespace: str) -> None:
    lease = lookup("leases")
    body = sample(lease, "huge", namespace)
    # Under the 3 MiB body limit, over etcd's 1.5 MiB value limit (and not a field with a size rule of its own).
    body["spec"]["holderIdentity"] = "x" * (2 * 1024 * 1024)
    with pytest.raises(ApiError) as e:
        await client.create(lease, body)
    assert e.value.code == 413
    assert (await client.list(lease, namespace))["items"] == []
