"""Shared fixtures: a real etcd and a real `pkube apiserver` process, started once per test session.

Tests share one control plane and isolate themselves by working in a fresh namespace
(`namespace` fixture) and with unique names.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import AsyncIterator, Iterator

import pytest

from tests.support.controlplane import ApiServer, Etcd, _stop, start_apiserver, start_etcd
from tests.util import unique


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def session_tmp() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="pkt-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def etcd(session_tmp: str) -> Iterator[Etcd]:
    e = start_etcd(session_tmp)
    yield e
    _stop(e.proc)


@pytest.fixture(scope="session")
def apiserver(session_tmp: str, etcd: Etcd) -> Iterator[ApiServer]:
    a = start_apiserver(session_tmp, etcd.url)
    yield a
    _stop(a.proc)


@pytest.fixture
async def client(apiserver: ApiServer) -> AsyncIterator["Client"]:  # noqa: F821
    from pklib.client import Client
    c = Client(apiserver.url, apiserver.token)
    yield c
    await c.close()


@pytest.fixture
async def namespace(client: "Client") -> AsyncIterator[str]:  # noqa: F821
    from pklib.resources import lookup
    name = unique("ns")
    await client.create(lookup("namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
