"""Volume attacks against the real kubelet: the ConfigMap `..data` link (CVE-2017-1002102), subPath through a
planted symlink (CVE-2017-1002101 class), file modes beyond 0777, and volume mounts without nosuid/nodev."""
from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import lookup
from tests.support.node import Node, cstatus, ctr, exec_in, pod, running, wait_pod
from tests.util import unique, wait_for

pytestmark = pytest.mark.root

PODS = lookup("pods")
CONFIGMAPS = lookup("configmaps")
SECRETS = lookup("secrets")
assert PODS and CONFIGMAPS and SECRETS


def host_dir_with_marker(tmp_path: Path) -> tuple[Path, Path]:
    victim = tmp_path / unique("victim")
    victim.mkdir()
    marker = victim / "marker"
    marker.write_text("precious\n")
    return victim, marker


def mount_options(mountinfo: str, mount_point: str) -> set[str]:
    """The per-mount options (field 6 of /proc/self/mountinfo) of the topmost mount at `mount_point`."""
    found: set[str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[4] == mount_point:
            found = set(fields[5].split(","))
    assert found is not None, f"{mount_point} is not a mount point:\n{mountinfo}"
    return found


def waiting(p: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(cstatus(p, name).get("state", {}).get("waiting") or {})


async def test_configmap_data_link_cannot_delete_a_host_directory(node: Node, kc: Client, ns: str,
                                                                  tmp_path: Path) -> None:
    victim, marker = host_dir_with_marker(tmp_path)
    await kc.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                                 "data": {"k": "one"}}, ns)
    # the attacker mounts the ConfigMap without readOnly, as in the CVE
    await kc.create(PODS, pod(
        "cm-attack",
        ctr("attacker", "exec sleep 3600", volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}]),
        ctr("reader", "exec sleep 3600", volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}]),
        volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}]), ns)
    p = await wait_pod(kc, ns, "cm-attack", running, what="cm-attack Running")

    r = await exec_in(node, p, "attacker", ["sh", "-c", f"rm -f /cfg/..data; ln -sfn {victim} /cfg/..data"])
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr, r
    r = await exec_in(node, p, "attacker", ["readlink", "/cfg/..data"])
    assert r.stdout.startswith(b"..2") and str(victim).encode() not in r.stdout, r
    r = await exec_in(node, p, "attacker", ["touch", "/cfg/new"])
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr, r
    assert "ro" in mount_options((await exec_in(node, p, "attacker", ["cat", "/proc/self/mountinfo"])).stdout.decode(),
                                 "/cfg")

    # and had a container got the link in anyway (say, through another bug), the writer still must not follow it:
    # plant it on the host side of the volume, where the kubelet's writer works
    volume = node.tmp / "kubelet" / "pods" / p["metadata"]["uid"] / "volumes" / "cfg"
    for name in ("..data", "k", "..planted"):
        plant = volume.parent.parent / unique("plant")  # same filesystem, outside the writer's directory
        plant.symlink_to(victim)
        os.replace(plant, volume / name)  # atomic: a refresh running meanwhile cannot make this fail

    # an update makes the kubelet rewrite the volume (sync frequency 2 s in the test kubelet)
    await kc.patch(CONFIGMAPS, "cfg", {"data": {"k": "two"}}, ns)

    async def refreshed() -> bool:
        r = await exec_in(node, p, "reader", ["cat", "/cfg/k"])
        return r.stdout == b"two"
    await wait_for(refreshed, 30, 0.2, message="the ConfigMap update reached the volume")
    assert victim.is_dir() and marker.read_text() == "precious\n"
    assert not (volume / "..data").resolve().is_relative_to(victim) and not (volume / "..planted").is_symlink()


