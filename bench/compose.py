"""`pkctl compose` benchmark: a 3-service project (an app built from a Dockerfile, an API and a database with a
named volume, each publishing a port) on a fresh local cluster: `up -d` wall time and time until every service
answers on its published host port, a second `up -d` with nothing to change, `down`, and `down -v`.

    .venv/bin/python bench/compose.py [--runs 3]

Prints one JSON document; figures only. Docker/Podman are not compared here: this machine has no Docker daemon
nor podman, and the images such a comparison would use come from a registry it cannot reach (said in the output).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.helpers import local_cluster, run  # noqa: E402
from tests.util import free_port  # noqa: E402

PROJECT = """
services:
  app:
    build: .
    ports: ["{app}:3000"]
    depends_on: [api]
  api:
    image: pkube.local/busybox:latest
    command: ["sh", "-c", "mkdir -p /w && echo api > /w/index.html && exec httpd -f -p 8000 -h /w"]
    ports: ["{api}:8000"]
    depends_on: [db]
  db:
    image: pkube.local/busybox:latest
    command: ["sh", "-c", "echo db > /data/index.html && exec httpd -f -p 5432 -h /data"]
    ports: ["{db}:5432"]
    volumes: ["data:/data"]
volumes:
  data: {{}}
"""
DOCKERFILE = """FROM pkube.local/busybox:latest
RUN mkdir -p /w && echo app > /w/index.html
CMD ["httpd", "-f", "-p", "3000", "-h", "/w"]
"""


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def compose(kubeconfig: Path, project: Path, *argv: str) -> float:
    began = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "pkctl.main", "compose", *argv], cwd=project, capture_output=True,
                       text=True, timeout=600, env={**os.environ, "KUBECONFIG": str(kubeconfig)})
    if p.returncode != 0:
        raise SystemExit(f"compose {' '.join(argv)} failed:\n{p.stdout}\n{p.stderr}")
    return time.monotonic() - began


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pkb-compose-"))
    results: dict[str, list[float]] = {"up_seconds": [], "all_answering_seconds": [], "up_again_seconds": [],
                                       "down_seconds": [], "down_volumes_seconds": []}
    try:
        with local_cluster() as cluster:
            run("image", "build-busybox", "--root", str(cluster.home / "images"), timeout=300)
            ports = {"app": free_port(), "api": free_port(), "db": free_port()}
            project = tmp / "bench3"
            project.mkdir()
            (project / "docker-compose.yml").write_text(PROJECT.format(**ports))
            (project / "Dockerfile").write_text(DOCKERFILE)
            build = compose(cluster.kubeconfig, project, "build")
            for _ in range(args.runs):
                began = time.monotonic()
                results["up_seconds"].append(compose(cluster.kubeconfig, project, "up", "-d"))
                deadline = time.monotonic() + 120
                while not all(answers(p) for p in ports.values()):
                    if time.monotonic() > deadline:
                        raise SystemExit("services did not answer within 120 s")
                    time.sleep(0.05)
                results["all_answering_seconds"].append(time.monotonic() - began)
                results["up_again_seconds"].append(compose(cluster.kubeconfig, project, "up", "-d"))
                results["down_seconds"].append(compose(cluster.kubeconfig, project, "down"))
            compose(cluster.kubeconfig, project, "up", "-d")
            results["down_volumes_seconds"].append(compose(cluster.kubeconfig, project, "down", "-v"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out: dict[str, object] = {"services": 3, "runs": args.runs, "build_seconds": round(build, 3)}
    for key, values in results.items():
        out[key] = {"median": round(statistics.median(values), 3), "all": [round(v, 3) for v in values]}
    out["comparison"] = ("docker compose / podman-compose not measured: no Docker daemon or podman on this machine, "
                         "and their images would come from an unreachable registry")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
