"""The controller-manager as a process: leader election fail-over, SIGKILL mid-scale, CLI errors."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from pklib.resources import must_lookup
from pklib.client import Client
from pklib.errors import ApiError
from tests.controllers.helpers import list_pods
from tests.support.controlplane import ROOT, ApiServer
from tests.support.workloads import rs_body
from tests.util import free_port, unique, wait_for

RS = must_lookup("replicasets")
PODS = must_lookup("pods")
LEASES = must_lookup("leases")


class Managers:
    """Starts `pkube controller-manager` processes and stops them by PID at the end."""

    def __init__(self, apiserver: ApiServer, tmp: str):
        self.apiserver, self.tmp = apiserver, tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *flags: str) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.tmp, f"cm-{len(self.procs)}.log"), "wb")
        target = [] if "--kubeconfig" in flags else ["--server", self.apiserver.url, "--token", self.apiserver.token]
        proc = subprocess.Popen([sys.executable, "-m", "launcher", "controller-manager", *target, *flags],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(Path(self.tmp).glob("cm-*.log")))

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@pytest.fixture
def managers(apiserver: ApiServer) -> Iterator[Managers]:
    with tempfile.TemporaryDirectory(prefix="pkt-cm-") as tmp:
        m = Managers(apiserver, tmp)
        try:
            yield m
        finally:
            m.stop_all()


async def test_no_duplicate_pods_when_killed_mid_scale(client: Client, namespace: str, managers: Managers) -> None:
    # Count every pod ever created, so that a duplicate deleted again later cannot hide.
    created: set[str] = set()
    start_rv = (await client.list(PODS, namespace))["metadata"]["resourceVersion"]

    async def count_creations() -> None:
        async for ev in client.watch(PODS, namespace, resource_version=start_rv):
            if ev["type"] == "ADDED":
                created.add(ev["object"]["metadata"]["name"])
    counter = asyncio.create_task(count_creations())
    try:
        first = managers.start("--controllers", "replicaset")
        await client.create(RS, rs_body("big", 200), namespace)

        async def some_pods() -> Any:
            return len(await list_pods(client, namespace)) >= 3
        await wait_for(some_pods, timeout=20, message=f"first pods\n{managers.logs()}")
        first.send_signal(signal.SIGKILL)
        first.wait()
        partial = len(await list_pods(client, namespace))
        assert 3 <= partial < 200, f"not killed mid-scale ({partial} pods)"
        # The second instance finds the server through a kubeconfig file, as `pkctl cluster up` starts it.
        managers.start("--controllers", "replicaset", "--kubeconfig", managers.apiserver.kubeconfig)

        async def settled() -> Any:
            rs = await client.get(RS, "big", namespace)
            return (rs.get("status") or {}).get("replicas") == 200 and len(created) >= 200
        await wait_for(settled, timeout=30, message=f"200 replicas after restart\n{managers.logs()}")
        assert len(await list_pods(client, namespace)) == 200
        assert len(created) == 200, f"{len(created)} pods were created for 200 replicas (restart at {partial})"
    finally:
        counter.cancel()
        await asyncio.gather(counter, return_exceptions=True)


async def test_leader_election_hands_over_when_leader_dies(client: Client, namespace: str,
                                                           managers: Managers) -> None:
    flags = ["--controllers", "replicaset", "--leader-elect", "--leader-elect-lease-duration", "3",
             "--leader-elect-renew-deadline", "2", "--leader-elect-retry-period", "0.5"]
    ports = {unique("a"): free_port(), unique("b"): free_port()}
    procs = {name: managers.start(*flags, "--leader-elect-identity", name, "--port", str(port))
             for name, port in ports.items()}

    async def holder() -> Any:
        try:
            lease = await client.get(LEASES, "pkube-controller-manager", "kube-system")
        except ApiError:
            return None
        h = lease["spec"].get("holderIdentity")
        return h if h in procs else None
    leader = await wait_for(holder, timeout=20, message=f"a leader\n{managers.logs()}")
    await client.create(RS, rs_body("ha", 2), namespace)

    async def pods(n: int) -> Any:
        return len(await list_pods(client, namespace)) == n
    await wait_for(lambda: pods(2), timeout=15, message="the leader acts")
    standby = next(n for n in procs if n != leader)

    async def reported() -> Any:
        states = {n: await _leading(port) for n, port in ports.items()}
        return states if None not in states.values() else None
    assert await wait_for(reported, message="both serve /metrics") == {leader: True, standby: False}

    procs[leader].send_signal(signal.SIGKILL)
    procs[leader].wait()

    async def new_holder() -> Any:
        h = await holder()
        return h if h and h != leader else None
    # lease 3 s + retry 0.5 s; allow generous scheduling slack on a shared machine
    successor = await wait_for(new_holder, timeout=15, message=f"fail-over\n{managers.logs()}")
    assert procs[successor].poll() is None
    await wait_for(lambda: _leading(ports[successor]), message="the successor reports leading in /metrics")
    await client.patch(RS, "ha", {"spec": {"replicas": 3}}, namespace)
    await wait_for(lambda: pods(3), timeout=15, message="the successor acts")


async def _leading(port: int) -> bool | None:
    """What /metrics says about leadership; None while the process is not serving yet."""
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                text = await r.text()
    except aiohttp.ClientConnectionError:
        return None
    assert "workqueue_depth" in text
    return "pkube_leader_election_master_status 1" in text.splitlines()


def test_cli_rejects_unknown_controller_and_missing_server() -> None:
    bad = subprocess.run([sys.executable, "-m", "launcher", "controller-manager", "--server", "http://127.0.0.1:1",
                          "--controllers", "replicaset,bogus"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: unknown controller 'bogus'; known: "
                                               + bad.stderr.split("known: ")[1].strip()]
    assert "Traceback" not in bad.stderr
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = tempfile.gettempdir()
    env["PKUBE_HOME"] = os.path.join(tempfile.gettempdir(), unique("nohome"))
    none = subprocess.run([sys.executable, "-m", "launcher", "controller-manager"], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, env=env)
    assert none.returncode == 2 and none.stderr.startswith("error: ") and "Traceback" not in none.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = subprocess.run([sys.executable, "-m", "launcher", "controller-manager", "--server",
                               "http://127.0.0.1:1", "--token", "t", "--port", str(taken.getsockname()[1])],
                              cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert busy.returncode == 2 and busy.stderr.startswith("error: cannot serve /metrics")
    assert len(busy.stderr.strip().splitlines()) == 1