async def test_subpath_through_a_planted_symlink_is_refused(node: Node, kc: Client, ns: str, tmp_path: Path) -> None:
    victim, marker = host_dir_with_marker(tmp_path)
    # the init container plants links in the emptyDir: to the victim directory and to the host root; the app
    # containers then ask for them as subPaths (a restarted container would do the same)
    plant = f"ln -s {victim} /vol/escape && ln -s / /vol/root && mkdir -p /vol/real && ln -s real/../.. /vol/up"
    await kc.create(PODS, pod(
        "subpath-attack",
        ctr("victim", f"touch /host/pwned-{node.tag}; rm -f /host/marker; exec sleep 3600",
            volumeMounts=[{"name": "vol", "mountPath": "/host", "subPath": "escape"}]),
        ctr("root", "exec sleep 3600", volumeMounts=[{"name": "vol", "mountPath": "/host", "subPath": "root/tmp"}]),
        ctr("up", "exec sleep 3600", volumeMounts=[{"name": "vol", "mountPath": "/host", "subPath": "up"}]),
        initContainers=[ctr("plant", plant, volumeMounts=[{"name": "vol", "mountPath": "/vol"}])],
        volumes=[{"name": "vol", "emptyDir": {}}]), ns)

    def refused(p: dict[str, Any]) -> bool:
        return all(waiting(p, c).get("reason") == "CreateContainerConfigError" for c in ("victim", "root", "up"))
    p = await wait_pod(kc, ns, "subpath-attack", refused, what="CreateContainerConfigError for every subPath")
    message = waiting(p, "victim")["message"]
    assert 'subPath "escape" of volumeMount "vol" of container "victim"' in message, message
    assert "outside the volume" in message, message
    assert "outside the volume" in waiting(p, "root")["message"]
    assert all("running" not in cstatus(p, c).get("state", {}) for c in ("victim", "root", "up"))
    assert marker.read_text() == "precious\n" and sorted(x.name for x in victim.iterdir()) == ["marker"]
    assert not Path(f"/tmp/pwned-{node.tag}").exists()


async def test_file_mode_beyond_0777_is_refused(kc: Client, ns: str) -> None:
    cases = [
        ({"configMap": {"name": "c", "defaultMode": 0o4777}}, "spec.volumes[0].configMap.defaultMode"),
        ({"secret": {"secretName": "s", "items": [{"key": "k", "path": "k", "mode": 0o1000}]}},
         "spec.volumes[0].secret.items[0].mode"),
        ({"projected": {"sources": [{"configMap": {"name": "c", "items": [{"key": "k", "path": "k",
                                                                           "mode": -1}]}}]}},
         "spec.volumes[0].projected.sources[0].configMap.items[0].mode"),
        ({"downwardAPI": {"defaultMode": 512}}, "spec.volumes[0].downwardAPI.defaultMode"),
    ]
    for source, field in cases:
        name = unique("mode")
        with pytest.raises(ApiError) as e:
            await kc.create(PODS, pod(name, ctr("c", "true"), volumes=[{"name": "v", **source}]), ns)
        assert e.value.code == 422, e.value.status
        causes = {c.get("field"): c.get("message", "") for c in e.value.causes}
        assert field in causes, e.value.status
        assert "must be a number between 0 and 0777 (octal), both inclusive" in causes[field]
        with pytest.raises(ApiError) as gone:
            await kc.get(PODS, name, ns)
        assert gone.value.code == 404  # nothing stored
    # the limit itself is fine
    await kc.create(PODS, pod(unique("mode"), ctr("c", "true"), volumes=[
        {"name": "v", "configMap": {"name": "c", "defaultMode": 0o777, "optional": True}}]), ns)


async def test_volume_mounts_are_nosuid_nodev(node: Node, kc: Client, ns: str) -> None:
    await kc.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"},
                                 "data": {"k": "v"}}, ns)
    await kc.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
                              "data": {"pw": base64.b64encode(b"pw").decode()}}, ns)
    mounts = {"/scratch": "scratch", "/mem": "mem", "/conf": "conf", "/sec": "sec", "/sub": "scratch",
              "/key": "conf"}
    await kc.create(PODS, pod(
        "flags",
        ctr("c", "exec sleep 3600", volumeMounts=[
            {"name": "scratch", "mountPath": "/scratch"}, {"name": "mem", "mountPath": "/mem"},
            {"name": "conf", "mountPath": "/conf"}, {"name": "sec", "mountPath": "/sec"},
            {"name": "scratch", "mountPath": "/sub", "subPath": "a/b"},
            {"name": "conf", "mountPath": "/key", "subPath": "k"}]),
        volumes=[{"name": "scratch", "emptyDir": {}}, {"name": "mem", "emptyDir": {"medium": "Memory"}},
                 {"name": "conf", "configMap": {"name": "conf"}}, {"name": "sec", "secret": {"secretName": "sec"}}]),
        ns)
    p = await wait_pod(kc, ns, "flags", running, what="flags Running")
    info = (await exec_in(node, p, "c", ["cat", "/proc/self/mountinfo"])).stdout.decode()
    for point in mounts:
        opts = mount_options(info, point)
        assert {"nosuid", "nodev"} <= opts, (point, opts)
    for point in ("/conf", "/sec", "/key"):  # API-content volumes: read-only although the mounts did not ask
        assert "ro" in mount_options(info, point), point
    assert "rw" in mount_options(info, "/scratch")
    # subPaths work: a directory made inside the emptyDir, a configMap key through the volume's own links
    r = await exec_in(node, p, "c", ["sh", "-c", "echo x > /sub/f && cat /scratch/a/b/f && cat /key"])
    assert r.stdout == b"x\nv", r
