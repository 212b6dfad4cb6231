"""Fixtures for controller tests: the real controller-manager, in-process, against the real apiserver."""
from __future__ import annotations

from typing import AsyncIterator

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import NODES
from tests.support.controllers import ManagerFactory, controller_manager
from tests.support.controlplane import ApiServer
from tests.support.workloads import Nodes


@pytest.fixture
async def start_manager(apiserver: ApiServer) -> AsyncIterator[ManagerFactory]:
    """start_manager("replicaset,deployment", *extra_flags) runs controllers in this event loop until the test ends."""
    async with controller_manager(apiserver) as start:
        yield start


@pytest.fixture
async def nodes(client: Client) -> AsyncIterator[Nodes]:
    n = Nodes(client)
    yield n
    for name in n.names:  # cluster-scoped: other tests must not see them
        try:
            await client.delete(NODES, name)
        except ApiError:
            pass
