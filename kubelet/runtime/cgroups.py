"""Reading container cgroups (usage, OOM kills, CPU throttling) on cgroup v1, v2 or the hybrid layout.

runc creates the cgroups from the OCI spec. pkube gives it a *relative* `cgroupsPath` (pkube/pod<uid>/<id>),
which runc nests under the cgroup of the process that creates the container, per hierarchy; so the kubelet's
own cgroup (e.g. a systemd service) also bounds its pods. The real directories of a container are read from
/proc/<pid>/cgroup while it runs and remembered, so they stay known after it exits.
"""
from __future__ import annotations

import os
import signal
import time
from functools import lru_cache
from pathlib import Path

UNIFIED = ""  # key of the cgroup v2 hierarchy in /proc/<pid>/cgroup ("0::/path")


@lru_cache(maxsize=1)
def mount_points() -> dict[str, str]:
    """controller (or UNIFIED) -> mount point, from /proc/self/mountinfo."""
    points: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(rfields) < 3:
            continue
        fstype, super_opts = rfields[0], rfields[2]
        if fstype == "cgroup2":
            points.setdefault(UNIFIED, fields[4])
        elif fstype == "cgroup":
            for opt in super_opts.split(","):
                if opt in ("rw", "ro") or opt.startswith("release_agent") or opt == "clone_children":
                    continue
                points.setdefault(opt.removeprefix("name="), fields[4])
    return points


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Lines `id:controllers:path` -> {controller: path}; the v2 line has an empty controller list."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[1] == "":
            out[UNIFIED] = parts[2]
        for ctrl in parts[1].split(","):
            if ctrl:
                out[ctrl.removeprefix("name=")] = parts[2]
    return out


def process_cgroups(pid: int | str = "self") -> dict[str, str]:
    """controller -> absolute directory of the process's cgroup."""
    try:
        rel = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return {}
    points = mount_points()
    return {c: os.path.join(points[c], p.lstrip("/")) for c, p in rel.items() if c in points}


def nested_dirs(relative: str) -> dict[str, str]:
    """Where runc puts a relative cgroupsPath created by this process: under its own cgroup in each hierarchy."""
    return {c: os.path.join(d, relative) for c, d in process_cgroups().items()}


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _kv(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def cpu_usage_ns(dirs: dict[str, str]) -> int:
    if "cpuacct" in dirs and (v := _read(os.path.join(dirs["cpuacct"], "cpuacct.usage")).strip()):
        return int(v)
    if UNIFIED in dirs:
        return _kv(_read(os.path.join(dirs[UNIFIED], "cpu.stat"))).get("usage_usec", 0) * 1000
    return 0


def memory_usage(dirs: dict[str, str]) -> tuple[int, int]:
    """(usage, working set) in bytes; working set = usage - inactive file pages, as cAdvisor computes it."""
    if "memory" in dirs and (v := _read(os.path.join(dirs["memory"], "memory.usage_in_bytes")).strip()):
        usage = int(v)
        inactive = _kv(_read(os.path.join(dirs["memory"], "memory.stat"))).get("total_inactive_file", 0)
    elif UNIFIED in dirs and (v := _read(os.path.join(dirs[UNIFIED], "memory.current")).strip()):
        usage = int(v)
        inactive = _kv(_read(os.path.join(dirs[UNIFIED], "memory.stat"))).get("inactive_file", 0)
    else:
        return 0, 0
    return usage, max(0, usage - inactive)


def oom_kills(dirs: dict[str, str]) -> int:
    if "memory" in dirs:
        text = _read(os.path.join(dirs["memory"], "memory.oom_control"))
        if text:
            return _kv(text).get("oom_kill", 0)
    if UNIFIED in dirs:
        return _kv(_read(os.path.join(dirs[UNIFIED], "memory.events"))).get("oom_kill", 0)
    return 0


def cpu_throttled_periods(dirs: dict[str, str]) -> int:
    for key in ("cpu", UNIFIED):
        if key in dirs and (text := _read(os.path.join(dirs[key], "cpu.stat"))):
            if "nr_throttled" in text:
                return _kv(text)["nr_throttled"]
    return 0


def owned(dirs: dict[str, str], relative: str) -> dict[str, str]:
    """Only the directories that really are `relative` (a process sits in its parent's cgroup in hierarchies
    where runc created nothing; those must never be read as, or removed like, ours)."""
    suffix = "/" + relative.strip("/")
    return {c: d for c, d in dirs.items() if d.rstrip("/").endswith(suffix)}


def set_pids_limit(relative: str, limit: int) -> str | None:
    """Create the cgroup `relative` (nested as runc nests it) with pids.max = `limit`, in the v1 pids hierarchy
    or else the unified one when its pids controller is enabled there; the directory written, or None when no
    hierarchy has a pids controller. runc later creates the containers' cgroups below it."""
    dirs = nested_dirs(relative)
    for key in ("pids", UNIFIED):
        if key not in dirs:
            continue
        created = not os.path.isdir(dirs[key])
        os.makedirs(dirs[key], exist_ok=True)
        target = os.path.join(dirs[key], "pids.max")
        if os.path.exists(target):
            with open(target, "w") as f:
                f.write(str(limit))
            return dirs[key]
        if created:
            os.rmdir(dirs[key])
    return None


def _procs_below(top: str) -> set[int]:
    pids: set[int] = set()
    for root, _, _ in os.walk(top):
        pids.update(int(line) for line in _read(os.path.join(root, "cgroup.procs")).split() if line.isdigit())
    return pids


def kill_leftovers(tops: set[str], timeout: float = 5.0) -> None:
    """SIGKILL every process still inside these cgroups (and below) and wait until they have left. A container
    whose runtime died half-way (a `runc init` never started, which `runc list` does not show) holds its cgroup
    until it is killed. PIDs come from the cgroup, so nothing outside it is touched."""
    deadline = time.monotonic() + timeout
    while (pids := set().union(*(_procs_below(t) for t in tops))) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def remove_tree(dirs: dict[str, str], relative: str) -> None:
    """Kill what is left inside, then rmdir each directory that is `relative` and its (empty) children, deepest
    first; missing ones are fine. Raises OSError (EBUSY) if a process is still inside after that."""
    tops = set(owned(dirs, relative).values())
    kill_leftovers(tops)
    for top in tops:
        for root, _, _ in os.walk(top, topdown=False):  # children before parents
            try:
                os.rmdir(root)
            except FileNotFoundError:
                pass
