"""The kubelet's CPU per httpGet probe: kubelet/httpprobe.py (h11 on asyncio streams) against an aiohttp
ClientSession doing the same GET (what the prober used before), both in this process on uvloop as the kubelet
runs, against a plain HTTP server in another process on loopback. Each round sends --probes of each, in turn;
min/median/max over the rounds. Prints one JSON document; figures only.

    .venv/bin/python -m bench.probes [--probes 1000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable

import aiohttp
import uvloop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import report  # noqa: E402
from kubelet.httpprobe import probe  # noqa: E402
from tests.util import free_port  # noqa: E402

SERVER = """
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
"""


async def cpu_ms_per_probe(send: Callable[[], Awaitable[bool]], count: int) -> float:
    start = time.process_time()
    for _ in range(count):
        if not await send():
            raise RuntimeError("a probe failed")
    return 1000 * (time.process_time() - start) / count


async def measure(port: int, count: int, rounds: int) -> dict[str, Any]:
    async def with_h11() -> bool:
        return (await probe("127.0.0.1", port, "/", False, [], 1))[0]

    for _ in range(100):  # until the server answers
        if await with_h11():
            break
        await asyncio.sleep(0.05)

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))

    async def with_aiohttp() -> bool:
        async with session.get(f"http://127.0.0.1:{port}/", headers={"User-Agent": "kube-probe/1.32"},
                               timeout=aiohttp.ClientTimeout(total=1), allow_redirects=False, ssl=False) as r:
            await r.read()
            return 200 <= r.status < 400

    figures: dict[str, list[float]] = {"httpprobe_h11": [], "aiohttp_session": []}
    try:
        for _ in range(rounds):
            figures["httpprobe_h11"].append(await cpu_ms_per_probe(with_h11, count))
            figures["aiohttp_session"].append(await cpu_ms_per_probe(with_aiohttp, count))
    finally:
        await session.close()
    out: dict[str, Any] = {"probes_per_round": count, "rounds": rounds}
    for name, values in figures.items():
        out[f"{name}_cpu_ms_per_probe"] = {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
                                           "max": round(max(values), 3)}
    out["h11_over_aiohttp_median"] = round(out["httpprobe_h11_cpu_ms_per_probe"]["median"]
                                           / out["aiohttp_session_cpu_ms_per_probe"]["median"], 2)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--probes", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        return report(uvloop.run(measure(port, args.probes, args.rounds)))
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
