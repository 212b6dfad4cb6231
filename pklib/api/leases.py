"""Node heartbeats: the Lease of a node in kube-node-lease, made on first use and renewed (Kubernetes'
nodelease controller). Used by the kubelet for real and hollow nodes alike."""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from pklib.api.timefmt import micro_now
from pklib.client import Client
from pklib.errors import ApiError, is_conflict, is_not_found
from pklib.resources import must_lookup

LEASE_NAMESPACE = "kube-node-lease"
LEASES = must_lookup("leases")

Obj = dict[str, Any]


class NodeLease:
    """The Lease of one node. `node_uid` gives the Node's uid for the owner reference (asked only when the
    Lease has to be created)."""

    def __init__(self, client: Client, node_name: str, duration: int, node_uid: Callable[[], Awaitable[str]]):
        self.client = client
        self.name = node_name
        self.duration = duration
        self.node_uid = node_uid
        self.lease: Obj | None = None   # what the server returned last

    def _renewed(self, lease: Obj) -> Obj:
        spec = dict(lease.get("spec") or {}, renewTime=micro_now(), holderIdentity=self.name,
                    leaseDurationSeconds=self.duration)
        return {**lease, "spec": spec}

    async def renew(self) -> Obj | None:
        """Renew (or make) the Lease; a conflict or a Lease deleted under us starts from what the server has
        (three tries: None when all three lost a race; the next heartbeat tries again)."""
        for _ in range(3):
            try:
                if self.lease is None:
                    self.lease = await self._get_or_create()
                else:
                    self.lease = await self.client.update(LEASES, self._renewed(self.lease))
                return self.lease
            except ApiError as e:
                if not (is_conflict(e) or is_not_found(e)):
                    raise
                self.lease = None
        return None

    async def _get_or_create(self) -> Obj:
        try:
            lease = await self.client.get(LEASES, self.name, LEASE_NAMESPACE)
        except ApiError as e:
            if not is_not_found(e):
                raise
            now = micro_now()
            return await self.client.create(LEASES, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE, "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": await self.node_uid()}]},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": self.duration,
                         "acquireTime": now, "renewTime": now}}, LEASE_NAMESPACE)
        return await self.client.update(LEASES, self._renewed(lease))
