"""Environment variable resolution of the kubelet (pure logic, fake ConfigMap/Secret getter)."""
from __future__ import annotations

import pytest

from kubelet.env import ConfigError, build_env, expand, service_env

POD = {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}},
       "spec": {"nodeName": "n1", "containers": [{"name": "c", "resources": {"limits": {"cpu": "250m"}}}]}}
OBJECTS = {("configmaps", "cm"): {"data": {"a": "1", "b": "2"}},
           ("secrets", "s"): {"data": {"pw": "aHVudGVyMg=="}}}


async def get(kind: str, name: str):
    return OBJECTS.get((kind, name))


async def env(container: dict, services: list | None = None) -> dict[str, str]:
    return dict(await build_env(POD, {"name": "c", **container}, get, services or [], "10.0.0.5", "192.0.2.1",
                                {"cpu": "2", "memory": "1Gi"}))


def test_expand_follows_kubernetes_rules() -> None:
    assert expand("$(A)-$(B)-$$(A)-$(", {"A": "x"}) == "x-$(B)-$(A)-$("


async def test_field_resource_config_and_secret_refs() -> None:
    e = await env({"env": [
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
        {"name": "MSG", "value": "$(APP) at $(IP)"}]})
    assert e == {"IP": "10.0.0.5", "APP": "web", "CPU": "250", "MEM": str(1024**3), "A": "1", "PW": "hunter2",
                 "MSG": "web at 10.0.0.5"}


async def test_env_from_with_prefix_and_env_overrides() -> None:
    e = await env({"envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "P_"}],
                   "env": [{"name": "P_a", "value": "override"}]})
    assert e == {"P_a": "override", "P_b": "2"}


async def test_missing_sources() -> None:
    with pytest.raises(ConfigError, match='configmap "nope" not found'):
        await env({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]})
    with pytest.raises(ConfigError, match="couldn't find key zz in ConfigMap shop/cm"):
        await env({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz"}}}]})
    assert await env({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "no", "key": "k",
                                                                             "optional": True}}}]}) == {}


def test_service_variables() -> None:
    svc = {"metadata": {"name": "redis-main"}, "spec": {"clusterIP": "10.96.0.9", "ports": [
        {"name": "tcp", "port": 6379, "protocol": "TCP"}]}}
    headless = {"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}}
    e = service_env([svc, headless])
    assert e["REDIS_MAIN_SERVICE_HOST"] == "10.96.0.9" and e["REDIS_MAIN_SERVICE_PORT"] == "6379"
    assert e["REDIS_MAIN_SERVICE_PORT_TCP"] == "6379"
    assert e["REDIS_MAIN_PORT"] == "tcp://10.96.0.9:6379"
    assert e["REDIS_MAIN_PORT_6379_TCP_ADDR"] == "10.96.0.9"
    assert not any(k.startswith("H_") for k in e)


async def test_service_env_sources_the_namespace_and_the_master_service(tmp_path) -> None:
    from kubelet.containerconfig import ContainerConfigBuilder, PodConfigOptions
    from kubelet.volumes import VolumeManager

    def svc(name: str, ns: str) -> dict:
        return {"metadata": {"name": name, "namespace": ns}}
    listed: list[str] = []
    by_ns = {"shop": [svc("db", "shop")], "default": [svc("kubernetes", "default"), svc("other", "default")],
             "own": [svc("kubernetes", "own")]}

    async def services(ns: str) -> list[dict]:
        listed.append(ns)
        return by_ns.get(ns, [])

    async def nothing(ns: str, plural: str, name: str) -> None:
        return None
    builder = ContainerConfigBuilder(PodConfigOptions(), VolumeManager(tmp_path), lambda: "192.0.2.1", nothing,
                                     services)

    async def sources(ns: str, links: bool = True) -> list[tuple[str, str]]:
        listed.clear()
        pod = {"metadata": {"name": "p", "namespace": ns}, "spec": {"enableServiceLinks": links, "containers": []}}
        return [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in await builder.service_env_sources(pod)]
    assert await sources("shop") == [("shop", "db"), ("default", "kubernetes")]
    assert sorted(listed) == ["default", "shop"]
    assert await sources("shop", links=False) == [("default", "kubernetes")] and listed == ["default"]
    assert await sources("default") == [("default", "kubernetes"), ("default", "other")] and listed == ["default"]
    assert await sources("default", links=False) == [("default", "kubernetes")] and listed == ["default"]
    assert await sources("own") == [("own", "kubernetes")]  # the namespace's own Service of that name wins
