"""What `cluster status` and the end of `cluster up` print."""
from __future__ import annotations

import os
import shutil
import ssl
import sys
from pathlib import Path

from pkctl.cluster import procs
from pkctl.cluster.components import (ELECTION_LEASES, api_get, components, etcd_client_context, lease_holder,
                                      node_ready)
from pkctl.cluster.etcdstatus import disk_free, disk_lines, etcd_lines
from pkctl.cluster.home import ClusterConfig, Home, resolve


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    """kubectl-style ages: 45s, 3m2s, 4h5m, 2d3h."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60}m" if s % 3600 // 60 else f"{s // 3600}h"
    return f"{s // 86400}d{s % 86400 // 3600}h" if s % 86400 // 3600 else f"{s // 86400}d"


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                # allocated blocks, like du: etcd preallocates its WAL files
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                pass  # etcd rotates WAL/snap files while we walk
    return total


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def status_report(home: Home, cfg: ClusterConfig, supervisor: procs.ProcRecord | None) -> bool:
    """Print the status table; True when the cluster runs and every available component is healthy."""
    healthy = supervisor is not None
    rows = [["COMPONENT", "STATE", "PID", "RSS", "UPTIME", "RESTARTS", "HEALTH"]]
    for c in components(cfg):
        st = home.read_state(c.name) or {}
        rec = procs.ProcRecord.from_state(st)
        if st.get("state") == "NotAvailable" or (not st and not c.available()):
            rows.append([c.name, "Not available", "-", "-", "-", "-", st.get("detail") or "not in this build"])
            continue
        if supervisor is None or rec is None or not rec.alive():
            if supervisor is None:
                rows.append([c.name, "Stopped", "-", "-", "-", "-", "-"])
            else:
                rows.append([c.name, st.get("state", "Waiting"), "-", "-", "-", str(st.get("restarts", 0)),
                             st.get("detail") or "-"])
            healthy = False
            continue
        # on the boot clock, not now - the wall-clock "started": after a step of the clock that would skew UPTIME
        # and make the node probe (renewTime >= now - uptime) wait for the wall clock to catch up
        uptime = rec.uptime()
        ok, detail = c.probe(home, cfg, uptime)
        healthy = healthy and ok
        state = "Running" if st.get("state") in ("Running", "Starting") else st.get("state", "?")
        rows.append([c.name, state, str(rec.pid), human_bytes(rec.rss_bytes()), human_duration(uptime),
                     str(st.get("restarts", 0)), ("ok" if ok else "FAILING") + f" ({detail})"])
        for m in c.members:  # components sharing this process: its PID, memory and uptime
            if m.available():
                m_ok, m_detail = m.probe(home, cfg, uptime)
                healthy = healthy and m_ok
                rows.append([f"  {m.name}", "Running" if m_ok else "Starting", str(rec.pid), "(shared)",
                             human_duration(uptime), str(st.get("restarts", 0)),
                             ("ok" if m_ok else "FAILING") + f" ({m_detail})"])
    sup = f"running (pid {supervisor.pid})" if supervisor else "not running"
    print(f"pkube cluster in {home.root}: supervisor {sup}")
    if cfg.joined and cfg.members:
        print(f"Control-plane member {cfg.members[0].name} joined to {cfg.joined}   API server: {cfg.api_url}   "
              f"kubeconfig: {home.kubeconfig}")
    elif cfg.joined:
        print(f"Node {cfg.node_name} joined to {cfg.api_url}   kubeconfig: {home.node_kubeconfig}")
    else:
        print(f"API server: {cfg.api_url}   kubeconfig: {home.kubeconfig}")
    if cfg.members and not cfg.joined:
        print(f"  (the supervisor's balancer over {len(cfg.members)} apiservers: "
              + ", ".join(f"{m.name} {m.host}:{m.api_port}" for m in cfg.members) + ")")
    print()
    print(table(rows))
    if cfg.members and supervisor:
        print("\nLEADERS: " + ", ".join(f"{name} {lease_holder(home, cfg, name) or '(none)'}"
                                         for name in ELECTION_LEASES))
    nodes = api_get(home, cfg, "/api/v1/nodes") if supervisor else None
    if nodes is not None:
        items = nodes.get("items", [])
        print("\nNODES: " + (", ".join(f"{n['metadata']['name']} {'Ready' if node_ready(n) else 'NotReady'}"
                                       for n in items) or "none registered"))
    if cfg.joined and not cfg.members:  # no etcd here: the cluster's control plane runs elsewhere
        return healthy
    disk = disk_free(home.etcd_data)
    free = f" ({human_bytes(disk[0])} free on its filesystem)" if disk else ""
    print(f"etcd data: {human_bytes(dir_size(home.etcd_data))}{free}")
    if disk and (full := disk_lines(home.etcd_data, *disk, human_bytes)):
        print("\n".join(full))
        healthy = False
    if supervisor:
        try:
            lines = etcd_lines(cfg.etcd_urls, etcd_client_context(home), human_bytes)
        except (OSError, ssl.SSLError) as e:
            lines = [f"etcd: cannot read its status ({e})"]
        print("\n".join(lines))
        healthy = healthy and not any(line.startswith("ALARM") for line in lines)
    return healthy


def pkctl_command() -> str:
    """How the user can type pkctl: plain `pkctl` when it is on PATH, else the venv's script."""
    if shutil.which("pkctl"):
        return "pkctl"
    beside = Path(sys.executable).parent / "pkctl"
    return str(beside) if beside.exists() else "pkctl"


def print_next_steps(home: Home, cfg: ClusterConfig) -> None:
    flag = "" if home.root == resolve(None) else f" --home {home.root}"
    pk = pkctl_command()
    kubectl = f"  kubectl --kubeconfig {home.kubeconfig} get pods -A\n" if cfg.tls else ""
    print(f"""
pkube is running. API server {cfg.api_url}, data in {home.root}. Try:
  export KUBECONFIG={home.kubeconfig}
  {pk} get nodes
  {pk} apply -f manifests/examples/web.yaml
{kubectl}  {pk} cluster status{flag}
  {pk} cluster logs apiserver{flag}
  {pk} cluster down{flag}""")
