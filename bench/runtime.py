"""Container runtime benchmark: pod sandbox setup, and container create+start next to a bare `runc run -d`.

Also a container's stop (SIGKILL at once) and removal, and the benchmark process's own CPU per container (create,
start, stop, remove; runc and conmon are other processes and not counted). It runs on uvloop, as the kubelet does
(`--loop asyncio`: the standard loop): how a helper process is spawned costs very differently on the two.

Needs root. Uses its own image store, state dir, bridge, pod CIDR, nft table and cgroup parent (all unique),
prints one JSON document and removes everything. Figures only: nothing here passes or fails on time.

    .venv/bin/python -m bench.runtime [--runs 50] [--loop uvloop|asyncio]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from images.busybox import ensure_busybox  # noqa: E402
from images.store import ImageStore  # noqa: E402
from kubelet.runtime.interface import ContainerConfig, SandboxConfig  # noqa: E402
from kubelet.runtime.runc import RuncRuntime, RuntimeConfig  # noqa: E402
from kubelet.runtime.sandbox import hold_uts_ipc, unmount  # noqa: E402

COMMAND = ["sleep", "600"]


def summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return {"p50_ms": round(statistics.median(ms), 2), "p99_ms": round(p99, 2), "max_ms": round(ms[-1], 2),
            "runs": len(ms)}


async def bench_sandboxes(rt: RuncRuntime, runs: int) -> list[float]:
    samples = []
    for i in range(runs):
        t0 = time.perf_counter()
        sid = await rt.run_sandbox(SandboxConfig(name=f"bench-{i}", namespace="bench", uid=f"sb{i}"))
        samples.append(time.perf_counter() - t0)
        await rt.remove_sandbox(sid)
    return samples


async def bench_parts(rt: RuncRuntime, store: ImageStore, image: str, work: Path, runs: int) -> dict[str, Any]:
    """Where the time goes: pod network alone, the UTS/IPC holder alone, the overlay rootfs mount alone."""
    network, namespaces, rootfs = [], [], []
    for i in range(runs):
        sid = f"{i:04d}{uuid.uuid4().hex[:28]}"
        t0 = time.perf_counter()
        await asyncio.to_thread(rt.network.setup, sid)
        network.append(time.perf_counter() - t0)
        await asyncio.to_thread(rt.network.teardown, sid)
        t0 = time.perf_counter()
        paths = await hold_uts_ipc(work / "ns" / sid, "bench")
        namespaces.append(time.perf_counter() - t0)
        for p in paths:
            if p is not None:  # no IPC namespace of its own (hostIPC)
                unmount(p)
        t0 = time.perf_counter()
        store.prepare_rootfs(image, sid)
        rootfs.append(time.perf_counter() - t0)
        store.release_rootfs(sid)
    return {"pod_network": summary(network), "uts_ipc_namespaces": summary(namespaces),
            "rootfs_overlay_mount": summary(rootfs)}


class BareRunc:
    """`runc run -d` of the same bundle as a pkube container: its config.json (another cgroup), a rootfs mounted
    beforehand, stdio to /dev/null. Like `runc start`, it returns once the container's process exec'd."""

    def __init__(self, rt: RuncRuntime, store: ImageStore, image: str, template: dict[str, Any], work: Path) -> None:
        self.rt, self.store, self.image, self.template, self.work = rt, store, image, template, work
        self.root = work / "bare-runc"
        self.root.mkdir()

    def run_once(self) -> float:
        cid = f"bare{uuid.uuid4().hex[:12]}"
        bundle = self.work / cid
        bundle.mkdir()
        spec = json.loads(json.dumps(self.template))
        spec["root"]["path"] = str(self.store.prepare_rootfs(self.image, cid))
        spec["linux"]["cgroupsPath"] = f"{self.rt.config.cgroup_parent}/bare/{cid}"
        (bundle / "config.json").write_text(json.dumps(spec))
        try:
            t0 = time.perf_counter()
            # the detached container inherits runc's stdio: a pipe would keep run() waiting for the container
            subprocess.run(["runc", "--root", str(self.root), "run", "-d", cid], cwd=bundle, check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return time.perf_counter() - t0
        finally:
            subprocess.run(["runc", "--root", str(self.root), "delete", "--force", cid], capture_output=True)
            self.store.release_rootfs(cid)
            shutil.rmtree(bundle, ignore_errors=True)


async def pkube_once(rt: RuncRuntime, sid: str, image: str, name: str) -> tuple[float, str]:
    """create+start (conmon, rootfs mount, config.json, runc create, start) until the process exec'd."""
    t0 = time.perf_counter()
    cid = await rt.create_container(sid, ContainerConfig(name=name, image=image, command=COMMAND))
    await rt.start_container(cid)
    return time.perf_counter() - t0, cid


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def bench_containers(rt: RuncRuntime, store: ImageStore, sid: str, image: str, work: Path,
                           runs: int) -> tuple[list[float], list[float], list[float], float]:
    """pkube and bare runc runs interleaved (alternating which goes first), so that load from other work on
    the machine falls on both alike; one unmeasured warm-up of each first. Returns pkube's create+start times,
    the bare runs' times, pkube's stop+remove times and this process's CPU seconds per pkube container."""
    _, kept = await pkube_once(rt, sid, image, "warmup")  # its bundle is the template of the bare runs
    bare_runc = BareRunc(rt, store, image, rt.containers.spec(kept), work)
    bare_runc.run_once()
    pkube, bare, teardown, cpu = [], [], [], 0.0
    for i in range(runs):
        if i % 2:
            bare.append(bare_runc.run_once())
        c0 = cpu_s()
        took, cid = await pkube_once(rt, sid, image, f"c{i}")
        pkube.append(took)
        t0 = time.perf_counter()
        await rt.stop_container(cid, 0)
        await rt.remove_container(cid)
        teardown.append(time.perf_counter() - t0)
        cpu += cpu_s() - c0
        if not i % 2:
            bare.append(bare_runc.run_once())
    return pkube, bare, teardown, cpu / runs


