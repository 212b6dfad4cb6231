"""Logs and exec through the API server (pods/log, pods/exec) to the kubelet, with pkctl and kubectl."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pklib.client import Client
from pklib.resources import lookup
from tests.support.controlplane import ROOT
from tests.support.node import Node, cstatus, ctr, pod, running, wait_pod

pytestmark = pytest.mark.root

PODS = lookup("pods")
assert PODS


def pkctl(node: Node, ns: str, *argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "pkctl.main", "--server", node.api.url, "--token", node.api.token,
                           "-n", ns, *argv], cwd=ROOT, input=stdin, capture_output=True, timeout=30)


async def test_exec_returns_output_and_exit_code(node: Node, kc: Client, ns: str) -> None:
    await kc.create(PODS, pod("box", ctr("c", "exec sleep 3600")), ns)
    await wait_pod(kc, ns, "box", running, what="box Running")
    r = pkctl(node, ns, "exec", "box", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    r = pkctl(node, ns, "exec", "-i", "box", "--", "tr", "a-z", "A-Z", stdin=b"shout\n")
    assert (r.returncode, r.stdout) == (0, b"SHOUT\n")
    r = pkctl(node, ns, "exec", "nope", "--", "true")
    assert r.returncode == 1 and r.stderr.decode().strip() == 'Error from server (NotFound): pods "nope" not found'
    r = pkctl(node, ns, "exec", "box", "-c", "other", "--", "true")
    assert r.returncode == 1 and "container other is not valid for pod box" in r.stderr.decode()



async def test_cp_to_and_from_a_container(node: Node, kc: Client, ns: str, tmp_path: Path) -> None:
    """pkctl cp: tar over exec, both ways, files and directories, into a directory or to a new name."""
    await kc.create(PODS, pod("cpbox", ctr("c", "mkdir -p /data && exec sleep 3600")), ns)
    await wait_pod(kc, ns, "cpbox", running, what="cpbox Running")
    (tmp_path / "notes.txt").write_bytes(b"hello\n")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "deep.bin").write_bytes(bytes(range(256)) * 100)
    r = pkctl(node, ns, "cp", str(tmp_path / "notes.txt"), "cpbox:/data")  # into a directory: keeps its name
    assert r.returncode == 0, r.stderr
    assert pkctl(node, ns, "exec", "cpbox", "--", "cat", "/data/notes.txt").stdout == b"hello\n"
    assert pkctl(node, ns, "cp", str(tmp_path / "tree"), f"{ns}/cpbox:/data/copied").returncode == 0
    r = pkctl(node, ns, "exec", "cpbox", "--", "md5sum", "/data/copied/sub/deep.bin")
    assert r.stdout.split()[0].decode() == hashlib.md5((tmp_path / "tree/sub/deep.bin").read_bytes()).hexdigest()

    back = tmp_path / "back"
    assert pkctl(node, ns, "cp", "cpbox:/data/copied", str(back)).returncode == 0
    assert (back / "sub" / "deep.bin").read_bytes() == (tmp_path / "tree/sub/deep.bin").read_bytes()
    assert pkctl(node, ns, "cp", "cpbox:/data/notes.txt", str(tmp_path / "n2")).returncode == 0
    assert (tmp_path / "n2").read_bytes() == b"hello\n"

    for argv, message in [
            (("cp", "a", "b"), "error: one of src or dest must be a remote file specification"),
            (("cp", "cpbox:/x", "cpbox:/y"), "error: one of src or dest must be a local file specification"),
            (("cp", str(tmp_path / "nope"), "cpbox:/data"), f"error: {tmp_path / 'nope'} doesn't exist in local"),
            (("cp", "nopod:/x", str(tmp_path / "x")), 'Error from server (NotFound): pods "nopod" not found')]:
        r = pkctl(node, ns, *argv)
        assert r.returncode == 1 and r.stderr.decode().startswith(message), (argv, r.stderr)
    r = pkctl(node, ns, "cp", "cpbox:/data/missing", str(tmp_path / "m"))
    assert r.returncode == 1 and b"missing" in r.stderr and not (tmp_path / "m").exists()


async def test_logs_tail_previous_and_follow(node: Node, kc: Client, ns: str) -> None:
    script = "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); sleep 0.2; done"
    await kc.create(PODS, pod("talker", ctr("c", script)), ns)
    await wait_pod(kc, ns, "talker", running, what="talker Running")
    proc = subprocess.Popen([sys.executable, "-m", "pkctl.main", "--server", node.api.url, "--token",
                             node.api.token, "-n", ns, "logs", "-f", "talker"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        seen = b""
        deadline = time.monotonic() + 20
        while seen.count(b"\n") < 8 and time.monotonic() < deadline and proc.poll() is None:
            chunk = proc.stdout.read()
            if chunk:
                seen += chunk
            else:
                time.sleep(0.05)
        lines = seen.decode().split()
        assert len(lines) >= 8, (seen, proc.stderr.read() if proc.poll() is not None else b"")
        assert lines[:8] == [f"line-{i}" for i in range(8)]  # the follower saw lines written after it started
    finally:
        proc.kill()
        proc.wait(10)
    r = pkctl(node, ns, "logs", "--tail", "2", "talker")
    nums = [int(x.split("-")[1]) for x in r.stdout.decode().split()]
    # the last two lines, at least as far as the follower got (line-7); a quick pkctl may run before line-8
    assert r.returncode == 0 and len(nums) == 2 and nums[1] == nums[0] + 1 >= 7, r.stdout


async def test_logs_of_previous_container_after_a_restart(node: Node, kc: Client, ns: str) -> None:
    await kc.create(PODS, pod("phoenix", ctr("c", "echo run-$(date +%s%N); sleep 1; exit 1")), ns)
    await wait_pod(kc, ns, "phoenix", lambda p: cstatus(p, "c").get("restartCount", 0) >= 1, 30, "a restart")
    r = pkctl(node, ns, "logs", "--previous", "phoenix")
    assert r.returncode == 0 and r.stdout.decode().startswith("run-"), r.stderr
    r = pkctl(node, ns, "logs", "--since", "bogus", "phoenix")
    assert r.returncode == 1 and r.stderr.decode().startswith("error: invalid argument")


async def test_kubelet_api_lets_in_only_the_api_servers_client_certificate(node: Node, kc: Client, ns: str) -> None:
    import aiohttp
    await kc.create(PODS, pod("guarded", ctr("c", "echo secret-line; exec sleep 3600")), ns)
    await wait_pod(kc, ns, "guarded", running, what="guarded Running")
    url = f"https://127.0.0.1:{node.port}/containerLogs/{ns}/guarded/c"
    anonymous = aiohttp.TCPConnector(ssl=node.kubelet_tls(client_cert=None))
    async with aiohttp.ClientSession(connector=anonymous) as s:
        async with s.get(f"https://127.0.0.1:{node.port}/healthz") as r:
            assert r.status == 200
        # no client certificate: a bearer token, even the admin's, is no credential here
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Bearer {node.api.token}"}):
            async with s.get(url, headers=headers) as r:
                assert r.status == 401 and b"secret-line" not in await r.read()
        async with s.post(f"https://127.0.0.1:{node.port}/exec/{ns}/guarded/c?command=true") as r:
            assert r.status == 401
    # a certificate of the cluster CA that is not the API server's: authenticated, not authorized
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            ssl=node.kubelet_tls("etcd-healthcheck-client"))) as s:
        async with s.get(url) as r:
            assert r.status == 403 and b"secret-line" not in await r.read()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=node.kubelet_tls())) as s:
        async with s.get(url) as r:
            assert r.status == 200 and (await r.text()).strip() == "secret-line"


async def test_stats_summary_reports_pod_usage(node: Node, kc: Client, ns: str) -> None:
    import aiohttp
    await kc.create(PODS, pod("busy", ctr("c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 3600")),
                    ns)
    p = await wait_pod(kc, ns, "busy", running, what="busy Running")
    url = f"https://127.0.0.1:{node.port}/stats/summary"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=node.kubelet_tls(client_cert=None))) as s:
        async with s.get(url) as r:
            assert r.status == 401
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=node.kubelet_tls())) as s:
        async with s.get(url) as r:
            assert r.status == 200
            summary = await r.json()
    assert summary["node"]["nodeName"] == node.name
    mine = [x for x in summary["pods"] if x["podRef"]["uid"] == p["metadata"]["uid"]]
    assert len(mine) == 1 and mine[0]["podRef"] == {"name": "busy", "namespace": ns, "uid": p["metadata"]["uid"]}
    assert mine[0]["cpu"]["usageCoreNanoSeconds"] > 0 and mine[0]["memory"]["workingSetBytes"] > 0
    assert [c["name"] for c in mine[0]["containers"]] == ["c"]
