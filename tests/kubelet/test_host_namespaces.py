"""hostPID and hostIPC on the real kubelet: the pod's containers are in the node's PID / IPC namespaces (and see
its /dev/shm), a pod without them is not; Pod Security baseline refuses them. `pkctl ps/stop/rm` on real pods."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.node import Node, cstatus, ctr, exec_in, pod, running, wait_pod
from tests.support.pkctl import run_pkctl
from tests.util import unique, wait_for

pytestmark = pytest.mark.root

PODS = lookup("pods")
assert PODS


async def _out(node: Node, p: dict, cmd: str) -> str:
    r = await exec_in(node, p, "c", ["sh", "-c", cmd])
    assert r.exit_code == 0, r.stderr
    return r.stdout.decode().strip()


async def test_host_pid_and_ipc_pods_share_the_nodes_namespaces(node: Node, kc: Client, privileged_ns: str) -> None:
    me, shm = os.getpid(), Path("/dev/shm") / unique("pkube-hostipc")
    await kc.create(PODS, pod("host", ctr("c", "exec sleep 3600"), hostPID=True, hostIPC=True), privileged_ns)
    await kc.create(PODS, pod("own", ctr("c", "exec sleep 3600")), privileged_ns)
    host = await wait_pod(kc, privileged_ns, "host", running, what="hostPID/hostIPC pod Running")
    own = await wait_pod(kc, privileged_ns, "own", running, what="plain pod Running")
    try:
        # the test's own process is visible (ps reads /proc) in the hostPID pod, not in the other one
        assert str(me) in (await _out(node, host, "ps -o pid")).split()
        assert str(me) not in (await _out(node, own, "ps -o pid")).split()
        ns_of = "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc"
        assert (await _out(node, host, ns_of)).split() == [os.readlink("/proc/self/ns/pid"),
                                                           os.readlink("/proc/self/ns/ipc")]
        theirs = (await _out(node, own, ns_of)).split()
        assert theirs[0] != os.readlink("/proc/self/ns/pid") and theirs[1] != os.readlink("/proc/self/ns/ipc")
        # POSIX shared memory: the node's /dev/shm with hostIPC, a private one without
        await _out(node, host, f"echo from-pod > {shm}")
        assert shm.read_text() == "from-pod\n"
        assert (await exec_in(node, own, "c", ["test", "-e", str(shm)])).exit_code == 1
    finally:
        shm.unlink(missing_ok=True)

    # `pkctl ps` shows the real containers (runc's IDs), `stop` by a container ID, `rm -f` by pod name
    def pkctl(*args: str) -> str:
        r = run_pkctl("--kubeconfig", node.api.kubeconfig, "-n", privileged_ns, *args)
        assert r.returncode == 0, r.stderr
        return r.stdout
    ids = {name: cstatus(p, "c")["containerID"].split("://")[1] for name, p in (("host", host), ("own", own))}
    table = pkctl("ps", "--node", node.name, "--no-trunc").splitlines()
    assert sorted(line.split()[0] for line in table[1:]) == sorted(ids.values())
    assert all('"sh -c exec sleep 3600"' in line and " Up " in line for line in table[1:])
    assert pkctl("stop", ids["own"][:8]).strip() == 'pod "own" deleted'  # returns once the pod is gone
    assert pkctl("rm", "-f", "host").strip() == 'pod "host" force deleted'
    rt = node.runtime()

    async def gone() -> bool:
        return not set(ids.values()) & set(rt.containers.ids())
    await wait_for(gone, 20, 0.1, message="the containers of the removed pods gone from the node")


async def test_baseline_namespace_refuses_host_pid_and_ipc_with_the_pod_security_message(kc: Client,
                                                                                         ns: str) -> None:
    with pytest.raises(ApiError) as e:
        await kc.create(PODS, pod("nosy", ctr("c", "exec sleep 3600"), hostPID=True, hostIPC=True), ns)
    assert e.value.code == 403
    assert str(e.value) == ('pods "nosy" is forbidden: violates PodSecurity "baseline:latest": '
                            "host namespaces (hostPID=true, hostIPC=true)")  # Kubernetes' order
