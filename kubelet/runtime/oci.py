"""OCI runtime spec (config.json) for a pod container: pure functions, no I/O.

Kubernetes' rules for the process (command/args vs ENTRYPOINT/CMD, env merge, user), Docker-like security
defaults (capabilities, noNewPrivileges, masked /proc paths, only the standard devices), the sandbox's shared
namespaces and the cgroup limits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubelet.runtime import seccomp
from kubelet.runtime.interface import ContainerConfig, InvalidConfig, Resources, SecurityContext

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD = 100_000
MIN_QUOTA = 1000          # the kernel's lower bound for cfs_quota_us
MIN_SHARES = 2            # Kubernetes' MinShares
NOFILE_WANTED = 1_048_576

# containerd's / Docker's default capability set without NET_RAW (raw sockets: packet spoofing, and ping needs
# none since unprivileged ICMP sockets exist); a pod that needs it adds it.
DEFAULT_CAPS = ["CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "SETGID", "SETUID", "SETFCAP",
                "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"]
ALL_CAPS = DEFAULT_CAPS + [
    "NET_RAW", "DAC_READ_SEARCH", "LINUX_IMMUTABLE", "NET_BROADCAST", "NET_ADMIN", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE",
    "SYS_RAWIO", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "LEASE", "AUDIT_CONTROL", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"]
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


@dataclass
class SandboxRefs:
    """What a container needs from its pod sandbox."""
    netns: str                                   # paths of namespace files to join
    ipc_ns: str
    uts_ns: str
    hostname: str
    pod_files: dict[str, str] = field(default_factory=dict)  # container path -> host path
    host_network: bool = False                   # no network namespace of its own: the node's
    host_pid: bool = False                       # no PID namespace of its own: the node's
    host_ipc: bool = False                       # no IPC namespace of its own: the node's, and the node's /dev/shm


@dataclass
class User:
    uid: int
    gid: int
    additional_gids: list[int]


def image_process_config(image_config: dict[str, Any]) -> dict[str, Any]:
    """The `config` section of an OCI image config (accepts the whole document or the section itself)."""
    inner = image_config.get("config")
    return inner if isinstance(inner, dict) else ({} if "rootfs" in image_config else image_config)


def process_args(command: list[str] | None, args: list[str] | None, entrypoint: list[str] | None,
                 cmd: list[str] | None) -> list[str]:
    """Kubernetes: `command` replaces ENTRYPOINT (and drops CMD); `args` replaces CMD."""
    if command:
        return list(command) + list(args or [])
    return list(entrypoint or []) + list(args if args is not None else (cmd or []))


def merge_env(image_env: list[str], container_env: list[tuple[str, str]], hostname: str) -> list[str]:
    """Image env, then HOSTNAME, then the container's env; later entries win, order of first appearance kept."""
    merged: dict[str, str] = {"PATH": DEFAULT_PATH}
    for item in image_env:
        key, _, value = item.partition("=")
        merged[key] = value
    merged["HOSTNAME"] = hostname
    for key, value in container_env:
        merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def _parse_db(text: str, min_fields: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            parts = line.split(":")
            if len(parts) >= min_fields:
                rows.append(parts)
    return rows


def resolve_user(image_user: str, run_as_user: int | None, run_as_group: int | None, passwd: str,
                 group: str) -> User:
    """uid/gid from securityContext or the image's USER (`name`, `uid`, `name:group`, `uid:gid`), names
    looked up in the image's /etc/passwd and /etc/group; supplementary groups from /etc/group membership."""
    users = _parse_db(passwd, 4)
    groups = _parse_db(group, 3)
    user_part, _, group_part = (image_user or "").partition(":")
    uid, gid, name = 0, 0, "root"
    if run_as_user is not None:
        uid = run_as_user
        row = next((u for u in users if u[2] == str(uid)), None)
        gid, name = (int(row[3]), row[0]) if row else (0, "")
    elif user_part:
        row = next((u for u in users if u[0] == user_part or u[2] == user_part), None)
        if row:
            uid, gid, name = int(row[2]), int(row[3]), row[0]
        elif user_part.isdigit():
            uid, gid, name = int(user_part), 0, ""
        else:
            raise InvalidConfig(f"unable to find user {user_part}: no matching entries in passwd file")
    if run_as_group is not None:
        gid = run_as_group
    elif group_part:
        row = next((g for g in groups if g[0] == group_part or g[2] == group_part), None)
        if row:
            gid = int(row[2])
        elif group_part.isdigit():
            gid = int(group_part)
        else:
            raise InvalidConfig(f"unable to find group {group_part}: no matching entries in group file")
    extra = sorted({int(g[2]) for g in groups
                    if name and name in g[3].split(",") and g[2].isdigit() and int(g[2]) != gid})
    return User(uid, gid, extra)


def check_non_root(run_as_non_root: bool, run_as_user: int | None, image_user: str, uid: int) -> None:
    """Kubernetes' verifyRunAsNonRoot, with its messages."""
    if not run_as_non_root:
        return
    if run_as_user is not None:
        if run_as_user == 0:
            raise InvalidConfig("container's runAsUser breaks non-root policy")
        return
    user_part = (image_user or "").partition(":")[0]
    if user_part and not user_part.isdigit():
        raise InvalidConfig(f"container has runAsNonRoot and image has non-numeric user ({user_part}), "
                            "cannot verify user is non-root")
    if uid == 0:
        raise InvalidConfig("container has runAsNonRoot and image will run as root")


def _cap_name(c: str) -> str:
    c = c.upper()
    return c if c.startswith("CAP_") else "CAP_" + c


def capabilities(add: list[str], drop: list[str], privileged: bool) -> list[str]:
    if privileged:
        return [_cap_name(c) for c in ALL_CAPS]
    add_set = {_cap_name(c) for c in add}
    drop_set = {_cap_name(c) for c in drop}
    caps = [_cap_name(c) for c in (ALL_CAPS if "CAP_ALL" in add_set else DEFAULT_CAPS)]
    caps += sorted(c for c in add_set if c != "CAP_ALL" and c not in caps)
    if "CAP_ALL" in drop_set:
        return sorted(c for c in add_set if c != "CAP_ALL") if "CAP_ALL" not in add_set else caps
    return [c for c in caps if c not in drop_set]


def no_new_privileges(sc: SecurityContext, caps: list[str]) -> bool:
    """Kubernetes sets no_new_privs for allowPrivilegeEscalation: false. pkube also sets it when the field is
    unset (a setuid binary gains nothing), except where Kubernetes forbids `false`: privileged, or CAP_SYS_ADMIN."""
    if sc.allow_privilege_escalation is not None:
        return not sc.allow_privilege_escalation
    return not (sc.privileged or "CAP_SYS_ADMIN" in {_cap_name(c) for c in sc.capabilities_add})


def seccomp_section(sc: SecurityContext, caps: list[str]) -> dict[str, Any] | None:
    """linux.seccomp: None for Unconfined and for privileged containers (as containerd), else the profile
    expanded for the container's capabilities."""
    if sc.privileged or sc.seccomp_profile == "Unconfined":
        return None
    if sc.seccomp_profile == "RuntimeDefault":
        return seccomp.runtime_default(caps)
    if sc.seccomp_profile == "Localhost":
        return seccomp.expand(seccomp.load_localhost(sc.seccomp_localhost_path), caps)
    raise InvalidConfig(f"unknown seccomp profile type {sc.seccomp_profile!r}")


def cpu_shares(request_millis: int | None) -> int:
    """Kubernetes' MilliCPUToShares."""
    if not request_millis:
        return MIN_SHARES
    return max(MIN_SHARES, request_millis * 1024 // 1000)


def linux_resources(r: Resources, privileged: bool) -> dict[str, Any]:
    res: dict[str, Any] = {
        # deny all devices, runc then allows its standard set (null, zero, full, random, urandom, tty, ptmx)
        "devices": [{"allow": privileged, "access": "rwm"}],
        "cpu": {"shares": cpu_shares(r.cpu_request_millis)},
    }
    if r.cpu_limit_millis:
        res["cpu"].update(quota=max(MIN_QUOTA, r.cpu_limit_millis * CPU_PERIOD // 1000), period=CPU_PERIOD)
    if r.memory_limit_bytes:
        # swap == limit: no extra swap beyond the limit, so a hog is OOM-killed rather than swapped out
        res["memory"] = {"limit": r.memory_limit_bytes, "swap": r.memory_limit_bytes}
    if r.pids_limit:
        res["pids"] = {"limit": r.pids_limit}
    return res


def _mounts(c: ContainerConfig, sandbox: SandboxRefs, privileged: bool) -> list[dict[str, Any]]:
    sys_opts = ["nosuid", "noexec", "nodev"] + ([] if privileged else ["ro"])
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        # hostIPC shares the node's POSIX shared memory too (as containerd does), not only SysV IPC
        {"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
         "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev"]} if sandbox.host_ipc else
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
    ]
    # volumes never bring set-uid binaries or device nodes to life; a privileged container keeps device nodes
    # (a hostPath of /dev/... is why one is privileged, and its device cgroup allows them anyway)
    bind_opts = ["rbind", "rprivate", "nosuid"] + ([] if privileged else ["nodev"])
    user_targets = {m.container_path for m in c.mounts}
    for target, source in sandbox.pod_files.items():
        if target not in user_targets:  # a volume mounted over /etc/hosts wins, as in Kubernetes
            mounts.append({"destination": target, "type": "bind", "source": source,
                           "options": ["rbind", "rprivate", "nosuid", "nodev"]})
    for m in c.mounts:
        if not m.container_path.startswith("/"):
            raise InvalidConfig(f"mount path {m.container_path!r} must be absolute")
        mounts.append({"destination": m.container_path, "type": "bind", "source": m.host_path,
                       "options": bind_opts + (["ro"] if m.read_only else ["rw"])})
    return mounts


def build_spec(c: ContainerConfig, image_config: dict[str, Any], rootfs: str, sandbox: SandboxRefs,
               cgroups_path: str, passwd: str = "", group: str = "", host_nofile_hard: int = NOFILE_WANTED,
               pid_ns: str | None = None) -> dict[str, Any]:
    """The complete config.json. Raises InvalidConfig for a container that must not be created."""
    img = image_process_config(image_config)
    args = process_args(c.command, c.args, img.get("Entrypoint"), img.get("Cmd"))
    if not args:
        raise InvalidConfig("no command specified: the image has no ENTRYPOINT/CMD and the container no command")
    sc = c.security
    image_user = img.get("User") or ""
    user = resolve_user(image_user, sc.run_as_user, sc.run_as_group, passwd, group)
    check_non_root(sc.run_as_non_root, sc.run_as_user, image_user, user.uid)
    caps = capabilities(sc.capabilities_add, sc.capabilities_drop, sc.privileged)
    no_new_privs = no_new_privileges(sc, caps)
    nofile = min(NOFILE_WANTED, host_nofile_hard)
    # a namespace left out is the one runc runs in: the node's (hostNetwork, hostPID, hostIPC)
    namespaces = [
        *([] if sandbox.host_pid and not pid_ns else [{"type": "pid", **({"path": pid_ns} if pid_ns else {})}]),
        {"type": "mount"},
        *([] if sandbox.host_network else [{"type": "network", "path": sandbox.netns}]),
        *([] if sandbox.host_ipc else [{"type": "ipc", "path": sandbox.ipc_ns}]),
        {"type": "uts", "path": sandbox.uts_ns},
        {"type": "cgroup"},  # the container sees its own cgroup as / in /proc/self/cgroup
    ]
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path,
        "resources": linux_resources(c.resources, sc.privileged),
    }
    if (profile := seccomp_section(sc, caps)) is not None:
        linux["seccomp"] = profile
    if not sc.privileged:
        linux["maskedPaths"] = MASKED_PATHS
        linux["readonlyPaths"] = READONLY_PATHS
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": c.tty,
            "user": {"uid": user.uid, "gid": user.gid,
                     **({"additionalGids": user.additional_gids} if user.additional_gids else {})},
            "args": args,
            "env": merge_env(img.get("Env") or [], c.env, sandbox.hostname),
            "cwd": c.working_dir or img.get("WorkingDir") or "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": no_new_privs,
        },
        "root": {"path": rootfs, "readonly": sc.read_only_root_filesystem},
        "mounts": _mounts(c, sandbox, sc.privileged),
        "linux": linux,
    }
