"""Helper process for the restart test: a short-lived "kubelet" that starts a pod, reports it and then waits
to be SIGKILLed. argv: state_dir pod_cidr bridge nat_table netns_prefix veth_prefix cgroup_parent image_root image
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from images.store import ImageStore
from kubelet.runtime.interface import ContainerConfig, SandboxConfig
from kubelet.runtime.runc import RuncRuntime, RuntimeConfig


async def main(argv: list[str]) -> None:
    state, cidr, bridge, table, ns_prefix, veth_prefix, cgroup_parent, image_root, image = argv
    rt = RuncRuntime(RuntimeConfig(state_dir=Path(state), pod_cidr=cidr, bridge=bridge, nat_table=table,
                                   netns_prefix=ns_prefix, veth_prefix=veth_prefix, cgroup_parent=cgroup_parent,
                                   enable_forwarding=False), ImageStore(Path(image_root)))
    sid = await rt.run_sandbox(SandboxConfig(name="survivor", namespace="default", uid="uid-survivor"))
    cid = await rt.create_container(sid, ContainerConfig(
        name="app", image=image, command=["sh", "-c", "echo before-restart; exec sleep 3600"]))
    await rt.start_container(cid)
    print(sid, cid, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
    sys.stdin.read()  # stay alive until the test kills us (or its end of the pipe goes away)
