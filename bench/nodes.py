"""Multi-node local cluster benchmark: `pkctl cluster up --nodes 3` time until every node is Ready, the
RSS of one extra node's processes (its kubelet, which hosts its proxy, in the node's network namespace), how
long `pkctl cluster node add` (until the new node is Ready) and `pkctl cluster node remove` (drain included) take,
and for how long the API did not answer meanwhile (a GET every 0.1 s: the longest run of failures, and how many).

    .venv/bin/python bench/nodes.py [--nodes 3]

Prints one JSON document. Figures only; nothing passes or fails on time. Uses a temporary home with its
own ports and removes it (`cluster down --purge`) at the end.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import local_cluster, parse_flags, pkctl, report  # noqa: E402
from pkctl.cluster.components import api_get, node_ready  # noqa: E402
from pkctl.cluster.home import ClusterConfig, Home  # noqa: E402
from pkctl.cluster.procs import ProcRecord  # noqa: E402


def while_api_watched(home: Home, cfg: ClusterConfig, action: Callable[[], float]) -> dict[str, Any]:
    """Run action (returns its seconds) while a thread GETs the API every 0.1 s; the longest outage it saw."""
    done, failed_at, longest, failures = threading.Event(), [0.0], [0.0], [0]

    def poll() -> None:
        while not done.is_set():
            now = time.monotonic()
            if api_get(home, cfg, "/api/v1/namespaces/default", timeout=1.0) is None:
                failures[0] += 1
                failed_at[0] = failed_at[0] or now
            elif failed_at[0]:
                longest[0], failed_at[0] = max(longest[0], now - failed_at[0]), 0.0
            done.wait(0.1)
    t = threading.Thread(target=poll, daemon=True)
    t.start()
    took = action()
    done.set()
    t.join()
    return {"s": took, "api_longest_outage_s": round(longest[0], 2), "api_failed_requests": failures[0]}


def main() -> int:
    args = parse_flags(__doc__, nodes=3)
    result: dict[str, object] = {"nodes": args.nodes}
    with local_cluster("pkbench-nodes-") as home:
        began = time.monotonic()
        pkctl("cluster", "up", "--home", str(home.root), "--nodes", str(args.nodes), "--wait-timeout", "180")
        result["up_s"] = round(time.monotonic() - began, 2)
        cfg = home.load_config()
        while True:
            nodes = (api_get(home, cfg, "/api/v1/nodes") or {}).get("items", [])
            if len([n for n in nodes if node_ready(n)]) == args.nodes:
                break
            if time.monotonic() - began > 180:
                raise SystemExit("not every node became Ready within 180 s")
            time.sleep(0.1)
        result["all_nodes_ready_s"] = round(time.monotonic() - began, 2)
        w = cfg.workers[0]
        rss = {}
        # the node's processes: its kubelet's, which hosts its proxy (a member without a process of its own)
        for name in (w.component, w.proxy_component):
            rec = ProcRecord.from_state(home.read_state(name))
            if rec is not None:
                rss[name] = round((rec.rss_bytes() or 0) / 2**20, 1)
        result["worker_rss_mb"] = rss
        result["worker_rss_total_mb"] = round(sum(rss.values()), 1)
        add = while_api_watched(home, cfg, lambda: pkctl("cluster", "node", "add", "--home", str(home.root),
                                                         "--wait", "180s"))
        result["node_add_s"] = add.pop("s")  # `node add` waits until the new node is Ready
        result["node_add_api"] = add
        added = home.load_config().workers[-1].name
        remove = while_api_watched(home, cfg, lambda: pkctl("cluster", "node", "remove", added, "--home",
                                                            str(home.root)))
        result["node_remove_s"] = remove.pop("s")
        result["node_remove_api"] = remove
    return report(result, indent=1)


if __name__ == "__main__":
    sys.exit(main())
