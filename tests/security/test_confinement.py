"""Confinement by default: seccomp RuntimeDefault, no NET_RAW, a cgroup namespace, a pids limit per pod,
runAsNonRoot, readOnlyRootFilesystem and no_new_privs, each checked from inside a container of the real kubelet."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from kubelet.runtime import cgroups
from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.node import Node, cstatus, ctr, exec_in, pod, running, wait_pod

pytestmark = pytest.mark.root

PODS = lookup("pods")
assert PODS

CAP_NET_RAW = 13
EPERM_TEXT = "Operation not permitted"


def _status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


async def _proc_status(node: Node, p: dict[str, Any], container: str) -> dict[str, str]:
    r = await exec_in(node, p, container, ["cat", "/proc/self/status"])
    assert r.exit_code == 0, r
    return _status(r.stdout.decode())


async def _unshare_user_ns(node: Node, p: dict[str, Any], container: str) -> tuple[int, str]:
    """What Docker users see as the seccomp test: unshare(CLONE_NEWUSER) needs no capability, only the profile
    forbids it."""
    r = await exec_in(node, p, container, ["unshare", "-U", "true"])
    return r.exit_code, (r.stdout + r.stderr).decode()


def _sc(profile: str, **extra: Any) -> dict[str, Any]:
    return {"seccompProfile": {"type": profile}, **extra}


async def test_seccomp_runtime_default_blocks_unshare_and_unconfined_allows_it(node: Node, kc: Client,
                                                                               privileged_ns: str) -> None:
    await kc.create(PODS, pod("sc", ctr("dflt", "exec sleep 3600"),
                              ctr("open", "exec sleep 3600", securityContext=_sc("Unconfined"))), privileged_ns)
    # the pod asks for Unconfined, one container overrides it with RuntimeDefault
    await kc.create(PODS, pod("sc-pod", ctr("inherit", "exec sleep 3600"),
                              ctr("strict", "exec sleep 3600", securityContext=_sc("RuntimeDefault")),
                              securityContext=_sc("Unconfined")), privileged_ns)
    p = await wait_pod(kc, privileged_ns, "sc", running, what="pod sc running")
    q = await wait_pod(kc, privileged_ns, "sc-pod", running, what="pod sc-pod running")

    code, out = await _unshare_user_ns(node, p, "dflt")
    assert code != 0 and "unshare(0x10000000)" in out and EPERM_TEXT in out, out
    code, out = await _unshare_user_ns(node, q, "strict")
    assert code != 0 and EPERM_TEXT in out, out
    for pp, name in ((p, "open"), (q, "inherit")):
        code, out = await _unshare_user_ns(node, pp, name)
        assert code == 0, f"{name}: {out}"
    # the filter is really installed in the confined container's process, and only there
    assert (await _proc_status(node, p, "dflt"))["Seccomp"] == "2"
    assert (await _proc_status(node, p, "open"))["Seccomp"] == "0"


async def test_localhost_profile_applied_and_escaping_name_refused(node: Node, kc: Client, ns: str) -> None:
    sdir = node.tmp / "kubelet" / "seccomp"
    sdir.mkdir(parents=True, exist_ok=True)
    name = f"{ns}-nomkdir.json"
    # allow everything but mkdir/mkdirat, which fail with EACCES (13)
    (sdir / name).write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    outside = node.tmp / f"{ns}-outside"
    outside.mkdir()
    (outside / "allow.json").write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    os.symlink(outside, sdir / f"{ns}-link")

    def local(profile: str) -> dict[str, Any]:
        return {"seccompProfile": {"type": "Localhost", "localhostProfile": profile}}
    try:
        # the apiserver refuses a name with `..`; the kubelet refuses one that leaves the dir through a link
        with pytest.raises(ApiError) as err:
            await kc.create(PODS, pod("dots", ctr("c", "exec sleep 3600",
                                                  securityContext=local(f"../{outside.name}/allow.json"))), ns)
        assert err.value.code == 422 and "must not contain '..'" in str(err.value)
        await kc.create(PODS, pod("local", ctr("c", "exec sleep 3600", securityContext=local(name))), ns)
        await kc.create(PODS, pod("escape", ctr("c", "exec sleep 3600",
                                                securityContext=local(f"{ns}-link/allow.json"))), ns)
        p = await wait_pod(kc, ns, "local", running, what="pod with a Localhost profile running")
        r = await exec_in(node, p, "c", ["mkdir", "/tmp/d"])
        assert r.exit_code != 0 and b"Permission denied" in r.stderr, r
        code, out = await _unshare_user_ns(node, p, "c")
        assert code == 0, out  # not RuntimeDefault: that profile allows unshare

        def refused(p: dict[str, Any]) -> bool:
            w = cstatus(p, "c").get("state", {}).get("waiting", {})
            return w.get("reason") == "CreateContainerConfigError"
        e = await wait_pod(kc, ns, "escape", refused, what="escaping Localhost profile refused")
        assert "not under the kubelet's seccomp directory" in cstatus(e, "c")["state"]["waiting"]["message"]
    finally:
        shutil.rmtree(sdir, ignore_errors=True)
        shutil.rmtree(outside, ignore_errors=True)


async def test_capabilities_no_new_privs_and_read_only_root(node: Node, kc: Client, privileged_ns: str) -> None:
    await kc.create(PODS, pod(
        "caps", ctr("dflt", "exec sleep 3600"),
        ctr("raw", "exec sleep 3600", securityContext={"capabilities": {"add": ["NET_RAW"]}}),
        ctr("nnp", "exec sleep 3600", securityContext={"allowPrivilegeEscalation": False}),
        ctr("esc", "exec sleep 3600", securityContext={"allowPrivilegeEscalation": True}),
        ctr("ro", "exec sleep 3600", securityContext={"readOnlyRootFilesystem": True})), privileged_ns)
    p = await wait_pod(kc, privileged_ns, "caps", running, what="pod caps running")

    dflt = await _proc_status(node, p, "dflt")
    assert not int(dflt["CapEff"], 16) & (1 << CAP_NET_RAW)
    assert not int(dflt["CapBnd"], 16) & (1 << CAP_NET_RAW)
    assert int((await _proc_status(node, p, "raw"))["CapEff"], 16) & (1 << CAP_NET_RAW)
    # busybox ping opens a raw socket (packet crafting needs one too): refused without NET_RAW, fine with it
    r = await exec_in(node, p, "dflt", ["ping", "-c", "1", "-W", "1", "127.0.0.1"])
    assert r.exit_code != 0 and b"permission denied" in r.stderr, r
    r = await exec_in(node, p, "raw", ["ping", "-c", "1", "-W", "1", "127.0.0.1"])
    assert r.exit_code == 0, r

    assert dflt["NoNewPrivs"] == "1"  # pkube's default: no escalation unless allowed
    assert (await _proc_status(node, p, "nnp"))["NoNewPrivs"] == "1"
    assert (await _proc_status(node, p, "esc"))["NoNewPrivs"] == "0"

    r = await exec_in(node, p, "ro", ["touch", "/written"])
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr, r
    r = await exec_in(node, p, "dflt", ["touch", "/written"])
    assert r.exit_code == 0, r


async def test_cgroup_namespace_and_pod_pids_limit(node: Node, kc: Client, ns: str) -> None:
    await kc.create(PODS, pod("cg", ctr("a", "exec sleep 3600"), ctr("b", "exec sleep 3600")), ns)
    p = await wait_pod(kc, ns, "cg", running, what="pod cg running")
    r = await exec_in(node, p, "a", ["cat", "/proc/self/cgroup"])
    lines = r.stdout.decode().split()
    assert lines and all(line.split(":", 2)[2] == "/" for line in lines), lines
    assert node.runtime_config().cgroup_parent not in r.stdout.decode()

    pod_dir = Path(cgroups.nested_dirs(f"{node.runtime_config().cgroup_parent}/pod{p['metadata']['uid']}")["pids"])
    assert (pod_dir / "pids.max").read_text().strip() == "4096"
    # both containers' cgroups sit below the limited pod cgroup
    children = [d for d in os.listdir(pod_dir) if (pod_dir / d).is_dir()]
    assert len(children) == 2


async def test_run_as_non_root_refuses_a_root_image_with_its_reason(kc: Client, ns: str) -> None:
    await kc.create(PODS, pod("nonroot", ctr("c", "exec sleep 3600"), securityContext={"runAsNonRoot": True}), ns)

    def refused(p: dict[str, Any]) -> bool:
        return cstatus(p, "c").get("state", {}).get("waiting", {}).get("reason") == "CreateContainerConfigError"
    p = await wait_pod(kc, ns, "nonroot", refused, what="root image refused under runAsNonRoot")
    assert cstatus(p, "c")["state"]["waiting"]["message"] == "container has runAsNonRoot and image will run as root"
    # with a non-root uid the same pod runs
    await kc.create(PODS, pod("nonroot-ok", ctr("c", "exec sleep 3600"),
                              securityContext={"runAsNonRoot": True, "runAsUser": 1000}), ns)
    await wait_pod(kc, ns, "nonroot-ok", running, what="non-root pod running")
