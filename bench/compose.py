"""`pkctl compose up` vs `podman-compose up` of the same 3-service Compose file on this machine, in the same run.

    .venv/bin/python bench/compose.py [--rounds 3] [--install] [--no-podman]

A fresh local cluster (`pkctl cluster up`) builds pkube's busybox image; `pkctl image save` writes it to an archive
and `podman load` gives podman the very same image, so neither side pulls anything. The project: three busybox httpd
services, each publishing a host port, one with a named volume. Each round, alternating: `pkctl compose up -d`
until every service answers on its published port on 127.0.0.1, `pkctl compose down -v`; then `podman-compose up -d`
until the same, `podman-compose down -v`. Before every `up` no port may answer (the other side's `down` is complete).

Prints one JSON document: per side the `up -d` wall time, the time to all services answering and the `down -v`
time (min/median/max and every round), the ratio podman/pkube of the medians, and what podman left on the host
after the bench's own cleanup (nftables tables and chains, links), compared with before.

podman and podman-compose come from Debian (`apt-get install -y podman podman-compose`); `--install` runs that when
they are missing, otherwise the bench says so and exits 1. podman's containers, networks and volumes of the
project are removed by label, the loaded image if podman did not have it before.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.helpers import local_cluster, run  # noqa: E402
from tests.util import free_port, unique  # noqa: E402

IMAGE = "pkube.local/busybox:latest"
PROJECT = """
services:
  web:
    image: {image}
    command: ["sh", "-c", "mkdir -p /w && echo web > /w/index.html && exec httpd -f -p 3000 -h /w"]
    ports: ["{web}:3000"]
    depends_on: [api]
  api:
    image: {image}
    command: ["sh", "-c", "mkdir -p /w && echo api > /w/index.html && exec httpd -f -p 8000 -h /w"]
    ports: ["{api}:8000"]
    depends_on: [db]
  db:
    image: {image}
    command: ["sh", "-c", "echo db > /data/index.html && exec httpd -f -p 5432 -h /data"]
    ports: ["{db}:5432"]
    volumes: ["data:/data"]
volumes:
  data: {{}}
