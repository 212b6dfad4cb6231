"""Highly available control plane benchmark: `pkctl cluster up --control-planes 3` time to ready, the
RSS of every process of it, and failover: the time from SIGKILL of an apiserver, or of the etcd
leader, to the first successful write through the cluster's API address (the supervisor's balancer).

    .venv/bin/python bench/ha.py [--rounds 3] [--idle-seconds 20]

Prints one JSON document. Figures only; nothing passes or fails on time. Uses a temporary home
with its own ports, and removes it (`cluster down --purge`) at the end. Writes are ConfigMap
creates with the admin token, polled every 20 ms (each attempt times out after 2 s).
"""
from __future__ import annotations

import json
import signal
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import idle_usage, local_cluster, parse_flags, pkctl, report  # noqa: E402
from pkctl.cluster.components import components, probe_etcd  # noqa: E402
from pkctl.cluster.home import ClusterConfig, Home  # noqa: E402
from pkctl.cluster.procs import ProcRecord  # noqa: E402


def healthy(home: Home) -> bool:
    return subprocess.run([sys.executable, "-m", "pkctl.main", "cluster", "status", "--home", str(home.root)],
                          cwd=ROOT, capture_output=True, timeout=60).returncode == 0


def wait_healthy(home: Home, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(home):
        if time.monotonic() > deadline:
            raise SystemExit(f"the cluster was not healthy again within {timeout:.0f} s")
        time.sleep(0.5)


def processes(home: Home, cfg: ClusterConfig) -> dict[str, ProcRecord]:
    out = {}
    for name in ["supervisor", *(c.name for c in components(cfg))]:
        rec = ProcRecord.from_state(home.read_state(name))
        if rec and rec.alive():
            out[name] = rec
    return out


class Writer:
    def __init__(self, home: Home, cfg: ClusterConfig):
        self.url = f"{cfg.api_url}/api/v1/namespaces/default/configmaps"
        self.token = home.token()
        self.ctx = ssl.create_default_context(cafile=str(home.pki.ca_cert)) if cfg.tls else None
        self.n = 0

    def write(self) -> bool:
        self.n += 1
        body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": f"bench-{time.time_ns()}-{self.n}"}}).encode()
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=2, context=self.ctx) as r:
                return r.status == 201
        except OSError:
            return False

    def until_write(self, began: float, timeout: float = 60) -> float:
        while time.monotonic() - began < timeout:
            if self.write():
                return round(time.monotonic() - began, 3)
            time.sleep(0.02)
        raise SystemExit(f"no successful write within {timeout:.0f} s")


def etcd_leader(home: Home, cfg: ClusterConfig) -> str:
    """The etcd member that leads, from a member's v3 JSON gateway."""
    pki = home.pki
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.cert("etcd-healthcheck-client")), str(pki.key("etcd-healthcheck-client")))
    for m in cfg.members:
        if not probe_etcd(home, cfg, 0.0, m)[0]:
            continue
        docs = []
        for path in ("/v3/maintenance/status", "/v3/cluster/member/list"):
            req = urllib.request.Request(m.etcd_url + path, data=b"{}", method="POST")
            with urllib.request.urlopen(req, timeout=3, context=ctx) as r:
                docs.append(json.loads(r.read()))
        names = {x["ID"]: x["name"] for x in docs[1]["members"]}
        return names[docs[0]["leader"]]
    raise SystemExit("no etcd member answers")


def kill(home: Home, component: str) -> float:
    rec = ProcRecord.from_state(home.read_state(component))
    if rec is None or not rec.signal(signal.SIGKILL):
        raise SystemExit(f"{component} is not running")
    return time.monotonic()


def summary(times: list[float]) -> dict[str, Any]:
    return {"each_s": times, "median_s": round(statistics.median(times), 3), "max_s": max(times)}


def main() -> int:
    args = parse_flags(__doc__, rounds=3, idle_seconds=20.0)
    result: dict[str, Any] = {"benchmark": "ha", "control_planes": 3}
    with local_cluster("pkbench-ha-") as home:
        result["up_cold_s"] = pkctl("cluster", "up", "--home", str(home.root), "--control-planes", "3")
        cfg = home.load_config()
        time.sleep(10)  # let start-up work pass before measuring memory and idle CPU
        result.update(idle_usage(processes(home, cfg), args.idle_seconds))
        writer = Writer(home, cfg)
        api, leader = [], []
        for i in range(args.rounds):
            victim = cfg.members[i % len(cfg.members)].name
            api.append(writer.until_write(kill(home, f"apiserver-{victim}")))
            wait_healthy(home)
            leader.append(writer.until_write(kill(home, f"etcd-{etcd_leader(home, cfg)}")))
            wait_healthy(home)
        result["apiserver_sigkill_to_first_write"] = summary(api)
        result["etcd_leader_sigkill_to_first_write"] = summary(leader)
    return report(result, indent=1)


if __name__ == "__main__":
    sys.exit(main())
