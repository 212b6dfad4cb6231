"""What a real kubelet writes (the Node's status, running and finished pods' statuses) decodes into the official
Python client's models, which insist on every field Kubernetes always serializes."""
from __future__ import annotations

import asyncio

import pytest
from kubernetes import client as k8s

from pklib.client import Client
from tests.support.node import PODS, Node, ctr, phase, pod, running, wait_pod

pytestmark = pytest.mark.root


def official(node: Node) -> k8s.CoreV1Api:
    conf = k8s.Configuration(host=node.api.url, api_key={"authorization": f"Bearer {node.api.token}"})
    return k8s.CoreV1Api(k8s.ApiClient(conf))


async def test_node_and_pod_statuses_decode(kc: Client, ns: str, node: Node) -> None:
    await kc.create(PODS, pod("up", ctr("c", "sleep 3600")), ns)
    await kc.create(PODS, pod("done", ctr("c", "exit 3"), restartPolicy="Never"), ns)
    await wait_pod(kc, ns, "up", running, what="pod up running")
    await wait_pod(kc, ns, "done", lambda p: phase(p) == "Failed", what="pod done failed")
    core = official(node)
    try:
        got = await asyncio.to_thread(core.read_node, node.name)
        assert got.status.node_info.kubelet_version and got.status.daemon_endpoints.kubelet_endpoint.port
        pods = {p.metadata.name: p for p in (await asyncio.to_thread(core.list_namespaced_pod, ns)).items}
        assert pods["up"].status.container_statuses[0].state.running is not None
        assert pods["done"].status.container_statuses[0].state.terminated.exit_code == 3
    finally:
        core.api_client.close()
