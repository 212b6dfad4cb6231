"""A pod's ServiceAccount credentials on a real node: the kubelet (authenticating as system:node:<name>, so
the Node authorizer and NodeRestriction decide) requests a token bound to the pod and projects it with the
cluster CA and the namespace at /var/run/secrets/kubernetes.io/serviceaccount, read-only; the container's
environment names the `kubernetes` Service; the token authenticates as the pod's ServiceAccount until the pod
is deleted."""
from __future__ import annotations

import asyncio

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import PODS, SERVICES, TOKENREVIEWS
from tests.support.controlplane import Etcd, make_test_pki
from tests.support.node import BUSYBOX, ctr, exec_in, pod, pod_namespace, private_node, running
from tests.util import unique, wait_for

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


async def _review(c: Client, token: str) -> dict[str, object]:
    out = await c.create(TOKENREVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                        "spec": {"token": token}})
    status: dict[str, object] = out["status"]
    return status


def test_pod_gets_a_bound_token_the_ca_and_the_namespace(etcd: Etcd) -> None:
    with private_node(etcd, own_identities=True, service_accounts=True) as node:
        async def scenario() -> None:
            async with node.client() as c, pod_namespace(c, "satok") as ns:
                name = unique("p")
                await wait_for(lambda: _has_default_sa(c, ns), 30, 0.1, message="default ServiceAccount")
                await c.create(PODS, pod(name, ctr("c", "sleep 3600"), terminationGracePeriodSeconds=1), ns)

                async def is_running() -> dict[str, object] | None:
                    p = await c.get(PODS, name, ns)
                    return p if running(p) else None
                p = await wait_for(is_running, 90, 0.2, message="pod Running")
                token = (await exec_in(node, p, "c", ["cat", f"{SA_DIR}/token"])).stdout.decode()
                assert (await exec_in(node, p, "c", ["cat", f"{SA_DIR}/namespace"])).stdout.decode() == ns
                ca = (await exec_in(node, p, "c", ["cat", f"{SA_DIR}/ca.crt"])).stdout.decode()
                assert ca == make_test_pki(str(node.tmp)).ca_cert.read_text()
                refused = await exec_in(node, p, "c", ["sh", "-c", f"echo x > {SA_DIR}/token"])
                assert refused.exit_code != 0 and "Read-only file system" in refused.stderr.decode()
                env = (await exec_in(node, p, "c", ["env"])).stdout.decode().splitlines()
                svc = await c.get(SERVICES, "kubernetes", "default")
                assert f"KUBERNETES_SERVICE_HOST={svc['spec']['clusterIP']}" in env
                assert "KUBERNETES_SERVICE_PORT=443" in env and "KUBERNETES_SERVICE_PORT_HTTPS=443" in env
                assert f"KUBERNETES_PORT=tcp://{svc['spec']['clusterIP']}:443" in env
                review = await _review(c, token)
                assert review["authenticated"] is True, review
                user = review["user"]
                assert isinstance(user, dict)
                assert user["username"] == f"system:serviceaccount:{ns}:default"
                assert user["extra"]["authentication.kubernetes.io/pod-name"] == [name]
                await c.delete(PODS, name, ns, grace_period_seconds=0)

                async def gone() -> bool:
                    try:
                        await c.get(PODS, name, ns)
                        return False
                    except ApiError as e:
                        return e.code == 404
                await wait_for(gone, 30, 0.1, message="pod deleted")
                review = await _review(c, token)
                assert not review.get("authenticated") and "not found" in str(review["error"])

        asyncio.run(scenario())


async def _has_default_sa(c: Client, ns: str) -> bool:
    from pklib.resources import SERVICEACCOUNTS
    try:
        await c.get(SERVICEACCOUNTS, "default", ns)
        return True
    except ApiError:
        return False