"""
LABEL = "io.podman.compose.project"
PODMAN_TABLES = {"filter", "nat", "mangle", "raw", "security"}  # iptables-nft's
BASE_CHAINS = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
APT = ["apt-get", "install", "-y", "podman", "podman-compose"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds, each pkube then podman (default 3)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for all services to answer (default 120)")
    p.add_argument("--install", action="store_true", help="apt-get install podman podman-compose if missing")
    p.add_argument("--no-podman", action="store_true", help="measure pkube only")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench.compose: {what} not within {timeout:.0f} s")
        time.sleep(0.05)


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    began = time.monotonic()
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return time.monotonic() - began


def out(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120).stdout


def podman_ready(install: bool) -> str | None:
    """None when podman and podman-compose are there (installed now with `install`), else why not."""
    if shutil.which("podman") and shutil.which("podman-compose"):
        return None
    if not install:
        return f"podman/podman-compose are not installed: run `{' '.join(APT)}` (or pass --install)"
    subprocess.run(APT, check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                   stdout=subprocess.DEVNULL)
    return None


def podman_conf(path: Path) -> Path:
    """A containers.conf for this run: podman's default ulimits (nofile 1048576, nproc 4194304) are above what
    this machine lets a container set ("error setting rlimits ... operation not permitted"); open files get the
    host's hard limit, as pkube's kubelet gives its containers, and processes 32768."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
    path.write_text(f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n')
    return path


def podman_cleanup(project: str) -> None:
    """Remove podman's containers, networks and volumes of the project, found by podman-compose's label."""
    label = f"label={LABEL}={project}"
    ids = out("podman", "ps", "-aq", "--filter", label).split()
    if ids:
        out("podman", "rm", "-f", "-t", "0", *ids)
    nets = out("podman", "network", "ls", "-q", "--filter", label).split()
    if nets:
        out("podman", "network", "rm", "-f", *nets)
    vols = out("podman", "volume", "ls", "-q", "--filter", label).split()
    if vols:
        out("podman", "volume", "rm", "-f", *vols)


def host_state() -> dict[str, list[str]]:
    """What podman may leave on the host: the nftables tables iptables-nft (CNI) or netavark make, with their
    chains, and its bridges and veths (other tables and links are pkube's, and other test runs' on this machine)."""
    tables = [t for t in out("nft", "list", "tables").splitlines()
              if t.split()[2] in PODMAN_TABLES or "netavark" in t or "podman" in t]
    chains: list[str] = []
    for table in tables:
        family, name = table.split()[1:3]
        chains += [f"{family} {name} {ln.split()[1]}" for ln in out("nft", "list", "table", family, name).splitlines()
                   if ln.strip().startswith("chain ")]
    links = [n for n in os.listdir("/sys/class/net") if n.startswith(("cni-", "podman", "veth"))]
    return {"nft_tables": tables, "nft_chains": chains, "links": sorted(links)}


def remove_new_tables(tables: list[str], chains: list[str]) -> list[str]:
    """Delete the tables the run created (`tables`, absent before it) when every chain in them is a base chain,
    CNI's or netavark's (their portmap/firewall rules stay behind through iptables-nft); returns those deleted."""
    removed = []
    for table in tables:
        family, name = table.split()[1:3]
        own = [c.split()[2] for c in chains if c.startswith(f"{family} {name} ")]
        if all(c in BASE_CHAINS or c.startswith(("CNI-", "NETAVARK")) for c in own):
            if subprocess.run(["nft", "delete", "table", family, name]).returncode == 0:
                removed.append(table)
    return removed


def summary(values: list[float]) -> dict[str, object]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3), "all": [round(v, 3) for v in values]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    why_not = None if args.no_podman else podman_ready(args.install)
    if why_not:
        print(f"bench.compose: {why_not}", file=sys.stderr)
        return 1
    sides = ["pkube"] if args.no_podman else ["pkube", "podman"]
    figures: dict[str, dict[str, list[float]]] = {
        s: {"up_seconds": [], "all_answering_seconds": [], "down_seconds": []} for s in sides}
    before = host_state()
    tmp = Path(tempfile.mkdtemp(prefix="pkb-compose-"))
    name = unique("pkb").replace("-", "")[-10:]
    loaded = False
    left: dict[str, list[str]] = {}
    versions: dict[str, str] = {}
    os.environ["CONTAINERS_CONF"] = str(podman_conf(tmp / "containers.conf"))  # every podman command of the run
    try:
        with local_cluster() as cluster:
            images = str(cluster.home / "images")
            run("image", "build-busybox", "--root", images, timeout=300)
            ports = {"web": free_port(), "api": free_port(), "db": free_port()}
            project = tmp / name
            project.mkdir()
            (project / "docker-compose.yml").write_text(PROJECT.format(image=IMAGE, **ports))
            env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
            commands = {"pkube": [sys.executable, "-m", "pkctl.main", "compose", "-p", name],
                        "podman": ["podman-compose", "-p", name]}
            if "podman" in sides:
                archive = tmp / "busybox.tar"
                run("image", "save", "--root", images, "-o", str(archive), IMAGE, timeout=120)
                loaded = subprocess.run(["podman", "image", "exists", IMAGE]).returncode != 0
                timed(["podman", "load", "-i", str(archive)], tmp, env)
            for _ in range(args.rounds):
                for side in sides:
                    poll(lambda: not any(answers(p) for p in ports.values()), 60, f"{side}: ports free before up")
                    f = figures[side]
                    began = time.monotonic()
                    f["up_seconds"].append(timed([*commands[side], "up", "-d"], project, env))
                    poll(lambda: all(answers(p) for p in ports.values()), args.timeout,
                         f"{side}: all services answering")
                    f["all_answering_seconds"].append(time.monotonic() - began)
                    f["down_seconds"].append(timed([*commands[side], "down", "-v"], project, env))
                    if side == "podman":
                        podman_cleanup(name)
    finally:
        if "podman" in sides:
            podman_cleanup(name)
            if loaded:
                out("podman", "rmi", "-f", IMAGE)
            versions = {"podman": out("podman", "--version").strip(),
                        "podman-compose": next((ln.split()[-1] for ln in out("podman-compose", "--version")
                                                .splitlines() if ln.startswith("podman-composer")), ""),
                        "network_backend": out("podman", "info", "--format", "{{.Host.NetworkBackend}}").strip()}
            after = host_state()
            left = {k: [v for v in after[k] if v not in before[k]] for k in after}
            left["nft_tables_removed_by_bench"] = remove_new_tables(left["nft_tables"], left["nft_chains"])
        shutil.rmtree(tmp, ignore_errors=True)
    result: dict[str, object] = {"services": 3, "rounds": args.rounds,
                                 "project": "3 busybox httpd services, each publishing a host port, one named volume"}
    for side in sides:
        result[side] = {k: summary(v) for k, v in figures[side].items()}
    if "podman" in sides:
        result["versions"] = versions
        result["ratio_podman_over_pkube"] = {
            k: round(statistics.median(figures["podman"][k]) / statistics.median(figures["pkube"][k]), 2)
            for k in figures["pkube"]}
        result["podman_left_on_host"] = left
        result["notes"] = ("podman-compose 1.0.3 sleeps 1 s after each `podman run` of `up -d` (its podman.run's "
                           "sleep=1) and `down` stops with -t 1 then leaves the project network, which the bench "
                           "removes untimed; pkube's `down -v` also deletes the namespace and PVC")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