async def bench_exec(rt: RuncRuntime, sid: str, image: str, runs: int) -> tuple[list[float], float]:
    """An exec probe's work: `true` run in a running container (runc exec), its times and this process's CPU
    seconds per exec."""
    _, cid = await pkube_once(rt, sid, image, "exec")
    await rt.exec(cid, ["true"], timeout=10)  # unmeasured warm-up
    times, c0 = [], cpu_s()
    for _ in range(runs):
        t0 = time.perf_counter()
        result = await rt.exec(cid, ["true"], timeout=10)
        times.append(time.perf_counter() - t0)
        assert result.exit_code == 0, result
    cpu = (cpu_s() - c0) / runs
    await rt.remove_container(cid)
    return times, cpu


async def main(runs: int) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="pkt-bench-rt-"))
    tag = uuid.uuid4().hex[:6]
    store = ImageStore(work / "images")
    image = ensure_busybox(store)
    rt = RuncRuntime(RuntimeConfig(state_dir=work / "runtime", pod_cidr="10.208.0.0/24", bridge=f"pkt-bb{tag}",
                                   nat_table=f"pkube-t-{tag}", netns_prefix=f"pkb{tag}-", veth_prefix=f"pb{tag}",
                                   cgroup_parent=f"pkube-bench-{tag}", enable_forwarding=False), store)
    try:
        await rt.ensure_node()
        sandbox = await bench_sandboxes(rt, runs)
        parts = await bench_parts(rt, store, image, work, min(runs, 20))
        sid = await rt.run_sandbox(SandboxConfig(name="bench", namespace="bench", uid="bench"))
        pkube, bare, teardown, cpu = await bench_containers(rt, store, sid, image, work, runs)
        execs, exec_cpu = await bench_exec(rt, sid, image, runs)
    finally:
        await rt.destroy_node()
        shutil.rmtree(work, ignore_errors=True)
    p, b = summary(pkube), summary(bare)
    return {
        "benchmark": "runtime",
        "sandbox_setup": {**summary(sandbox), "target_ms": 50},
        "parts": parts,
        "container_create_start": {"pkube": p, "bare_runc_run": b,
                                   "ratio_p50": round(p["p50_ms"] / b["p50_ms"], 2),
                                   "ratio_p99": round(p["p99_ms"] / b["p99_ms"], 2), "target_ratio": 1.3},
        "container_stop_remove": summary(teardown),
        "process_cpu_ms_per_container": round(cpu * 1000, 2),
        "exec_true": {**summary(execs), "process_cpu_ms": round(exec_cpu * 1000, 2)},
        "load_avg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2),
                        "cpus": os.cpu_count()},
        "note": "pkube includes the overlay rootfs mount and conmon; the bare runc runs get a rootfs mounted "
                "beforehand. Both until the container's process exec'd; runs interleaved. Shared 2-core machine: "
                "figures are pessimistic.",
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                    help="the event loop (the kubelet's is uvloop)")
    args = ap.parse_args()
    run = uvloop.run if args.loop == "uvloop" else asyncio.run
    print(json.dumps({**run(main(args.runs)), "loop": args.loop}, indent=2))
