"""SIGTERM to the apiserver (issue 17): no new connections, every watch ends cleanly (a normal end of its chunked
body), in-flight requests finish, then the process exits 0; watching clients end as kubectl's do."""
from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import AsyncIterator, Iterator
from urllib.parse import urlsplit

import aiohttp
import pytest

from pklib.client import Client
from pklib.resources import lookup
from tests.support.controlplane import ROOT, ApiServer, Etcd, _stop, ca_context, start_apiserver, start_etcd
from tests.support.kubectl import Kubectl, Stream
from tests.util import unique, wait_for

CM = lookup("configmaps")
NS = lookup("namespaces")


@pytest.fixture
def own_etcd(session_tmp: str) -> Iterator[Etcd]:
    """An etcd of the test's own: it is paused (SIGSTOP) to hold a write in flight."""
    e = start_etcd(tempfile.mkdtemp(prefix="etcd-", dir=session_tmp))
    yield e
    e.proc.send_signal(signal.SIGCONT)
    _stop(e.proc)


@pytest.fixture
def doomed(session_tmp: str, own_etcd: Etcd) -> Iterator[ApiServer]:
    """An apiserver of the test's own (HTTPS, which kubectl needs to send its token), for it to SIGTERM."""
    a = start_apiserver(session_tmp, own_etcd.url, tls=True)
    yield a
    _stop(a.proc)


@pytest.fixture
async def session(session_tmp: str, doomed: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    tls = ca_context(session_tmp)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {doomed.token}"},
                                     connector=aiohttp.TCPConnector(ssl=tls)) as s:
        yield s


async def _gauge(s: aiohttp.ClientSession, url: str, sample: str) -> float:
    async with s.get(url + "/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(sample))


def _pkctl(api: ApiServer, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pkctl.main", "--kubeconfig", api.kubeconfig, *argv], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_sigterm_ends_watches_cleanly_and_lets_in_flight_requests_finish(
        session_tmp: str, own_etcd: Etcd, doomed: ApiServer, session: aiohttp.ClientSession) -> None:
    url = doomed.url
    ns = unique("shut")
    c = Client(url, doomed.token, ssl=ca_context(session_tmp))
    try:
        await c.create(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        await c.create(CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "before"}}, ns)
    finally:
        await c.close()

    # Clients that watch: a raw HTTP one, kubectl, pkctl get -w and events -w.
    watch = await session.get(f"{url}/api/v1/namespaces/{ns}/configmaps",
                              params={"watch": "true", "timeoutSeconds": "3600"},
                              timeout=aiohttp.ClientTimeout(total=None))
    first = json.loads(await watch.content.readline())
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "before")
    kubectl = Kubectl(doomed.kubeconfig).stream("get", "configmaps", "-n", ns, "-w") \
        if shutil.which("kubectl") else None
    pkctl_get = Stream(_pkctl(doomed, "get", "configmaps", "-n", ns, "-w"))
    pkctl_events = _pkctl(doomed, "events", "-n", ns, "-w")
    try:
        await _shut_down_under(own_etcd, doomed, session, ns, watch, kubectl, pkctl_get, pkctl_events)
    finally:
        for proc in (kubectl.proc if kubectl else None, pkctl_get.proc, pkctl_events):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


async def _shut_down_under(own_etcd: Etcd, doomed: ApiServer, session: aiohttp.ClientSession, ns: str,
                           watch: aiohttp.ClientResponse, kubectl: Stream | None, pkctl_get: Stream,
                           pkctl_events: subprocess.Popen[str]) -> None:
    url = doomed.url
    for stream in (kubectl, pkctl_get):
        if stream is not None:
            stream.wait_line(lambda line: line.startswith("before "), timeout=30)
    await wait_for(lambda: _gauge(session, url, 'apiserver_registered_watchers{resource="events"}'), timeout=30,
                   message="pkctl events -w watching")

    # A create in flight: etcd is paused, so it waits on its write when the signal comes.
    own_etcd.proc.send_signal(signal.SIGSTOP)
    in_flight = asyncio.create_task(session.post(
        f"{url}/api/v1/namespaces/{ns}/configmaps",
        json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "in-flight"}}))
    await wait_for(lambda: _gauge(session, url, 'apiserver_current_inflight_requests{request_kind="mutating"}'),
                   message="the create in flight")

    doomed.proc.send_signal(signal.SIGTERM)

    host = urlsplit(url)

    async def refused() -> bool:
        try:
            _, w = await asyncio.open_connection(host.hostname, host.port)
        except ConnectionError:  # refused (or reset, racing the close)
            return True
        w.close()
        return False
    await wait_for(refused, message="the listening socket closed")  # no new connections

    # The create in flight still finishes once etcd answers (within the apiserver's grace).
    own_etcd.proc.send_signal(signal.SIGCONT)
    created = await asyncio.wait_for(in_flight, 10)
    assert created.status == 201, await created.text()
    assert (await created.json())["metadata"]["name"] == "in-flight"

    # The watch ended with the end of its chunked body: no exception, nothing cut mid-event.
    rest = await asyncio.wait_for(watch.content.read(), 10)
    assert watch.content.at_eof()
    assert all(json.loads(line)["type"] in ("ADDED", "MODIFIED", "BOOKMARK") for line in rest.splitlines())
    watch.release()

    assert await asyncio.to_thread(doomed.proc.wait, 15) == 0

    # kubectl's get -w ends when the server closes its watch, with 0; pkctl's do the same and say why.
    if kubectl is not None:
        assert await asyncio.to_thread(kubectl.proc.wait, 15) == 0
        assert kubectl.proc.stderr is not None and kubectl.proc.stderr.read() == ""
    for proc in (pkctl_get.proc, pkctl_events):
        assert await asyncio.to_thread(proc.wait, 15) == 0
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert "Traceback" not in err
        assert err.strip().startswith("the watch on ") and "closed it and is not reachable any more" in err, err
