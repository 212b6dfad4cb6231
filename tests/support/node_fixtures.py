"""Fixtures of the kubelet's private control plane (tests/support/node.py): the node, a client, fresh namespaces.

A conftest that imports them gets its own session node (tests/kubelet, tests/security).
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
