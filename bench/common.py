"""What the benchmarks share: a temporary control plane (etcd + apiserver) or local cluster (`pkctl cluster up`)
that is always torn down, running pkctl, per-process memory and CPU figures, and printing the one JSON document."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pkctl.cluster.home import Home  # noqa: E402
from pkctl.cluster.procs import ProcRecord  # noqa: E402
from pkctl.cluster.components import components, probe_etcd  # noqa: E402
from pkctl.cluster.home import ClusterConfig, Member  # noqa: E402
from tests.support.controlplane import (ApiServer, Etcd, _stop, make_test_pki, start_apiserver,  # noqa: E402
                                        start_etcd)
from tests.util import free_port  # noqa: E402


def parse_flags(doc: str | None, **defaults: float | str | bool) -> argparse.Namespace:
    """The benchmark's flags, one per keyword (`idle_seconds=60.0` is `--idle-seconds`, a float; `keep_logs=False`
    is a switch, `--keep-logs`)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        if isinstance(default, bool):
            p.add_argument("--" + name.replace("_", "-"), action="store_true")
        else:
            p.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    return p.parse_args()


def has_kubectl(bench: str) -> bool:
    """Whether kubectl is on PATH (the benchmarks that compare with it say so and exit 1 when not)."""
    if shutil.which("kubectl") is None:
        print(f"bench.{bench}: kubectl is not on PATH, and this benchmark runs it", file=sys.stderr)
        return False
    return True


@dataclass
class ControlPlane:
    tmp: str
    etcd: Etcd  # the first member
    api: ApiServer
    # With `etcd_members`: every member by name (cp1, cp2, ...), and how to reach them (bench.ha.etcd_leader)
    members: dict[str, Etcd] | None = None
    home: Home | None = None
    cluster: ClusterConfig | None = None


def start_etcd_members(tmp: str, n: int, timeout: float = 60) -> tuple[Home, ClusterConfig, dict[str, Etcd]]:
    """An etcd cluster of `n` members as `pkctl cluster up --control-planes N` runs it (the same flags: client
    and peer TLS with certificates of tmp/pki's CA, the test PKI), data under tmp/etcd/cpN; each member's
    process is in the returned dict as soon as it is started, so the caller stops them all even on failure."""
    make_test_pki(tmp)
    home = Home(Path(tmp))
    cfg = ClusterConfig(etcd_client_port=0, etcd_peer_port=0, api_port=0,
                        members=[Member(f"cp{i + 1}", "127.0.0.1", free_port(), free_port(), 0, 0) for i in range(n)])
    procs: dict[str, Etcd] = {}
    etcds = [c for c in components(cfg) if c.binary == "etcd"]
    try:
        for m, c in zip(cfg.members, etcds):
            log = open(os.path.join(tmp, f"{c.name}.log"), "wb")
            proc = subprocess.Popen(["etcd", *c.argv(home, cfg)], stdout=log, stderr=subprocess.STDOUT)
            procs[m.name] = Etcd(m.etcd_url, str(home.etcd_dir(m)), proc)
        deadline = time.monotonic() + timeout
        for m in cfg.members:  # members serve once a quorum has elected a leader
            while not probe_etcd(home, cfg, 0.0, m)[0]:
                if procs[m.name].proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"etcd member {m.name} did not become healthy: see {tmp}/etcd-{m.name}.log")
                time.sleep(0.1)
    except BaseException:
        for e in procs.values():
            _stop(e.proc)
        raise
    return home, cfg, procs


def etcd_client_flags(home: Home) -> list[str]:
    """The apiserver's flags to reach start_etcd_members' TLS etcd (its CA and client certificate)."""
    return ["--etcd-cafile", str(home.pki.ca_cert), "--etcd-certfile", str(home.pki.cert("apiserver-etcd-client")),
            "--etcd-keyfile", str(home.pki.key("apiserver-etcd-client"))]


