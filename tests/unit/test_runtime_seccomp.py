"""The RuntimeDefault seccomp profile and its expansion per capabilities / architecture / kernel."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kubelet.containerconfig import seccomp_profile
from kubelet.env import ConfigError
from kubelet.runtime.interface import InvalidConfig, SecurityContext
from kubelet.runtime.oci import DEFAULT_CAPS, capabilities, no_new_privileges, seccomp_section
from kubelet.runtime.seccomp import default_profile, expand, load_localhost, localhost_path, runtime_default

DEFAULT = ["CAP_" + c for c in DEFAULT_CAPS]


def allowed(profile: dict[str, Any]) -> set[str]:
    """Syscalls allowed unconditionally (no argument filter)."""
    return {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
            for n in r["names"]}


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in profile["syscalls"] if name in r["names"]]


def test_default_profile_is_docker_s() -> None:
    p = runtime_default(DEFAULT, "x86_64", "6.1.0")
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    ok = allowed(p)
    assert {"read", "write", "execve", "openat", "futex", "arch_prctl", "modify_ldt", "chroot", "ptrace"} <= ok
    # what the profile exists to refuse without CAP_SYS_ADMIN & co
    for name in ("unshare", "mount", "setns", "keyctl", "add_key", "bpf", "reboot", "init_module", "kexec_load",
                 "open_by_handle_at", "clock_settime", "perf_event_open", "userfaultfd", "clone3"):
        assert name not in ok, name
    assert len(default_profile()["syscalls"][0]["names"]) > 340
    # every expanded rule is plain OCI: no Docker-only keys left
    assert all(set(r) <= {"names", "action", "errnoRet", "args"} for r in p["syscalls"])


def test_clone_is_argument_filtered_without_sys_admin_and_free_with_it() -> None:
    p = runtime_default(DEFAULT, "x86_64", "6.1.0")
    (clone,) = rules_for(p, "clone")
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]
    (clone3,) = rules_for(p, "clone3")
    assert clone3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}  # ENOSYS: libc falls back
    admin = runtime_default(DEFAULT + ["CAP_SYS_ADMIN"], "x86_64", "6.1.0")
    assert {"clone", "clone3", "unshare", "mount", "setns"} <= allowed(admin)
    assert all(not r.get("args") for r in rules_for(admin, "clone"))
    assert not [r for r in admin["syscalls"] if r["action"] == "SCMP_ACT_ERRNO"]


def test_personality_and_socket_keep_their_argument_rules() -> None:
    p = runtime_default(DEFAULT, "x86_64", "6.1.0")
    assert sorted(r["args"][0]["value"] for r in rules_for(p, "personality")) == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    (sock,) = rules_for(p, "socket")
    assert sock["args"] == [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]  # no AF_VSOCK


@pytest.mark.parametrize("cap, syscalls", [
    ("CAP_SYS_PTRACE", {"kcmp", "pidfd_getfd", "process_madvise"}), ("CAP_SYS_TIME", {"settimeofday"}),
    ("CAP_SYS_MODULE", {"init_module", "finit_module"}), ("CAP_SYS_BOOT", {"reboot"}), ("CAP_BPF", {"bpf"}),
    ("CAP_DAC_READ_SEARCH", {"open_by_handle_at"}), ("CAP_SYS_NICE", {"mbind"}), ("CAP_SYSLOG", {"syslog"})])
def test_capability_conditional_rules(cap: str, syscalls: set[str]) -> None:
    assert not syscalls & allowed(runtime_default(DEFAULT, "x86_64", "6.1.0"))
    assert syscalls <= allowed(runtime_default(DEFAULT + [cap], "x86_64", "6.1.0"))


def test_dropping_sys_chroot_drops_chroot() -> None:
    caps = capabilities([], ["SYS_CHROOT"], False)
    assert "chroot" not in allowed(runtime_default(caps, "x86_64", "6.1.0"))


def test_arch_and_kernel_conditions() -> None:
    arm = runtime_default(DEFAULT, "aarch64", "6.1.0")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" not in allowed(arm) and "set_tls" in allowed(arm)
    s390 = runtime_default(DEFAULT, "s390x", "6.1.0")
    assert [r["args"][0]["index"] for r in rules_for(s390, "clone")] == [1]
    assert "ptrace" not in allowed(runtime_default(DEFAULT, "x86_64", "4.4.0-generic"))
    assert "ptrace" in allowed(runtime_default(DEFAULT, "x86_64", "4.19.0-21-amd64"))


def test_section_per_security_context() -> None:
    assert seccomp_section(SecurityContext(), DEFAULT)["defaultAction"] == "SCMP_ACT_ERRNO"  # type: ignore[index]
    assert seccomp_section(SecurityContext(seccomp_profile="Unconfined"), DEFAULT) is None
    assert seccomp_section(SecurityContext(privileged=True), DEFAULT) is None
    with pytest.raises(InvalidConfig, match="unknown seccomp profile type"):
        seccomp_section(SecurityContext(seccomp_profile="Bogus"), DEFAULT)


def test_no_new_privileges_rules() -> None:
    assert no_new_privileges(SecurityContext(), DEFAULT) is True
    assert no_new_privileges(SecurityContext(allow_privilege_escalation=False), DEFAULT) is True
    assert no_new_privileges(SecurityContext(allow_privilege_escalation=True), DEFAULT) is False
    assert no_new_privileges(SecurityContext(privileged=True), DEFAULT) is False
    assert no_new_privileges(SecurityContext(capabilities_add=["SYS_ADMIN"]), DEFAULT) is False


def test_net_raw_is_not_a_default_capability() -> None:
    assert "CAP_NET_RAW" not in capabilities([], [], False)
    assert "CAP_NET_RAW" in capabilities(["NET_RAW"], [], False)
    assert "CAP_NET_RAW" in capabilities([], [], True)


def test_seccomp_choice_container_over_pod_over_kubelet(tmp_path: Path) -> None:
    rd, un = {"seccompProfile": {"type": "RuntimeDefault"}}, {"seccompProfile": {"type": "Unconfined"}}
    assert seccomp_profile({}, {}, True, tmp_path) == ("RuntimeDefault", "")
    assert seccomp_profile({}, {}, False, tmp_path) == ("Unconfined", "")
    assert seccomp_profile(un, {}, True, tmp_path) == ("Unconfined", "")
    assert seccomp_profile(un, rd, True, tmp_path) == ("RuntimeDefault", "")
    assert seccomp_profile(rd, un, False, tmp_path) == ("Unconfined", "")
    local = {"seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/a.json"}}
    assert seccomp_profile({}, local, True, tmp_path) == ("Localhost", str(tmp_path / "profiles/a.json"))


@pytest.mark.parametrize("name", ["../x.json", "/etc/passwd", "a/../../x.json", "", "link/x.json"])
def test_localhost_names_never_leave_the_seccomp_dir(tmp_path: Path, name: str) -> None:
    sdir = tmp_path / "seccomp"
    sdir.mkdir()
    os.symlink(tmp_path, sdir / "link")
    with pytest.raises(InvalidConfig):
        localhost_path(sdir, name)
    with pytest.raises(ConfigError):
        seccomp_profile({}, {"seccompProfile": {"type": "Localhost", "localhostProfile": name}}, True, sdir)


def test_localhost_profile_loading(tmp_path: Path) -> None:
    good = tmp_path / "p.json"
    good.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "includes": {"caps": ["CAP_BPF"]}}]}))
    assert expand(load_localhost(str(good)), DEFAULT, "x86_64", "6.1.0") == {
        "defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}
    for content, msg in (("{", "decoding"), ("[]", "not a seccomp profile"), ("x" * (2 << 20), "larger than")):
        good.write_text(content)
        with pytest.raises(InvalidConfig, match=msg):
            load_localhost(str(good))
    with pytest.raises(InvalidConfig, match="not a regular file"):
        load_localhost(str(tmp_path))
    with pytest.raises(InvalidConfig, match="not a regular file"):
        load_localhost(str(tmp_path / "missing.json"))
    with pytest.raises(InvalidConfig, match="has no action"):
        expand({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"]}]}, DEFAULT)
