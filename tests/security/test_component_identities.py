"""The default component roles suffice: controller-manager, scheduler and kubelet each authenticate as themselves
(not as system:masters) and a Deployment still reaches Running; nothing they did was refused."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import DEPLOYMENTS, NODES, PODS, SECRETS
from tests.support.controlplane import Etcd
from tests.support.node import BUSYBOX, ctr, pod_namespace, private_node, running
from tests.support.workloads import deploy_body
from tests.util import unique, wait_for


def test_components_run_a_deployment_with_their_own_roles(etcd: Etcd) -> None:
    with private_node(etcd, own_identities=True) as node:
        assert node.token and node.token != node.api.token and set(node.api.tokens) == {
            "system:kube-controller-manager", "system:kube-scheduler", f"system:node:{node.name}"}
        async def scenario() -> None:
            async with node.client() as c, pod_namespace(c, "ident") as ns:
                name = unique("web")
                for secret in ("used", "unused"):
                    await c.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret},
                                             "stringData": {"k": secret}}, ns)
                body = deploy_body(name, 2, BUSYBOX)
                env = [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "used", "key": "k"}}}]
                body["spec"]["template"]["spec"]["containers"] = [ctr("c", "sleep 3600", env=env)]
                body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
                await c.create(DEPLOYMENTS, body, ns)

                async def both_running() -> bool:
                    pods = (await c.list(PODS, ns)).get("items") or []
                    return len(pods) == 2 and all(running(p) for p in pods)
                await wait_for(both_running, 90, 0.2, message="2 pods of the Deployment Running")
                for p in (await c.list(PODS, ns))["items"]:
                    assert p["spec"]["nodeName"] == node.name
                # The Node authorizer: the kubelet reads the secret its pods use, and no other.
                async with Client(node.api.url, node.token) as kubelet:
                    assert (await kubelet.get(SECRETS, "used", ns))["metadata"]["name"] == "used"
                    with pytest.raises(ApiError) as e:
                        await kubelet.get(SECRETS, "unused", ns)
                    assert e.value.code == 403 and e.value.message == (
                        f'secrets "unused" is forbidden: User "system:node:{node.name}" cannot get resource "secrets" '
                        f'in API group "" in the namespace "{ns}": no relationship found between node '
                        f"'{node.name}' and this object")
                    # NodeRestriction: its own Node and its own pods only
                    other = unique("elsewhere")
                    await c.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": other}})
                    stray = await c.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": other},
                                                  "spec": {"nodeName": other, "containers": [ctr("c", "true")]}}, ns)
                    try:
                        label = {"metadata": {"labels": {"touched": "yes"}}}
                        await kubelet.patch(NODES, node.name, label)  # its own: allowed
                        for attempt, message in [
                                (kubelet.patch(NODES, other, label),
                                 f"node '{node.name}' is not allowed to modify node '{other}'"),
                                (kubelet.patch(PODS, other, {"status": {"phase": "Failed"}}, ns, subresource="status"),
                                 f"node '{node.name}' can only update pod status for pods with spec.nodeName set "
                                 "to itself"),
                                (kubelet.delete(PODS, other, ns),
                                 f"node '{node.name}' can only delete pods with spec.nodeName set to itself")]:
                            with pytest.raises(ApiError) as e:
                                await attempt
                            assert e.value.code == 403 and e.value.message.endswith(message)
                        assert (await c.get(PODS, other, ns)).get("status", {}).get("phase") != "Failed"
                    finally:
                        await c.delete(PODS, other, ns, grace_period_seconds=0)
                        await c.delete(NODES, other)

        asyncio.run(scenario())
        # The apiserver logs every refusal: none of the components was refused anything.
        log = Path(node.api.log_path).read_text(errors="replace")
        refused = [line for line in log.splitlines() if "forbidden:" in line and "/secrets/unused" not in line
                   and "elsewhere" not in line]
        assert not refused, "\n".join(refused[:20])
