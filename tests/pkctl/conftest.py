"""Run the real `pkctl` as a user would: a subprocess against the real apiserver fixture."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from typing import AsyncIterator, Iterator

import pytest

from tests.support.controllers import ManagerFactory, controller_manager
from tests.support.controlplane import ApiServer, Etcd, _stop, start_apiserver
from tests.support.pkctl import Pkctl, run_pkctl


@pytest.fixture
def pkctl(apiserver: ApiServer, namespace: str) -> Pkctl:
    """pkctl with the test's kubeconfig and namespace: pkctl("get", "pods")."""
    def call(*args: str, stdin: str | None = None, ns: str | None = namespace) -> subprocess.CompletedProcess[str]:
        return run_pkctl("--kubeconfig", apiserver.kubeconfig, *(["-n", ns] if ns else []), *args, stdin=stdin)
    return call


@pytest.fixture
async def start_manager(apiserver: ApiServer) -> AsyncIterator[ManagerFactory]:
    """start_manager("replicaset,deployment", *extra_flags) runs controllers in this event loop until the test ends."""
    async with controller_manager(apiserver) as start:
        yield start


@pytest.fixture(scope="module")
def tls_api(etcd: Etcd) -> Iterator[ApiServer]:
    """An HTTPS apiserver of the test module's own: kubectl sends its token only over TLS."""
    tmp = tempfile.mkdtemp(prefix="pkt-pkctl-tls-")
    try:
        api = start_apiserver(tmp, etcd.url, tls=True)
        yield api
        _stop(api.proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
