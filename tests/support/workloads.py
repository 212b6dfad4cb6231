"""Workload bodies and waits shared by the controller tests (Deployments, ReplicaSets, DaemonSets, StatefulSets)."""
from __future__ import annotations

from typing import Any

from pklib.client import Client
from pklib.resources import DEPLOYMENTS, NODES
from tests.util import unique


def deploy_body(name: str, replicas: int, image: str = "busybox:1", strategy: dict[str, Any] | None = None,
                **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "strategy": strategy or {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}, **spec}}


async def status_is(client: Client, ns: str, name: str, **want: int) -> Any:
    d = await client.get(DEPLOYMENTS, name, ns)
    s = d.get("status") or {}
    if all(s.get(k, 0) == v for k, v in want.items()) and s.get("observedGeneration") == d["metadata"]["generation"]:
        return d
    return None


def rs_body(name: str, replicas: int, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, **spec}}


class Nodes:
    def __init__(self, client: Client):
        self.client = client
        self.names: list[str] = []

    async def add(self, labels: dict[str, str], **spec: Any) -> str:
        name = unique("node")
        await self.client.create(NODES, {"apiVersion": "v1", "kind": "Node",
                                         "metadata": {"name": name, "labels": labels}, "spec": spec})
        self.names.append(name)
        return name


def ds_body(name: str, group: str, image: str = "busybox:1", **tmpl_spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"nodeSelector": {"pkt-group": group},
                                           "containers": [{"name": "c", "image": image}], **tmpl_spec}}}}


def sts_body(name: str, replicas: int, image: str = "busybox:1", **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}, **spec}}
