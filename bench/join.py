"""`pkctl cluster join` benchmark: a fresh "machine" (a network namespace on the cluster network of a
`pkctl cluster up --nodes 3`) joins with a bootstrap token; the time `token create` takes, the time `join` takes
until the node is Ready (TLS bootstrap, image import, kubelet and proxy healthy), and the RSS of the joined
node's processes (supervisor, kubelet, proxy). `--mode control-plane`: the machine joins as a control-plane
member instead (`token create --control-plane`, `join --control-plane --certificate-key`: certificates
downloaded and decrypted, etcd learner added, started, promoted, apiserver and controller-manager + scheduler
healthy), and the RSS of its processes (supervisor, etcd, apiserver, control-plane).

    .venv/bin/python bench/join.py [--mode control-plane]

Prints one JSON document. Figures only; nothing passes or fails on time. Uses temporary homes and removes
them (`cluster down --purge`) at the end.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import local_cluster, parse_flags, pkctl, report  # noqa: E402
from pkctl.cluster.home import Home  # noqa: E402
from pkctl.cluster.procs import ProcRecord  # noqa: E402
from tests.e2e.helpers import joining_machine, on_machine  # noqa: E402


def main() -> int:
    flags = parse_flags(__doc__, mode="worker")
    member = flags.mode == "control-plane"
    result: dict[str, object] = {"mode": flags.mode}
    with local_cluster("pkbench-join-") as home:
        pkctl("cluster", "up", "--home", str(home.root), "--nodes", "3", "--wait-timeout", "180")
        began = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "pkctl.main", "cluster", "token", "create", "--home",
                            str(home.root), *(["--control-plane"] if member else [])], cwd=ROOT,
                           capture_output=True, text=True, timeout=60, check=True)
        result["token_create_s"] = round(time.monotonic() - began, 2)
        url, token, ca_hash = p.stdout.split()[3:8:2]
        extra = p.stdout.split()[8:]  # --control-plane --certificate-key HEX
        node_home = Home(Path(tempfile.mkdtemp(prefix="pkbench-joined-")) / "node")
        with joining_machine(asdict(home.load_config())) as (netns, _):
            try:
                began = time.monotonic()
                j = on_machine(netns, "cluster", "join", url, "--token", token, "--ca-hash", ca_hash, "--home",
                               str(node_home.root), "--node-name", "bench-joined", *extra)
                if j.returncode != 0:
                    raise SystemExit(f"join failed:\n{j.stdout}\n{j.stderr}")
                result["join_until_ready_s"] = round(time.monotonic() - began, 2)
                rss = {}
                names = (("supervisor", "etcd-bench-joined", "apiserver-bench-joined", "control-plane-bench-joined")
                         if member else ("supervisor", "kubelet", "proxy"))
                for name in names:
                    rec = ProcRecord.from_state(node_home.read_state(name))
                    rss[name] = round(((rec.rss_bytes() if rec else 0) or 0) / 2**20, 1)
                result["joined_node_rss_mb"] = rss
                result["joined_node_rss_total_mb"] = round(sum(rss.values()), 1)
            finally:
                if node_home.exists():
                    on_machine(netns, "cluster", "down", "--purge", "--home", str(node_home.root))
                shutil.rmtree(node_home.root.parent, ignore_errors=True)
    return report(result, indent=1)


if __name__ == "__main__":
    sys.exit(main())
