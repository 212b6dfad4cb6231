"""Running one `RUN` step in a runc container over the image's overlay rootfs.

The container gets its own pid/ipc/uts/mount namespaces. Its network is the sandbox of
buildnet.py (NAT to the host, BuildKit's default), or with `RUN --network=none` a namespace
with only loopback. runc creates and removes the cgroup.
"""
from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable

import orjson

from images.errors import BuildError, ImageError
from images.rootfs import read_in_root

HOSTNAME = "pkube-build"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
         "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
         "CAP_AUDIT_WRITE"]  # Docker's default set


def runc_binary() -> str:
    path = shutil.which("runc")
    if not path:
        raise BuildError("RUN needs runc, which is not installed (apt-get install runc)")
    return path


def resolve_user(rootfs: Path, user: str) -> tuple[int, int]:
    """USER value (name or uid, optional :group) → numeric ids, via the image's /etc/passwd and /etc/group."""
    if not user:
        return 0, 0
    name, _, group = user.partition(":")
    passwd = _db(rootfs, "/etc/passwd")
    uid: int | None = None
    gid: int | None = None
    if name.isdigit():
        uid = int(name)
        gid = next((int(f[3]) for f in passwd if len(f) > 3 and f[2] == name and f[3].isdigit()), 0)
    else:
        entry = next((f for f in passwd if f[0] == name and len(f) > 3), None)
        if entry is None:
            raise BuildError(f"user {name!r} not found in the image's /etc/passwd")
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gentry = next((f for f in _db(rootfs, "/etc/group") if f[0] == group and len(f) > 2), None)
            if gentry is None:
                raise BuildError(f"group {group!r} not found in the image's /etc/group")
            gid = int(gentry[2])
    return uid, gid


def _db(rootfs: Path, path: str) -> list[list[str]]:
    # The image's own file, as RUN would see it: links resolve inside the rootfs, never to the host's files.
    try:
        text = read_in_root(rootfs, path) or ""
    except ImageError as e:
        raise BuildError(str(e)) from None
    return [line.split(":") for line in text.splitlines() if line and ":" in line]


def spec(rootfs: Path, args: list[str], env: list[str], cwd: str, uid: int, gid: int,
         mounts: list[dict[str, Any]] | None = None, netns: str | None = None) -> dict[str, Any]:
    network: dict[str, str] = {"type": "network", **({"path": netns} if netns else {})}
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False, "user": {"uid": uid, "gid": gid}, "args": args, "env": env, "cwd": cwd or "/",
            "capabilities": {k: _CAPS for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": HOSTNAME,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            *(mounts or []),
        ],
        "linux": {
            "namespaces": [network, *({"type": t} for t in ("pid", "ipc", "uts", "mount"))],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def run(bundle: Path, rootfs: Path, args: list[str], env: list[str], cwd: str, user: str,
        output: Callable[[str], None], mounts: list[dict[str, Any]] | None = None, netns: str | None = None) -> None:
    """Run `args` in a container over `rootfs` (plus `mounts`, OCI mount entries; in the network namespace at
    `netns`, else a new one with only loopback); stream its output; raise BuildError on non-zero exit."""
    runc = runc_binary()
    uid, gid = resolve_user(rootfs, user)
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_bytes(orjson.dumps(spec(rootfs, args, env, cwd, uid, gid, mounts, netns)))
    cid = f"pkube-build-{uuid.uuid4().hex[:12]}"
    try:
        proc = subprocess.Popen([runc, "run", "--bundle", str(bundle), cid], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        for line in proc.stdout:
            output(line.decode(errors="replace").rstrip("\n"))
        code = proc.wait()
    finally:
        # runc run removes the container when it exits; this covers interruption half-way.
        subprocess.run([runc, "delete", "--force", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if code != 0:
        raise BuildError(f"the command {args!r} returned a non-zero code: {code}")


def environment(env: dict[str, str]) -> list[str]:
    merged = {"PATH": DEFAULT_PATH, **env}
    return [f"{k}={v}" for k, v in merged.items()]

