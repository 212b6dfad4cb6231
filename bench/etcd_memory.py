"""etcd's RSS under a stream of writes, by --snapshot-count (figures only; nothing passes or fails).

etcd keeps every raft entry since its last snapshot in memory (and 5,000 more for followers to catch up): at its
default of 100,000 entries a busy cluster's etcd grows for 100,000 writes before it drops back, which the soak
bench (bench/soak.py) showed as a steady climb. kubeadm passes --snapshot-count=10000, as `pkctl cluster up`
does now (pkctl/cluster/components.py ETCD_SNAPSHOT_COUNT). For each count, a fresh lone etcd takes `--writes`
overwrites of 2 KiB values over 500 keys (about a pod's size), compacted every 5,000 revisions as the
apiserver's maintenance would; its RSS is sampled after each 5,000.

    .venv/bin/python -m bench.etcd_memory [--writes 60000] [--counts 100000,10000]
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aetcd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import parse_flags, report, status_mib  # noqa: E402
from tests.support.controlplane import _stop, _wait_http  # noqa: E402
from tests.util import free_port  # noqa: E402

BATCH = 5_000
KEYS = 500
VALUE = os.urandom(1024).hex().encode()  # 2 KiB


async def write(port: int, writes: int, pid: int) -> list[tuple[int, float | None]]:
    samples: list[tuple[int, float | None]] = []
    async with aetcd.Client(host="127.0.0.1", port=port) as client:
        limit = asyncio.Semaphore(32)

        async def put(i: int) -> int:
            async with limit:
                return int((await client.put(f"/bench/{i % KEYS}".encode(), VALUE)).header.revision)

        compact_to = 0
        for start in range(0, writes, BATCH):
            revision = max(await asyncio.gather(*(put(i) for i in range(start, min(writes, start + BATCH)))))
            if compact_to:
                await client.compact(compact_to)
            compact_to = revision
            samples.append((min(writes, start + BATCH), status_mib(pid)))
    return samples


def run(count: int, writes: int) -> dict[str, object]:
    tmp = tempfile.mkdtemp(prefix="pkbench-etcdmem-")
    client, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    log = os.path.join(tmp, "etcd.log")
    proc = subprocess.Popen(["etcd", "--name", "m", "--data-dir", os.path.join(tmp, "data"),
                             "--listen-client-urls", url, "--advertise-client-urls", url,
                             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                             "--initial-cluster", f"m={peer_url}", "--snapshot-count", str(count),
                             "--log-level", "warn"], stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        _wait_http(url + "/health", proc, "etcd", log)
        samples = asyncio.run(write(client, writes, proc.pid))
    finally:
        _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    rss = [mb for _, mb in samples if mb is not None]
    return {"snapshot_count": count, "rss_mb_after_writes": [[n, mb] for n, mb in samples],
            "rss_mb_peak": max(rss), "rss_mb_last": rss[-1]}


def main() -> int:
    flags = parse_flags(__doc__, writes=60000, counts="100000,10000")
    counts = [int(c) for c in flags.counts.split(",")]
    return report({"benchmark": "etcd_memory", "writes": flags.writes, "value_bytes": len(VALUE), "keys": KEYS,
                   "runs": [run(c, flags.writes) for c in counts]})


if __name__ == "__main__":
    sys.exit(main())
