"""etcd growth over simulated hours of a busy cluster, with and without the apiserver's compaction.

Time is compressed by --compression (120: a simulated hour takes 30 s). A real etcd and `pkube apiserver`
(the test helpers) get the compressed intervals: compaction every 5 simulated minutes, Events living one
simulated hour. Through the API the bench then writes what a busy cluster writes, on the compressed clock:
- each node renews its Lease every 10 s and rewrites its status every 5 min (the kubelet's defaults);
- --leader-leases elected components renew their Lease every 2 s (leader election's retry period);
- every pod is replaced once an hour: created, bound and Running (status), two Events, then deleted.
It prints one JSON document: per mode, etcd's file size, the size in use and the revisions of history
kept, sampled every simulated hour. Figures only; nothing passes or fails.

    .venv/bin/python -m bench.etcd_growth [--hours 6] [--compression 120] [--nodes 5] [--pods 30]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pklib.api.timefmt import micro_now, now_rfc3339  # noqa: E402
from pklib.client import Client  # noqa: E402
from pklib.errors import ApiError  # noqa: E402
from pklib.resources import EVENTS, LEASES, NODES, PODS  # noqa: E402
from tests.support.controlplane import _stop, etcd_call, start_apiserver, start_etcd  # noqa: E402

TICK = 10.0  # simulated seconds per step: the node Lease renewal period
NS = "default"


def etcd_figures(url: str) -> dict[str, int]:
    st = etcd_call(url, "/v3/maintenance/status", {})
    revision = int(st["header"]["revision"])
    found = etcd_call(url, "/v3/kv/range", {"key": base64.b64encode(b"compact_rev_key").decode()})
    kvs = found.get("kvs") or []
    compacted = int(base64.b64decode(kvs[0]["value"]) or 0) if kvs else 0  # the last compaction's revision
    return {"db_size_bytes": int(st["dbSize"]), "db_in_use_bytes": int(st["dbSizeInUse"]),
            "revision": revision, "history_revisions": revision - compacted}


class Cluster:
    """The writes of a busy cluster, one simulated step at a time."""

    def __init__(self, client: Client, nodes: int, pods: int, leader_leases: int):
        self.c = client
        self.nodes = [f"sim-node-{i}" for i in range(nodes)]
        self.leaders = [f"sim-leader-{i}" for i in range(leader_leases)]
        self.pods = pods
        self.leases: dict[str, dict[str, Any]] = {}
        self.node_objs: dict[str, dict[str, Any]] = {}
        self.serial = 0
        self.live: list[str] = []
        self.churn_debt = 0.0
        self.writes = 0

    async def setup(self) -> None:
        for name in self.nodes:
            self.node_objs[name] = await self.c.create(NODES, {
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"sim": "true"}},
                "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})
        for name in [*self.nodes, *self.leaders]:
            self.leases[name] = await self.c.create(LEASES, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()}}, NS)
        for _ in range(self.pods):
            await self._start_pod()

    async def step(self, n: int) -> None:
        work = [self._renew(name) for name in self.nodes]
        work += [self._renew(name, int(TICK / 2)) for name in self.leaders]  # every 2 s
        if n % int(300 / TICK) == 0:
            work += [self._node_status(name) for name in self.nodes]
        self.churn_debt += self.pods * TICK / 3600
        while self.churn_debt >= 1:
            self.churn_debt -= 1
            work.append(self._replace_pod())
        await asyncio.gather(*work)

    async def _renew(self, name: str, times: int = 1) -> None:
        for _ in range(times):
            lease = self.leases[name]
            lease["spec"]["renewTime"] = micro_now()
            self.leases[name] = await self.c.update(LEASES, lease)
            self.writes += 1

    async def _node_status(self, name: str) -> None:
        node = self.node_objs[name]
        node["status"]["conditions"][0]["lastHeartbeatTime"] = now_rfc3339()
        self.node_objs[name] = await self.c.update_status(NODES, node)
        self.writes += 1

    async def _start_pod(self) -> None:
        self.serial += 1
        name = f"sim-pod-{self.serial}"
        node = self.nodes[self.serial % len(self.nodes)]
        pod = await self.c.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name,
                                         "labels": {"app": "sim"}},
                                         "spec": {"nodeName": node, "containers": [
                                             {"name": "app", "image": "busybox:1", "command": ["sleep", "1d"]}]}},
                                  NS)
        pod["status"] = {"phase": "Running", "podIP": f"10.244.0.{self.serial % 250 + 1}",
                         "conditions": [{"type": "Ready", "status": "True"}]}
        await self.c.update_status(PODS, pod)
        for reason in ("Scheduled", "Started"):
            await self.c.create(EVENTS, {"apiVersion": "v1", "kind": "Event",
                                         "metadata": {"name": f"{name}.{reason.lower()}"},
                                         "involvedObject": {"kind": "Pod", "name": name, "namespace": NS},
                                         "reason": reason, "message": f"{reason} {name}", "type": "Normal"}, NS)
        self.live.append(name)
        self.writes += 4

    async def _replace_pod(self) -> None:
        old = self.live.pop(0)
        await self._start_pod()
        try:
            await self.c.delete(PODS, old, NS, grace_period_seconds=0)
        except ApiError as e:
            if e.code != 404:
                raise
        self.writes += 1


async def simulate(url: str, token: str, etcd_url: str, args: argparse.Namespace) -> dict[str, Any]:
    async with Client(url, token) as c:
        cluster = Cluster(c, args.nodes, args.pods, args.leader_leases)
        await cluster.setup()
        samples = [{"hour": 0, **etcd_figures(etcd_url)}]
        steps_per_hour = int(3600 / TICK)
        wall_per_step = TICK / args.compression
        began = time.monotonic()
        late = 0
        for n in range(1, int(args.hours * steps_per_hour) + 1):
            await cluster.step(n)
            ahead = began + n * wall_per_step - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)  # pacing the simulated clock, not synchronisation
            else:
                late += 1
            if n % steps_per_hour == 0:
                samples.append({"hour": n // steps_per_hour, **etcd_figures(etcd_url)})
        elapsed = time.monotonic() - began
        if samples[-1]["hour"] != args.hours:
            samples.append({"hour": args.hours, **etcd_figures(etcd_url)})
        return {"writes": cluster.writes, "wall_seconds": round(elapsed, 1),
                "achieved_compression": round(args.hours * 3600 / elapsed, 1),
                "steps_behind_schedule": late, "samples": samples,
                "before": samples[0], "after": samples[-1]}


def run_mode(compaction: bool, args: argparse.Namespace) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="pkb-etcd-")
    etcd = start_etcd(tmp)
    interval = f"{300 / args.compression:.3f}s" if compaction else "0"
    server = start_apiserver(tmp, etcd.url, ["--etcd-compaction-interval", interval,
                                             "--event-ttl", f"{3600 / args.compression:.3f}s"])
    try:
        result = asyncio.run(simulate(server.url, server.token, etcd.url, args))
        return {"compaction_interval": interval, **result}
    finally:
        _stop(server.proc)
        _stop(etcd.proc)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", type=float, default=6.0, help="simulated hours")
    p.add_argument("--compression", type=float, default=120.0, help="simulated seconds per wall second")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--pods", type=int, default=30)
    p.add_argument("--leader-leases", type=int, default=2)
    args = p.parse_args()
    with_compaction = run_mode(True, args)
    without = run_mode(False, args)
    print(json.dumps({
        "simulated_hours": args.hours, "compression": args.compression, "nodes": args.nodes, "pods": args.pods,
        "leader_leases": args.leader_leases,
        "with_compaction": with_compaction, "without_compaction": without,
        "db_size_after_bytes": {"with": with_compaction["after"]["db_size_bytes"],
                                "without": without["after"]["db_size_bytes"]},
        "history_revisions_after": {"with": with_compaction["after"]["history_revisions"],
                                    "without": without["after"]["history_revisions"]},
    }, indent=2))


if __name__ == "__main__":
    main()
