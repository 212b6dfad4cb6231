"""`pkctl cluster backup FILE` / `restore FILE`: an etcd snapshot out of a running cluster, and a new
home whose etcd data is made from one.

Both go through `etcdctl` (Debian's etcd-client, the etcd release's own tool), as kubeadm's docs do:
`snapshot save` asks one member for a consistent point-in-time copy of its whole key space, and
`snapshot restore` writes a member's fresh data dir from it (new cluster identity, the members named
here), so a snapshot of a 3-member cluster restores into a 1-member home and back.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from pkctl.cluster.components import probe_etcd
from pkctl.cluster.home import ClusterConfig, Home, Member


class BackupError(Exception):
    """Printed as one line."""


def etcdctl() -> str:
    path = shutil.which("etcdctl")
    if path is None:
        raise BackupError("etcdctl is not installed: `apt-get install etcd-client` (scripts/install-deps.sh does)")
    return path


def _run(argv: list[str], home: Home | None, what: str, timeout: float = 300) -> str:
    env = {**os.environ, "ETCDCTL_API": "3"}
    tls = []
    if home is not None:
        pki = home.pki
        tls = ["--cacert", str(pki.ca_cert), "--cert", str(pki.cert("etcd-healthcheck-client")),
               "--key", str(pki.key("etcd-healthcheck-client"))]
    try:
        p = subprocess.run([etcdctl(), *tls, *argv], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what}: etcdctl did not finish within {timeout:.0f}s") from None
    if p.returncode != 0:
        lines = (p.stderr or p.stdout).strip().splitlines()
        raise BackupError(f"{what}: {lines[-1] if lines else f'etcdctl exited {p.returncode}'}")
    return p.stdout


def snapshot_status(file: Path) -> dict[str, int]:
    """hash, revision, totalKey, totalSize of a snapshot file; BackupError if it is not one."""
    out = _run(["snapshot", "status", str(file), "-w", "json"], None, f"{file} is not an etcd snapshot")
    try:
        doc = json.loads(out)
        return {k: int(doc[k]) for k in ("hash", "revision", "totalKey", "totalSize")}
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"{file} is not an etcd snapshot (etcdctl said: {out.strip()[:200]})") from None


def backup(home: Home, cfg: ClusterConfig, file: Path, say: Callable[[str], None]) -> dict[str, int]:
    """Save a snapshot from the first healthy etcd member into file (written whole, then renamed)."""
    if file.exists():
        raise BackupError(f"{file} exists; remove it or name another file")
    if not file.parent.is_dir():
        raise BackupError(f"directory {file.parent} does not exist")
    members: list[Member | None] = list(cfg.members) or [None]
    healthy = [m for m in members if probe_etcd(home, cfg, 0.0, m)[0]]
    if not healthy:
        raise BackupError(f"no etcd member of the cluster at {home.root} is healthy; is it running? "
                          f"(`pkctl cluster status --home {home.root}`)")
    source = healthy[0]
    url = source.etcd_url if source else cfg.etcd_url
    say(f"Saving a snapshot from etcd{'-' + source.name if source else ''} ({url}) ...")
    part = file.with_name(file.name + ".part")
    part.unlink(missing_ok=True)
    try:
        _run(["--endpoints", url, "snapshot", "save", str(part)], home, "snapshot save failed")
        status = snapshot_status(part)
        os.replace(part, file)
    finally:
        part.unlink(missing_ok=True)
    return status


def restore(home: Home, cfg: ClusterConfig, file: Path, say: Callable[[str], None]) -> None:
    """Make each etcd member's data dir from the snapshot (the home is new: its data dirs are empty)."""
    members: list[Member | None] = list(cfg.members) or [None]
    initial = (",".join(f"{m.name}={m.peer_url}" for m in cfg.members) if cfg.members
               else f"pkube=https://127.0.0.1:{cfg.etcd_peer_port}")
    for m in members:
        name, peer = (m.name, m.peer_url) if m else ("pkube", f"https://127.0.0.1:{cfg.etcd_peer_port}")
        target = home.etcd_dir(m)
        if target.exists() and any(target.iterdir()):
            raise BackupError(f"{target} already holds etcd data; restore into a fresh home")
        staging = home.root / f"etcd-restore-{name}"
        shutil.rmtree(staging, ignore_errors=True)
        say(f"  restoring etcd member {name} into {target}")
        _run(["snapshot", "restore", str(file), "--name", name, "--data-dir", str(staging),
              "--initial-cluster", initial, "--initial-advertise-peer-urls", peer], None,
             f"restoring member {name} failed")
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
        os.chmod(target, 0o700)
