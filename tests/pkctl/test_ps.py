"""`pkctl ps`, `stop` and `rm`: the Docker-style view of the pods' containers, from their status in the API (as
any node's kubelet writes it), and pods stopped and removed by pod name, container ID or NAME."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from pklib.client import Client
from pklib.errors import ApiError
from tests.support.node import allow_privileged_pods
from tests.support.pkctl import Pkctl, kind
from tests.util import unique

PODS = kind("pods")


def ago(seconds: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def running(name: str, cid: str, started: float, **extra: Any) -> dict[str, Any]:
    return {"name": name, "containerID": f"runc://{cid}", "image": "pkube.local/busybox:latest", "ready": True,
            "started": True, "restartCount": 0, "state": {"running": {"startedAt": ago(started)}}, **extra}


async def make_pod(client: Client, ns: str, name: str, node: str, containers: list[dict[str, Any]],
                   statuses: list[dict[str, Any]], phase: str = "Running") -> dict[str, Any]:
    p = await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                   "spec": {"nodeName": node, "containers": containers}}, ns)
    p["status"] = {"phase": phase, "containerStatuses": statuses}
    return await client.update_status(PODS, p)


def lines(out: str) -> list[str]:
    return [line.rstrip() for line in out.splitlines()]


async def test_ps_prints_the_pods_containers_as_docker_ps(pkctl: Pkctl, client: Client, namespace: str) -> None:
    node, ids = unique("node"), {k: k * 32 for k in "abcde"}
    await allow_privileged_pods(client, namespace)  # the hostPort
    web = await make_pod(client, namespace, "web", node, [
        {"name": "web", "image": "busybox", "command": ["sh", "-c", "exec httpd -f -p 80 -h /www"],
         "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP"}],
         "readinessProbe": {"tcpSocket": {"port": 80}}},
        {"name": "side", "image": "busybox"}],
        [running("web", ids["a"], 150), running("side", ids["b"], 4 * 3600)])
    await make_pod(client, namespace, "crash", node, [{"name": "c", "image": "busybox", "args": ["false"]}], [
        {"name": "c", "containerID": f"runc://{ids['c']}", "image": "pkube.local/busybox:latest", "ready": False,
         "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 2, "startedAt": ago(301), "finishedAt": ago(300)}}}])
    await make_pod(client, namespace, "job", unique("other"), [{"name": "c", "image": "busybox"}], [
        {"name": "c", "containerID": f"runc://{ids['d']}", "image": "pkube.local/busybox:latest", "ready": False,
         "restartCount": 0, "state": {"terminated": {"exitCode": 0, "startedAt": ago(7300),
                                                     "finishedAt": ago(7200)}}}], phase="Succeeded")
    # a container not created yet (pulling its image) has no ID: docker would not know it
    await make_pod(client, namespace, "pulling", node, [{"name": "c", "image": "busybox"}], [
        {"name": "c", "image": "busybox", "ready": False, "restartCount": 0,
         "state": {"waiting": {"reason": "ContainerCreating"}}}], phase="Pending")
    uid = web["metadata"]["uid"]

    r = pkctl("ps")
    assert r.returncode == 0, r.stderr
    got = lines(r.stdout)
    assert got[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    # newest first; the exited job's container only with -a; the one without an ID never
    assert [line[:12] for line in got[1:]] == ["aaaaaaaaaaaa", "cccccccccccc", "bbbbbbbbbbbb"]
    cols = [[c.strip() for c in _cells(got[0], line)] for line in got[1:]]
    assert cols[0] == ["aaaaaaaaaaaa", "pkube.local/busybox:latest", '"sh -c exec httpd -f…"', "2 minutes ago",
                       "Up 2 minutes (healthy)", "0.0.0.0:8080->80/tcp, 53/udp", f"k8s_web_web_{namespace}_{uid}_0"]
    assert cols[1][2:5] == ['"false"', "5 minutes ago", "Restarting (2) 5 minutes ago"]
    assert cols[1][6].startswith(f"k8s_c_crash_{namespace}_") and cols[1][6].endswith("_3")
    assert cols[2][2:6] == ['""', "4 hours ago", "Up 4 hours", ""]

    r = pkctl("ps", "-a", "--no-trunc")
    got = lines(r.stdout)
    assert [line.split()[0] for line in got[1:]] == [ids["a"], ids["c"], ids["d"], ids["b"]]
    assert '"sh -c exec httpd -f -p 80 -h /www"' in got[1]
    assert "Exited (0) 2 hours ago" in got[3] and "Up 4 hours" in got[4]

    assert pkctl("ps", "-q").stdout.split() == ["aaaaaaaaaaaa", "cccccccccccc", "bbbbbbbbbbbb"]
    assert pkctl("ps", "-aq", "--node", node).stdout.split() == ["aaaaaaaaaaaa", "cccccccccccc", "bbbbbbbbbbbb"]
    # without -n: every namespace (docker has none); an empty one prints just the header
    assert {ids["a"][:12], ids["b"][:12]} <= set(pkctl("ps", "-q", ns=None).stdout.split())
    assert lines(pkctl("ps", ns=unique("empty")).stdout) == [
        "CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   PORTS   NAMES"]


def _cells(header: str, line: str) -> list[str]:
    """Cut a row at the header's column starts."""
    starts = [header.index(h) for h in ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")]
    return [line[a:b] for a, b in zip(starts, starts[1:] + [len(line) + 1])]


async def test_stop_and_rm_delete_pods_by_name_container_id_or_ps_name(pkctl: Pkctl, client: Client,
                                                                       namespace: str) -> None:
    node = unique("node")
    ctr = [{"name": "c", "image": "busybox"}]
    up = await make_pod(client, namespace, "up", node, ctr, [running("c", "1f" * 16, 30)])
    done = await make_pod(client, namespace, "done", node, ctr, [
        {"name": "c", "containerID": "runc://" + "2e" * 16, "image": "busybox", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "startedAt": ago(60), "finishedAt": ago(50)}}}], phase="Succeeded")
    await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unbound"},
                               "spec": {"containers": ctr}}, namespace)

    # a pod whose containers run is not removed without -f (docker's rule for a running container)
    r = pkctl("rm", "up", "2e2e")
    assert r.returncode == 1
    assert r.stderr.strip() == 'error: cannot remove pod "up": pod is running: stop the pod before removing or force remove'
    assert r.stdout.strip() == 'pod "done" deleted'  # the finished one, named by its container ID prefix
    assert (await client.get(PODS, "up", namespace))["metadata"]["uid"] == up["metadata"]["uid"]
    del done

    # under 4 hex digits a target is only a pod name: no container ID prefix matches by chance
    r = pkctl("stop", "1f1")
    assert r.returncode == 1 and r.stderr.strip() == 'Error from server (NotFound): pods "1f1" not found'
    r = pkctl("rm", "-f", f"k8s_c_up_{namespace}_{up['metadata']['uid']}_0")
    assert r.returncode == 0 and r.stdout.strip() == 'pod "up" force deleted', r.stderr
    r = pkctl("stop", "-t", "5", "unbound")
    assert r.returncode == 0 and r.stdout.strip() == 'pod "unbound" deleted', r.stderr
    for name in ("up", "done", "unbound"):
        try:
            await client.get(PODS, name, namespace)
            raise AssertionError(f"pod {name} still exists")
        except ApiError as e:
            assert e.code == 404

    r = pkctl("stop", "nothing-here")
    assert r.returncode == 1 and r.stderr.strip() == 'Error from server (NotFound): pods "nothing-here" not found'
    r = pkctl("stop", "-t", "-1", "x")
    assert r.returncode == 1 and r.stderr.strip() == "error: invalid timeout -1: must be 0 or more seconds"
    r = pkctl("rm")
    assert r.returncode != 0 and "error" in r.stderr
