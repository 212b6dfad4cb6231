"""Watch cache byte bound: apiserver RSS while large ConfigMaps are rewritten, with the history bounded by bytes
(`--watch-cache-max-bytes`, default 32Mi) and with the bound out of the way (events only, up to 10,000 per
resource), each on its own etcd + apiserver.

Prints one JSON document (RSS in MiB after each round of writes, and the peak); figures only, nothing passes
or fails on them.

    .venv/bin/python -m bench.watchcache_bytes [--objects 20] [--rounds 50] [--size-kib 100]
"""
from __future__ import annotations

import asyncio
from typing import Any

from bench.common import control_plane, parse_flags, report, status_mib
from pklib.client import Client
from pklib.resources import CONFIGMAPS


async def churn(client: Client, objects: int, rounds: int, size: int, pid: int) -> list[float | None]:
    payload = "x" * size
    for i in range(objects):
        await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"big-{i}"},
                                         "data": {"v": payload}}, "default")
    rss = [status_mib(pid)]
    for r in range(rounds):
        for i in range(objects):
            await client.patch(CONFIGMAPS, f"big-{i}", {"data": {"v": payload, "round": str(r)}}, "default")
        rss.append(status_mib(pid))
    return rss


def run(max_bytes: str, objects: int, rounds: int, size: int) -> dict[str, Any]:
    with control_plane("pkb-wcbytes-", ["--watch-cache-max-bytes", max_bytes]) as cp:
        async def go() -> list[float | None]:
            async with Client(cp.api.url, cp.api.token) as c:
                return await churn(c, objects, rounds, size, cp.api.proc.pid)
        rss = asyncio.run(go())
        return {"watch_cache_max_bytes": max_bytes, "rss_mib_after_each_round": rss,
                "peak_rss_mib": status_mib(cp.api.proc.pid, "VmHWM")}


def main() -> int:
    flags = parse_flags(__doc__, objects=20, rounds=50, size_kib=100)
    size = int(flags.size_kib) * 1024
    written = flags.objects * (flags.rounds + 1) * size
    return report({"event_json_written_mib": round(written / 2**20, 1),
                   "bounded": run("32Mi", flags.objects, flags.rounds, size),
                   "events_only": run("1Ti", flags.objects, flags.rounds, size)})


if __name__ == "__main__":
    raise SystemExit(main())
