"""Chaos: the disk under etcd's data dir fills up, then is freed again (issue 17).

A local cluster whose `<home>/etcd` is a small ext4 filesystem of its own (a sparse image file, loop-mounted);
a filler file takes every free block of it, the reserved ones too (etcd runs as root). etcd raises no alarm
for that: the first write that finds no room stops it ("cannot commit tx ... no space left on device") and the
supervisor's restarts die the same way. Meanwhile every write gets a prompt 503 Status with a reason (no hang),
`pkctl` prints a one-line error, `cluster status` says DISK FULL. Once the filler is deleted etcd comes back on
its next restart and every write the apiserver acknowledged is there.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from pkctl.cluster.components import BY_NAME
from tests.chaos.harness import Api
from tests.e2e.helpers import Cluster, make_namespace, no_traceback, node_state_left, run
from tests.util import unique, wait_for_sync

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not all(BY_NAME[c].available() for c in ("apiserver", "controller-manager", "scheduler")),
                       reason="needs the control plane"),
    pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs mkfs.ext4 (e2fsprogs)"),
]

DISK_MIB = 256  # etcd preallocates two 64 MB WAL files at start: ~123 MiB of it


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def small_disk_cluster() -> Iterator[Cluster]:
    home = Path(tempfile.mkdtemp(prefix="pkt-home-"))
    image, etcd = Path(f"{home}.img"), home / "etcd"
    try:
        sh("truncate", "-s", f"{DISK_MIB}M", str(image))
        sh("mkfs.ext4", "-q", "-F", str(image))
        etcd.mkdir()
        sh("mount", "-o", "loop", str(image), str(etcd))  # the loop device goes with the umount
        (etcd / "lost+found").rmdir()  # etcd's data dir holds etcd's files only
        etcd.chmod(0o700)
        up = run("cluster", "up", "--home", str(home), "--wait-timeout", "90", check=False, timeout=180)
        assert up.returncode == 0, f"cluster up failed:\n{up.stdout}\n{up.stderr}"
        yield Cluster(home, home / "kubeconfig", up.stdout)
    finally:
        try:
            if (home / "config.json").exists():
                down = run("cluster", "down", "--home", str(home), check=False, timeout=120)
                assert down.returncode == 0, f"cluster down failed:\n{down.stdout}\n{down.stderr}"
        finally:
            if os.path.ismount(etcd):
                sh("umount", str(etcd))
            image.unlink(missing_ok=True)
        try:
            if (home / "config.json").exists():
                assert node_state_left(Cluster(home, home / "kubeconfig", "")) == []
                run("cluster", "down", "--purge", "--home", str(home), timeout=120)
        finally:
            shutil.rmtree(home, ignore_errors=True)


def fill(directory: Path) -> Path:
    """A file taking every free block of `directory`'s filesystem (allocated, not sparse)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size, chunk = 0, 1 << 20
        while chunk >= 4096:
            try:
                os.posix_fallocate(fd, size, chunk)
                size += chunk
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    finally:
        os.close(fd)
    return filler


def configmap(name: str) -> dict[str, Any]:
    # 100 KB each: etcd's database file must grow after a few
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"blob": "x" * 100_000}}


def test_etcd_disk_full_gives_clear_errors_then_recovers_with_nothing_lost(small_disk_cluster: Cluster) -> None:
    c = small_disk_cluster
    api = Api(c)
    ns = make_namespace(c)
    path = f"/api/v1/namespaces/{ns}/configmaps"
    acknowledged = {unique("before") for _ in range(2)}
    for name in acknowledged:
        api.must("POST", path, configmap(name))
    filler = fill(c.home / "etcd")
    refused, slowest = None, 0.0
    for _ in range(200):
        name = unique("cm")
        t0 = time.monotonic()
        got = api.call("POST", path, configmap(name), timeout=30)
        assert got is not None, "no answer within 30 s (a hang, or the connection dropped)"
        slowest = max(slowest, time.monotonic() - t0)
        if got[0] == 201:
            acknowledged.add(name)
            continue
        refused = got
        break
    assert refused is not None, "etcd never ran out of space"
    code, status = refused
    assert code == 503 and status.get("kind") == "Status" and status.get("reason") == "ServiceUnavailable", refused
    print(f"after {len(acknowledged)} writes (slowest answer {slowest:.2f}s): {status['message']}")
    # etcd is down until there is room again: writes keep getting a prompt answer
    got = api.call("POST", path, configmap(unique("cm")), timeout=30)
    assert got is not None and got[0] >= 500 and got[1].get("message"), got
    p = run("--kubeconfig", str(c.kubeconfig), "create", "configmap", unique("cm"), "-n", ns, "--from-literal",
            "k=v", check=False)
    assert p.returncode != 0 and no_traceback(p), p
    assert p.stderr.startswith("Error from server (ServiceUnavailable)") and len(p.stderr.splitlines()) == 1, p.stderr
    status_out = run("cluster", "status", "--home", str(c.home), check=False)
    assert status_out.returncode == 1 and "DISK FULL" in status_out.stdout, status_out.stdout
    assert "no space left on device" in run("cluster", "logs", "etcd", "--home", str(c.home)).stdout

    filler.unlink()
    freed = time.monotonic()
    # the supervisor's next restart of etcd (its backoff is at most 30 s) finds room
    again = unique("after")
    wait_for_sync(lambda: (got := api.call("POST", path, configmap(again), timeout=10)) is not None
                  and got[0] in (201, 409), timeout=120, interval=1, message="a write after the disk was freed")
    print(f"writes accepted again {time.monotonic() - freed:.1f}s after the disk was freed")
    acknowledged.add(again)
    listed = {cm["metadata"]["name"] for cm in api.must("GET", path)["items"]}
    assert acknowledged <= listed, acknowledged - listed
    wait_for_sync(lambda: run("cluster", "status", "--home", str(c.home), check=False).returncode == 0, timeout=90,
                  interval=1, message="cluster status healthy again")
    assert "DISK FULL" not in run("cluster", "status", "--home", str(c.home)).stdout
