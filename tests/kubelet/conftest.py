"""A private control plane with a real kubelet, shared by the kubelet tests of one session.

Its own apiserver (Nodes are cluster-scoped: no other test's scheduler may see our node), the controller-manager
(node IPAM with a unique pod CIDR, Deployments, PV binder...), the scheduler and `pkube kubelet` as processes,
with unique bridge / nft table / netns / veth / cgroup names and temp dirs. At the end every pod is deleted, the
kubelet must have removed them, the node's runtime is destroyed and nothing may be left behind.
"""
from __future__ import annotations

from typing import AsyncIterator, Iterator

import pytest

from pklib.client import Client
from tests.support.controlplane import Etcd
from tests.support.node import Node, pod_namespace, private_node


@pytest.fixture(scope="session")
def node(etcd: Etcd) -> Iterator[Node]:
    with private_node(etcd) as n:
        yield n


@pytest.fixture
async def kc(node: Node) -> AsyncIterator[Client]:
    c = node.client()
    yield c
    await c.close()


@pytest.fixture
async def ns(kc: Client) -> AsyncIterator[str]:
    """A fresh namespace; its pods are force-deleted afterwards (the kubelet then removes their containers)."""
    async with pod_namespace(kc, "ns") as name:
        yield name


@pytest.fixture
async def privileged_ns(kc: Client) -> AsyncIterator[str]:
    """Like `ns`, labelled with the Pod Security level `privileged`: for pods that use the host."""
    async with pod_namespace(kc, "ns", "privileged") as name:
        yield name


