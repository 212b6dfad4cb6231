"""seccomp profiles for the OCI spec: RuntimeDefault (containerd's / Docker's default policy) and Localhost files.

Profiles are in Docker's format (`defaultAction`, `archMap`, `syscalls` with `includes`/`excludes` on
capabilities, architectures and kernel version). `expand` turns one into the OCI `linux.seccomp` section for a
container: only the rules whose conditions hold for its capabilities, the node's architecture and kernel.
The RuntimeDefault policy itself is data (seccomp_default.json next to this module).
"""
from __future__ import annotations

import json
import platform
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from kubelet.runtime.interface import InvalidConfig

# uname -m -> (Go's GOARCH, which Docker profiles name in includes.arches; libseccomp's native architecture)
_ARCHES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "i686": ("386", "SCMP_ARCH_X86"), "armv7l": ("arm", "SCMP_ARCH_ARM"), "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"), "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"), "mips64el": ("mips64le", "SCMP_ARCH_MIPSEL64"),
}
MAX_PROFILE_BYTES = 1 << 20


@lru_cache(maxsize=1)
def default_profile() -> dict[str, Any]:
    """The RuntimeDefault profile as shipped (Docker's format, not yet expanded)."""
    text = resources.files("kubelet.runtime").joinpath("seccomp_default.json").read_text()
    profile: dict[str, Any] = json.loads(text)
    return profile


def _kernel_at_least(kernel: str, minimum: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        out = []
        for p in v.split("-")[0].split(".")[:2]:
            digits = "".join(ch for ch in p if ch.isdigit())
            out.append(int(digits or 0))
        return tuple(out)
    return parts(kernel) >= parts(minimum)


def _applies(rule: dict[str, Any], caps: set[str], goarch: str, kernel: str) -> bool:
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if inc.get("caps") and not all(c in caps for c in inc["caps"]):
        return False
    if inc.get("minKernel") and not _kernel_at_least(kernel, inc["minKernel"]):
        return False
    if exc.get("arches") and goarch in exc["arches"]:
        return False
    if exc.get("caps") and any(c in caps for c in exc["caps"]):
        return False
    if exc.get("minKernel") and _kernel_at_least(kernel, exc["minKernel"]):
        return False
    return True


def expand(profile: dict[str, Any], caps: list[str], machine: str | None = None,
           kernel: str | None = None) -> dict[str, Any]:
    """The OCI `linux.seccomp` of `profile` for a container with capabilities `caps` (CAP_* names)."""
    machine = machine or platform.machine()
    kernel = kernel or platform.release()
    goarch, native = _ARCHES.get(machine, (machine, ""))
    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "SCMP_ACT_ERRNO")}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    else:
        for entry in profile.get("archMap") or []:
            if entry.get("architecture") == native:
                out["architectures"] = [native, *(entry.get("subArchitectures") or [])]
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if key in profile:
            out[key] = profile[key]
    cap_set = set(caps)
    syscalls = []
    for rule in profile.get("syscalls") or []:
        if not isinstance(rule, dict) or not isinstance(rule.get("action"), str):
            raise InvalidConfig(f"seccomp profile: syscall rule {rule!r} has no action")
        if not _applies(rule, cap_set, goarch, kernel):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        item: dict[str, Any] = {"names": list(names), "action": rule["action"]}
        if "errnoRet" in rule:
            item["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            item["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a} for a in rule["args"]]
        syscalls.append(item)
    out["syscalls"] = syscalls
    return out


def runtime_default(caps: list[str], machine: str | None = None, kernel: str | None = None) -> dict[str, Any]:
    return expand(default_profile(), caps, machine, kernel)


def localhost_path(seccomp_dir: Path, name: str) -> Path:
    """`<seccomp dir>/<name>`, refusing a name that leaves the directory (`..`, absolute, or a symlink out)."""
    if not name:
        raise InvalidConfig("seccomp profile type Localhost needs a localhostProfile")
    root = seccomp_dir.resolve()
    candidate = (root / name).resolve()
    if candidate == root or not candidate.is_relative_to(root):
        raise InvalidConfig(f"seccomp profile {name!r} is not under the kubelet's seccomp directory {seccomp_dir}")
    return candidate


def load_localhost(path: str) -> dict[str, Any]:
    """A Localhost profile file (Docker's format or already OCI's), size-capped, regular files only."""
    p = Path(path)
    try:
        if not p.is_file():
            raise InvalidConfig(f"seccomp profile {path} is not a regular file")
        with open(p, "rb") as f:
            data = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as e:
        raise InvalidConfig(f"cannot load seccomp profile {path!r}: {e.strerror}") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise InvalidConfig(f"seccomp profile {path} is larger than {MAX_PROFILE_BYTES} bytes")
    try:
        profile = json.loads(data)
    except ValueError as e:
        raise InvalidConfig(f"decoding seccomp profile {path} failed: {e}") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("defaultAction"), str):
        raise InvalidConfig(f"seccomp profile {path}: not a seccomp profile (no defaultAction)")
    return profile
