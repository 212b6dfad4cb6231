"""Pod-to-pod networking on one node vs across nodes, for each pod network backend (host-gw, vxlan): a 2-node local
cluster (`pkctl cluster up --nodes 2 --network-backend B`) with a client pod and a server pod on the first node and
a server pod on the second; from the client pod's network namespace:
- latency: REQUESTS small requests (64 bytes echoed back) one after the other on one TCP connection (netperf's
  TCP_RR), p50/p99/mean in microseconds;
- bulk throughput: MEGABYTES of zeros sent to a sink, until the server has read them all (MB/s, median of ROUNDS).
The servers are busybox `nc` (an echo server `nc -ll -e cat`, a sink `nc -ll -e sh -c 'cat >/dev/null'`); the
client is a small Python program run with nsenter in the client pod's network namespace (the busybox image has no
Python; the packets take the pod's own path: its veth, the node's bridge and routes, the tunnel).

    .venv/bin/python bench/crossnode.py [--requests 1000] [--megabytes 256] [--rounds 3] [--backends host-gw,vxlan]

Prints one JSON document. Figures only; nothing passes or fails on them. Each backend gets a temporary home
removed at the end (`cluster down --purge`).
"""
from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ECHO_PORT, SINK_PORT, REQUEST = 7000, 9000, 64
SERVER = (f"nc -ll -p {ECHO_PORT} -e cat & "
          f"exec nc -ll -p {SINK_PORT} -e sh -c 'cat > /dev/null'")


# --- the client, run inside the client pod's network namespace ------------------------------------------------

def _connect(ip: str, port: int) -> socket.socket:
    deadline = time.monotonic() + 30
    while True:
        try:
            return socket.create_connection((ip, port), timeout=10)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def client_rr(ip: str, requests: int) -> dict[str, Any]:
    with _connect(ip, ECHO_PORT) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        payload, took = b"x" * REQUEST, []
        for i in range(requests + 20):  # the first 20 warm up (ARP, caches), not counted
            began = time.perf_counter()
            s.sendall(payload)
            got = 0
            while got < REQUEST:
                chunk = s.recv(REQUEST - got)
                if not chunk:
                    raise SystemExit("the echo server closed the connection")
                got += len(chunk)
            if i >= 20:
                took.append((time.perf_counter() - began) * 1e6)
    took.sort()
    return {"requests": requests, "p50_us": round(took[len(took) // 2], 1),
            "p99_us": round(took[min(len(took) - 1, int(len(took) * 0.99))], 1),
            "mean_us": round(statistics.fmean(took), 1)}


def client_bulk(ip: str, megabytes: int) -> dict[str, Any]:
    block = b"\0" * (1 << 20)
    with _connect(ip, SINK_PORT) as s:
        s.settimeout(120)
        began = time.perf_counter()
        for _ in range(megabytes):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # EOF once the sink has read everything and exited
        seconds = time.perf_counter() - began
    return {"megabytes": megabytes, "seconds": round(seconds, 3), "MBps": round(megabytes / seconds, 1)}


def client_main(argv: list[str]) -> int:
    mode, ip, count = argv
    print(json.dumps(client_rr(ip, int(count)) if mode == "rr" else client_bulk(ip, int(count))))
    return 0


# --- the benchmark ------------------------------------------------------------------------------------------

def run_client(netns: str, mode: str, ip: str, count: int) -> dict[str, Any]:
    p = subprocess.run(["nsenter", f"--net=/run/netns/{netns}", sys.executable, __file__, "--client", mode, ip,
                        str(count)], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"client {mode} to {ip} failed:\n{p.stderr}")
    result: dict[str, Any] = json.loads(p.stdout)
    return result


def netns_of(ip: str) -> str:
    """The named network namespace holding `ip` (a pod's: the kubelet names them under /run/netns)."""
    from pyroute2 import IPRoute
    for name in sorted(p.name for p in Path("/run/netns").iterdir()):
        try:
            with IPRoute(netns=name) as ipr:
                if any(a.get_attr("IFA_ADDRESS") == ip for a in ipr.get_addr(family=socket.AF_INET)):
                    return name
        except OSError:
            continue
    raise SystemExit(f"no network namespace holds {ip}")


def pod(name: str, node: str, command: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "pkube.local/busybox:latest",
                                     "command": ["sh", "-c", command]}]}}


def measure(backend: str, args: Any) -> dict[str, Any]:
    from bench.common import local_cluster, pkctl
    from pkctl.cluster.components import api_get
    with local_cluster(f"pkbench-xnode-{backend}-") as home:
        pkctl("cluster", "up", "--home", str(home.root), "--nodes", "2", "--network-backend", backend,
              "--wait-timeout", "180")
        cfg = home.load_config()
        first, second = cfg.node_name, cfg.workers[0].name
        manifest = home.root / "crossnode.json"
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            pod("client", first, "exec sleep 100000"), pod("near", first, SERVER), pod("far", second, SERVER)]}))
        pkctl("--kubeconfig", str(home.kubeconfig), "apply", "-f", str(manifest))
        deadline = time.monotonic() + 180
        while True:
            items = (api_get(home, cfg, "/api/v1/namespaces/default/pods") or {}).get("items", [])
            ips = {p["metadata"]["name"]: p["status"].get("podIP") for p in items
                   if p["status"].get("phase") == "Running" and p["status"].get("podIP")}
            if len(ips) == 3:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the pods did not all run within 180 s: {ips}")
            time.sleep(0.2)
        client_ns = netns_of(ips["client"])
        out: dict[str, Any] = {"pod_routing": cfg.pod_routing}
        for where, server in (("same_node", "near"), ("cross_node", "far")):
            rr = run_client(client_ns, "rr", ips[server], args.requests)
            bulk = [run_client(client_ns, "bulk", ips[server], args.megabytes) for _ in range(args.rounds)]
            out[where] = {"latency": rr, "bulk_MBps_median": statistics.median(b["MBps"] for b in bulk),
                          "bulk_rounds": bulk}
        if backend == "vxlan":
            out["vxlan_device_mtu"] = _mtu(f"pkube.{cfg.vxlan_vni}")
        return out


def _mtu(device: str) -> int | None:
    try:
        return int(Path(f"/sys/class/net/{device}/mtu").read_text())
    except OSError:
        return None


def main() -> int:
    if sys.argv[1:2] == ["--client"]:
        return client_main(sys.argv[2:])
    from bench.common import parse_flags, report
    args = parse_flags(__doc__, requests=1000, megabytes=256, rounds=3, backends="host-gw,vxlan")
    result: dict[str, Any] = {"requests": args.requests, "request_bytes": REQUEST, "bulk_megabytes": args.megabytes,
                              "rounds": args.rounds, "client_node": "first (the host)", "backends": {}}
    for backend in filter(None, args.backends.split(",")):
        result["backends"][backend] = measure(backend, args)
    return report(result, indent=1)


if __name__ == "__main__":
    sys.exit(main())