@contextmanager
def control_plane(prefix: str, api_args: list[str] | None = None, *, start_api: bool = True,
                  keep: bool = False, etcd_members: int = 0, **api_kw: Any) -> Iterator[ControlPlane]:
    """etcd and (unless `start_api` is False) an apiserver in a fresh temp dir; all stopped and removed after
    (the temp dir stays with `keep`, for its logs). `etcd_members` N > 0: an etcd cluster of N TLS members
    (start_etcd_members) instead of one plain-HTTP etcd, and the apiserver is given every member's URL."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    etcds: list[Etcd] = []
    api = None
    try:
        home = cfg = members = None
        if etcd_members:
            home, cfg, members = start_etcd_members(tmp, etcd_members)
            etcds = list(members.values())
            api_args = [*etcd_client_flags(home), *(api_args or [])]
        else:
            etcds = [start_etcd(tmp)]
        if start_api:
            api = start_apiserver(tmp, ",".join(e.url for e in etcds), api_args, **api_kw)
        yield ControlPlane(tmp, etcds[0], api, members, home, cfg)  # type: ignore[arg-type]  # api: see start_api
    finally:
        if api is not None:
            _stop(api.proc)
        for etcd in etcds:
            _stop(etcd.proc)
        if keep:
            print(f"logs in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def cancel_on_sigterm() -> None:
    """SIGTERM cancels the calling task (a benchmark's main coroutine) as Ctrl-C does, so that its `finally`
    blocks and context managers stop every process it started and remove its temp dir (by default SIGTERM
    would end the benchmark at once and leave them running)."""
    task = asyncio.current_task()
    assert task is not None, "call from the benchmark's main coroutine"
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def pkctl(*argv: str) -> float:
    """Run `pkctl ARGV` (the benchmark stops on failure); returns the seconds it took."""
    began = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "pkctl.main", *argv], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"pkctl {' '.join(argv)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return round(time.monotonic() - began, 3)


@contextmanager
def local_cluster(prefix: str) -> Iterator[Home]:
    """A pkube home in a fresh temp dir for `pkctl cluster up --home`; `cluster down --purge` after."""
    home = Home(Path(tempfile.mkdtemp(prefix=prefix)))
    try:
        yield home
    finally:
        if home.exists():
            pkctl("cluster", "down", "--purge", "--home", str(home.root))


def status_mib(pid: int, field: str = "VmRSS") -> float | None:
    """A memory figure of /proc/PID/status in MiB (VmRSS now, VmHWM its peak); None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_times(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of the process itself and of its waited-for children (/proc/PID/stat fields
    14-17); zero once the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def pss_bytes(pid: int) -> int:
    """The process's proportional set size: its RSS with each page shared with other processes (libpython, libssl,
    grpc's library in every pkube process) counted as its share only; the sum over processes is what they use."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def idle_usage(procs: Mapping[str, ProcRecord], seconds: float) -> dict[str, Any]:
    """RSS (and PSS) of each process and the CPU they use over `seconds` of a settled cluster (a fixed measuring
    window)."""
    cpu0 = {n: r.cpu_seconds() or 0.0 for n, r in procs.items()}
    time.sleep(seconds)
    cpu1 = {n: r.cpu_seconds() or 0.0 for n, r in procs.items()}
    rss = {n: round((r.rss_bytes() or 0) / 2**20, 1) for n, r in procs.items()}
    pss = {n: round(pss_bytes(r.pid) / 2**20, 1) for n, r in procs.items()}
    return {"rss_mb": rss, "rss_total_mb": round(sum(rss.values()), 1),
            "pss_mb": pss, "pss_total_mb": round(sum(pss.values()), 1),
            "idle_cpu_percent_of_one_core": round(100 * sum(cpu1[n] - cpu0[n] for n in procs) / seconds, 2),
            "idle_cpu_percent_by_process": {n: round(100 * (cpu1[n] - cpu0[n]) / seconds, 2) for n in procs}}


def start_profiler(path: str | None, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy (the `bench` extra) sampling the apiserver while the pods are bound; the output format follows
    the file name: .svg a flame graph, .json speedscope, anything else py-spy's raw collapsed stacks. PYSPY_RATE
    sets the samples per second (py-spy's default 100 gives a short run few samples)."""
    if not path:
        return None
    fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(os.path.splitext(path)[1], "raw")
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return subprocess.Popen([spy if os.path.exists(spy) else "py-spy", "record", "--nonblocking",
                             "--rate", os.environ.get("PYSPY_RATE", "100"), "--format", fmt, "-o", path,
                             "--pid", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(proc: subprocess.Popen[bytes], path: str) -> str:
    """Stop py-spy (SIGINT makes it write its output) and return the output's absolute path."""
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    return os.path.abspath(path)


def report(result: Mapping[str, Any], indent: int = 2) -> int:
    """Print the benchmark's one JSON document."""
    print(json.dumps(result, indent=indent))
    return 0
