"""What a container plants where the kubelet later removes files as root: its own rootfs (the overlay's upper
directory), and the pod's /etc/hosts, /etc/resolv.conf and /etc/hostname (read-write bind mounts of files in the
sandbox's directory, as in Kubernetes). Removing the container and the sandbox must not follow a planted link to
the host, and the container must not be able to swap its bind-mounted files for links."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubelet.runtime.interface import ContainerConfig, ContainerState, SandboxConfig
from kubelet.runtime.runc import RuncRuntime
from tests.support.runtime import busybox, image_store, runtime  # noqa: F401  (fixtures)
from tests.util import unique, wait_for

pytestmark = pytest.mark.root

HOSTNAME_BYTES = 4_000_000


async def test_removal_follows_no_link_the_container_planted(runtime: RuncRuntime, busybox: str,  # noqa: F811
                                                             tmp_path: Path) -> None:
    canary = tmp_path / "canary"  # a host directory the container knows the path of, never sees
    canary.mkdir()
    (canary / "keep").write_text("host data")
    sid = await runtime.run_sandbox(SandboxConfig(name="planter", namespace="default", uid=unique("planter")))
    script = (f"rm -f /etc/hosts; ln -sf {canary} /etc/hosts; "  # refused: a mount point
              f"ln -s {canary} /planted-dir; ln -s {canary}/keep /planted-file; mkfifo /planted-fifo; "
              f"head -c {HOSTNAME_BYTES} /dev/zero > /etc/hostname; echo planted; exec sleep 3600")
    cid = await runtime.create_container(sid, ContainerConfig(name="planter", image=busybox,
                                                              command=["sh", "-c", script]))
    await runtime.start_container(cid)
    pod_files = {k: Path(v) for k, v in runtime.sandboxes.load(sid)["pod_files"].items()}

    async def planted() -> bool:
        return pod_files["/etc/hostname"].stat().st_size == HOSTNAME_BYTES
    await wait_for(planted, message="the container's writes")
    status = await runtime.container_status(cid)
    assert status.state == ContainerState.RUNNING
    root = Path(f"/proc/{status.pid}/root")
    assert os.readlink(root / "planted-dir") == str(canary)  # the links exist, in the container's rootfs
    assert os.readlink(root / "planted-file") == str(canary / "keep")
    # the bind-mounted files stay the sandbox's own regular files: the container could only write into them
    assert pod_files["/etc/hosts"].is_file() and not pod_files["/etc/hosts"].is_symlink()

    await runtime.remove_container(cid)
    await runtime.remove_sandbox(sid)
    assert sorted(os.listdir(canary)) == ["keep"] and (canary / "keep").read_text() == "host data"
    assert not any(p.exists() for p in pod_files.values())
